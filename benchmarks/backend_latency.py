"""Raw inference latency of one YOLOv8n-sized model on every installed CPU backend, 320 and 640, 1 and 2 threads.

Run:  python benchmarks/backend_latency.py [--iters 60] [--warmup 10] [--sizes 320 640] [--threads 1 2]

Builds a YOLOv8n-sized ONNX (testkit.models.make_yolov8_onnx: width 0.25, depth 0.33, 80
classes, random weights) at each size, converts it with `converters.export.export` (parity against
ONNX Runtime fp32 included) to every installed target, and times `Runtime.infer` on one fixed
preprocessed input: `--warmup` untimed calls, then `--iters` timed calls, the configurations
interleaved round-robin so that a noisy neighbour hits all of them alike. Prints p50/p99 (ms,
numpy linear percentiles) with the sample count n beside them (a p99 from fewer samples than the
harness's early-stopping rule needs, 459, is marked "*"), the precision the engine reports it ran,
the parity verdict, and for TFLite the XNNPACK delegation (ops taken / total, partitions, op types
left on TFLite's CPU kernels).
`--backends` limits the run to some backends (e.g. a quick `--backends tflite --sizes 320 --iters 5`).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import _repo  # noqa: F401  (the checkout on sys.path, for testkit)
import numpy as np
from _tail import p99_cell, p99_footnote

from converters.export import export
from edge_sdk.host import host_facts
from runtimes import RuntimeOptions, availability, load
from runtimes.capabilities import BACKENDS
from runtimes.errors import BackendUnavailableError
from runtimes.precision import Precision, PrecisionUnsupportedError
from testkit.models import make_yolov8_onnx

#: extra (backend, precision, ONNX rewrites) rows: TFLite with the upsample rewrite that lets XNNPACK take the graph
EXTRA_CONFIGS = (("tflite", "fp32", "upsample_d2s"),)


def configs() -> list[tuple[str, str, str]]:
    """(backend, precision, rewrites): every float precision each backend's converter writes (from the capability
    table; a precision the engine cannot run on this CPU is skipped with its reason), ONNX Runtime on the ONNX as
    it is, plus EXTRA_CONFIGS."""
    rows = [(cap.name, str(p), "") for cap in BACKENDS.values() if cap.runtime
            for p in (cap.writes if cap.converter else cap.writes[:1]) if Precision(p).is_float]
    return rows + list(EXTRA_CONFIGS)


@dataclass
class Config:
    backend: str
    precision: str
    rewrites: str
    threads: int
    artifact: Path
    parity: str = "reference"
    samples: list[float] = field(default_factory=list)
    used: str = ""
    delegation: str = "-"  # TFLite: XNNPACK delegation summary


def artifacts(onnx_path: Path, out: Path,
              backends: list[str] | None = None) -> dict[tuple[str, str, str], tuple[Path, str]]:
    """(backend, precision, rewrites) -> (artifact, parity verdict) for every installed backend (or those asked for)."""
    made: dict[tuple[str, str, str], tuple[Path, str]] = {}
    for backend, precision, rewrites in configs():
        if not availability(backend)[0] or (backends and backend not in backends):
            continue
        if not BACKENDS[backend].converter:
            made[(backend, precision, rewrites)] = (onnx_path, "reference")
            continue
        try:
            name = f"{backend}-{precision}{'-' + rewrites if rewrites else ''}{BACKENDS[backend].suffix}"
            result = export(onnx_path, backend, out / name, precision, parity_images=2, rewrites=rewrites or None)
        except BackendUnavailableError as exc:  # e.g. the converter (pnnx, litert-torch) is missing
            print(f"skipped {backend} {precision}: {exc}", file=sys.stderr)
            continue
        made[(backend, precision, rewrites)] = (result.path, "pass" if result.parity.passed else "FAIL")
    return made


def time_all(configs: list[Config], x: np.ndarray, iters: int, warmup: int) -> list[Config]:
    """Interleaved timing of every configuration (each keeps its runtime open); returns those that ran."""
    runtimes, ran = [], []
    for c in configs:
        try:
            rt = load(c.artifact, c.backend, RuntimeOptions(threads=c.threads, precision=c.precision))
        except PrecisionUnsupportedError as exc:  # e.g. an fp16 request on a CPU without fp16 arithmetic
            print(f"skipped {c.backend} {c.precision}: {exc}", file=sys.stderr)
            continue
        c.used = rt.precision_used
        report = rt.delegation()  # None for backends without delegates
        if report is not None:
            c.delegation = report.summary()
        runtimes.append(rt)
        ran.append(c)
    try:
        for _ in range(warmup):
            for rt in runtimes:
                rt.infer(x)
        for _ in range(iters):
            for c, rt in zip(ran, runtimes, strict=True):
                t0 = time.perf_counter_ns()
                rt.infer(x)
                c.samples.append((time.perf_counter_ns() - t0) / 1e6)
    finally:
        for rt in runtimes:
            rt.close()
    return ran


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backends", nargs="+", default=None, help="only these backends (default: all installed)")
    args = parser.parse_args()
    x_by_size = {s: np.random.default_rng(0).random((1, 3, s, s), dtype=np.float32) for s in args.sizes}
    print("| size | threads | backend | precision asked / run | rewrites | p50 ms | p99 ms | n | parity | delegation |")
    print("|---:|---:|---|---|---|---:|---:|---:|---|---|")
    counts: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            onnx_path = make_yolov8_onnx(Path(tmp) / f"yolov8n-{size}.onnx", imgsz=size)
            made = artifacts(onnx_path, Path(tmp) / str(size), args.backends)
            for threads in args.threads:
                configs = [Config(b, p, r, threads, path, verdict) for (b, p, r), (path, verdict) in made.items()]
                for c in time_all(configs, x_by_size[size], args.iters, args.warmup):
                    counts.append(len(c.samples))
                    print(f"| {size} | {threads} | {c.backend} | {c.precision} / {c.used} | {c.rewrites or '-'} "
                          f"| {np.percentile(c.samples, 50):.1f} | {p99_cell(c.samples)} | {len(c.samples)} "
                          f"| {c.parity} | {c.delegation} |")
    footnote = p99_footnote(counts)
    if footnote:
        print(f"\n{footnote}")
    h = host_facts()
    print(f"\n{args.iters} timed calls each after {args.warmup} warm-up, interleaved; CPU: {h['cpu_model']}, "
          f"{h['physical_cores']} physical cores; Python {h['python']}")


if __name__ == "__main__":
    main()
