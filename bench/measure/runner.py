"""Measure one configuration (backend x precision x threads): latency per stage, memory, accuracy.

`measure` is meant to run in a child process (see bench.sweep.isolate) so that memory figures and
crashes belong to this configuration alone.
"""
from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.measure.memory import PeakRssSampler, file_size_mb, rss_mb
from bench.measure.noise import sample_host, stability
from bench.measure.timing import BenchLoop, LoopResult, StageTimer
from edge_sdk.decode import DecodeConfig
from edge_sdk.detector import Detector
from edge_sdk.frames import read_image
from edge_sdk.host import ThreadsWarning
from runtimes.threads import resolve_threads

#: Frames kept in memory for the timing loop (decoded before timing starts).
MAX_TIMING_FRAMES = 16
#: Per-iteration total latencies stored in a row for the HTML plots (evenly thinned beyond this).
MAX_STORED_SAMPLES = 5000


@dataclass
class MeasureSpec:
    """Everything a child needs to measure one configuration (all picklable)."""

    model: str
    backend: str
    precision: str
    threads: int | None
    warmup: int
    min_iterations: int
    min_duration_s: float
    deploy: dict[str, Any]
    accuracy: dict[str, Any] | None
    timing_images: list[str]
    eval_images: list[tuple[int, str]] = field(default_factory=list)  # (image_id, path)
    category_ids: dict[int, int] = field(default_factory=dict)
    runtime_extra: dict[str, Any] = field(default_factory=dict)
    max_duration_s: float | None = None
    label: str = ""


def measure(spec: MeasureSpec) -> dict[str, Any]:
    """Load, time and (optionally) score one configuration; returns the fields of a result row."""
    start = sample_host()
    with PeakRssSampler() as mem:
        det = open_detector(spec)
        after_load = rss_mb()
        frames = [read_image(p) for p in spec.timing_images[:MAX_TIMING_FRAMES]]
        loop_start = sample_host()
        loop = _time_detector(det, frames, spec)
        end = sample_host()
        del frames
        detections = _detect_all(det, spec) if spec.accuracy is not None else None
    latency = loop.summary()
    return {
        "precision_used": det.runtime.precision_used,
        "layers": det.runtime.layer_tally.to_dict() if det.runtime.layer_tally else None,
        "threads": resolve_threads(spec.threads),
        "imgsz": list(det.input_size),
        "latency_ms": latency,
        "latency_samples_ms": {"total": total_samples_ms(loop.timer.samples()["total"])},
        "fps": latency["total"]["fps"],
        "iterations": loop.iterations,
        "duration_s": loop.duration_s,
        "stopped_by": loop.stopped_by,
        "stability": stability([v / 1e6 for v in loop.timer.samples()["total"]], start, loop_start, end),
        "memory": {"rss_after_load_mb": after_load, **mem.as_dict(),
                   "model_size_mb": file_size_mb(spec.model)},
        "engine_versions": det.runtime.engine_versions(),
        "delegation": delegation_of(det.runtime),
        "detections": detections,
    }


def delegation_of(runtime: Any) -> dict[str, Any] | None:
    """The backend's delegate report (TFLite: ops XNNPACK took, op types it left out), or None."""
    d = runtime.delegation()
    if d is None:
        return None
    return {"total_ops": d.total_ops, "delegated_ops": d.delegated_ops, "partitions": d.partitions,
            "cpu_ops": dict(d.cpu_ops), "summary": d.summary()}


def total_samples_ms(samples_ns: list[int], cap: int = MAX_STORED_SAMPLES) -> list[float]:
    """Durations (ns) as ms rounded to 1 us, in run order; every k-th one when over `cap`."""
    step = max(1, -(-len(samples_ns) // cap))
    return [round(v / 1e6, 3) for v in samples_ns[::step]]


def _decode_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    keys = ("conf", "iou", "max_det", "multi_label")
    return {k: cfg[k] for k in keys if k in cfg}


def open_detector(spec: MeasureSpec) -> Detector:
    """The Detector of `spec` (backend, threads, precision, runtime options, deploy decoding); no
    ThreadsWarning: the run warned once, in the parent (bench.options.validate_run_options)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThreadsWarning)
        return Detector(spec.model, spec.backend, threads=spec.threads, precision=spec.precision,
                        runtime_options=spec.runtime_extra, **_decode_kwargs(spec.deploy))


#: prefix of the parts of the inference stage a runtime times itself (`Runtime.last_stages_ms`)
INFERENCE_PART = "inference."


def detector_step(det: Detector, frames: Sequence[np.ndarray]) -> Callable[[StageTimer], None]:
    """One timed iteration over `frames` in turn: preprocess, inference, postprocess, each lapped."""
    n = len(frames)
    state = {"i": 0}

    def one(t: StageTimer) -> None:
        frame = frames[state["i"] % n]
        state["i"] += 1
        tensor, lb = det.preprocess(frame)
        t.lap("preprocess")
        outputs = det.infer(tensor)
        t.lap("inference")
        for part, ms in (getattr(det.runtime, "last_stages_ms", None) or {}).items():
            t.add(f"{INFERENCE_PART}{part}", round(ms * 1e6))  # TensorRT: h2d / compute / d2h by CUDA events
        det.postprocess(outputs, lb)
        t.lap("postprocess")

    return one


def _time_detector(det: Detector, frames: Sequence[np.ndarray], spec: MeasureSpec) -> LoopResult:
    """Warm up, then time preprocess / inference / postprocess until both minimums are met."""
    bench = BenchLoop(spec.warmup, spec.min_iterations, spec.min_duration_s,
                      max_duration_s=spec.max_duration_s)
    return bench.run(detector_step(det, frames),
                     progress=_progress_printer(spec.label, "timing", spec.min_iterations))


def _detect_all(det: Detector, spec: MeasureSpec) -> list[dict[str, Any]]:
    """COCO-format detections of every evaluation image, with the accuracy protocol's settings."""
    cfg = DecodeConfig(**_decode_kwargs(spec.accuracy or {}))
    show = _progress_printer(spec.label, "accuracy", len(spec.eval_images))
    results: list[dict[str, Any]] = []
    for i, (image_id, path) in enumerate(spec.eval_images, 1):
        dets = det(read_image(path), cfg)
        results.extend(dets.to_coco(image_id, spec.category_ids or None))
        if i % 10 == 0 or i == len(spec.eval_images):
            show(i, 0.0)
    return results


def _progress_printer(label: str, stage: str, total: int) -> Callable[[int, float], None]:
    """A progress callback printing one updating line on stderr (only when it is a terminal)."""
    tty = sys.stderr.isatty()

    def show(done: int, elapsed_s: float) -> None:
        if not tty:
            return
        timing = f" {elapsed_s:5.1f}s" if elapsed_s else ""
        sys.stderr.write(f"\r  {label:<24} {stage:<9} {done:>6}/{total}{timing}   ")
        sys.stderr.flush()
        if stage == "accuracy" and done >= total:
            sys.stderr.write("\n")

    return show
