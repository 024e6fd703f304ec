"""INT8 on every CPU backend: accuracy fp32 vs int8 per method, with and without the automatic exclusions,
and the int8/fp32 latency ratio at 320 and 640.

Run:  python benchmarks/int8_accuracy.py [--model M.onnx --data data.yaml --calib CALIB] [--backends ...]
          [--methods minmax percentile entropy distribution] [--calib-images 300] [--max-images 200]
          [--sizes 320 640] [--iters 100] [--excludes auto none] [--write docs/quantization.md]

Accuracy: the model (default: the bundled one, its synthetic val split, calibrated on its own synthetic
*train* split) is converted to each backend at fp32 and quantized by that backend's own quantizer
(converters.int8: ONNX Runtime QDQ, NNCF, ai-edge-quantizer, our ncnn table) for each method, once with
`--exclude auto` and once with `--exclude none`; fp32 and int8 are scored on the same images by the same
evaluator (edge_sdk.Detector + pycocotools). A method an engine's quantizer does not have is listed as
refused. Latency: a YOLOv8n-sized ONNX (testkit.models.make_yolov8_onnx, 10 classes) at each size,
quantized with each engine's default method (auto) and the auto exclusions, fp32 and int8 timed
interleaved on one input (`--iters` calls after warm-up; ONNX Runtime, OpenVINO and ncnn at all
physical cores, TFLite at 1 thread as on a phone core). OpenVINO's fp32 is true fp32 (f32 hint), not its
silent bf16. `--excludes` also takes the steps of the automatic set, for an ablation: `tail` (the decode
tail alone) and `tail+concats` (plus the head's per-level concats); `auto` adds the head's last convs.
With --write, the tables replace the block between the `<!-- int8-bench -->` markers of that
file (`--block NAME`: the `<!-- int8-bench:NAME -->` pair).
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import _repo  # noqa: F401  (the checkout on sys.path, for testkit)
import numpy as np
from backend_latency import Config, time_all

from bench.sweep.defaults import default_calibration, default_data, default_model
from calibration.methods import resolve_method
from converters.export import export
from converters.int8 import Int8Options, int8_runtime
from edge_sdk.host import host_facts
from runtimes import availability
from runtimes.capabilities import get, quantizer_targets
from runtimes.errors import BackendUnavailableError, CalibrationError
from testkit.models import make_yolov8_onnx
from trainer.val import validate

MARK = "<!-- int8-bench -->"


def marker(block: str | None) -> str:
    """The marker pair of a block: `<!-- int8-bench -->`, or `<!-- int8-bench:NAME -->`."""
    return f"<!-- int8-bench:{block} -->" if block else MARK


def score(artifact: Path, data: str, backend: str, limit: int | None) -> tuple[float, float]:
    r = validate(artifact, data, backend=backend, limit=limit)
    return float(r.stats["AP"]), float(r.stats["AP50"])


def float_artifact(model: Path, backend: str, folder: Path) -> Path:
    """The fp32 artifact of `backend` (the ONNX itself for ONNX Runtime)."""
    cap = get(backend)
    if cap.converter is None:
        return model
    return export(model, backend, folder / f"fp32{cap.suffix}", "fp32", parity_images=2).path


def accuracy_rows(args: argparse.Namespace, tmp: Path) -> list[str]:
    model = Path(args.model) if args.model else default_model()
    data = args.data or str(default_data())
    calib = args.calib or str(default_calibration())
    rows = []
    for backend in args.backends:
        folder = tmp / backend
        folder.mkdir()
        run_on = int8_runtime(backend)[0]  # TensorRT's Q/DQ ONNX: scored on ONNX Runtime as a proxy
        fp32 = model if run_on != backend else float_artifact(model, backend, folder)
        ref = score(fp32, data, run_on, args.max_images)
        for method in args.methods:
            for exclude in args.excludes:
                row = _int8_row(model, backend, method, exclude, calib, data, ref, folder, args)
                rows.append(row)
                if "refused:" in row:  # the method, not the exclusion: once is enough
                    break
    return rows


def _int8_row(model: Path, backend: str, method: str, exclude: str, calib: str, data: str,
              ref: tuple[float, float], folder: Path, args: argparse.Namespace) -> str:

    out = folder / f"int8-{method}-{exclude}{get(backend).suffix}"
    opts = Int8Options(calib=calib, method=method, exclude=exclusion_spec(model, exclude),
                       calib_images=args.calib_images)
    start = time.perf_counter()
    try:
        result = export(model, backend, out, "int8", parity_images=2, int8=opts)
    except CalibrationError as exc:
        return f"| {backend} | {method} | - | {ref[0]:.4f} | refused: {exc} | | | | |"
    seconds = time.perf_counter() - start
    ap = score(result.path, data, int8_runtime(backend)[0], args.max_images)
    parity = "pass" if result.parity and result.parity.passed else "FAIL"
    cached = " (cached)" if (result.quantization or {}).get("cache_hit") else ""
    print(f"  {backend} {method} {exclude}: {ap[0]:.4f} ({seconds:.0f} s)", file=sys.stderr)
    shown = resolve_method(method, backend)
    run_on = int8_runtime(backend)[0]
    label = backend if run_on == backend else f"{backend} (on {run_on}: proxy)"
    return (f"| {label} | {shown} | {exclude} | {ref[0]:.4f} | {ap[0]:.4f} | {100 * (ap[0] - ref[0]):+.2f} "
            f"| {ref[1]:.4f} → {ap[1]:.4f} | {parity} | {seconds:.0f}{cached} |")


def exclusion_spec(model: Path, label: str) -> str:
    """`--exclude` for a label of `--excludes`: auto/none as they are; the ablation steps as node names."""
    if label in ("auto", "none"):
        return label
    import onnx

    from calibration.exclusions import decode_tail, head_outputs

    graph = onnx.load(str(model), load_external_data=False)
    tail = decode_tail(graph)
    ops = {n.name: n.op_type for n in graph.graph.node}
    concats = [n for n in head_outputs(graph, tail) if ops[n] != "Conv"] if label == "tail+concats" else []
    return ",".join([*tail, *concats])


def latency_rows(args: argparse.Namespace, tmp: Path) -> list[str]:
    calib = args.calib or str(default_calibration())
    cores = int(host_facts().get("physical_cores") or 1)
    rows = []
    for size in args.sizes:
        onnx_path = make_yolov8_onnx(tmp / f"yolov8n-{size}.onnx", nc=10, imgsz=size)
        x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
        for backend in args.backends:
            if int8_runtime(backend)[0] != backend:
                rows.append(f"| {size} | {backend} | - | - | - | - | not timed: no {backend} runtime on this host |")
                continue
            threads = 1 if backend == "tflite" else cores
            folder = tmp / f"lat-{backend}-{size}"
            folder.mkdir()
            fp32 = float_artifact(onnx_path, backend, folder)
            opts = Int8Options(calib=calib, method="auto", exclude="auto", calib_images=min(args.calib_images, 64))

            int8 = export(onnx_path, backend, folder / f"int8{get(backend).suffix}", "int8", parity=False,
                          int8=opts).path
            done = time_all([Config(backend, "fp32", "", threads, fp32), Config(backend, "int8", "", threads, int8)],
                            x, args.iters, max(5, args.iters // 10))
            if len(done) < 2:
                rows.append(f"| {size} | {backend} | {threads} | - | - | - | not timed |")
                continue
            a, b = (float(np.percentile(c.samples, 50)) for c in done)
            rows.append(f"| {size} | {backend} | {threads} | {a:.1f} | {b:.1f} | {a / b:.2f}× | {done[1].used} |")
            print(f"  {size} {backend}: fp32 {a:.1f} ms, int8 {b:.1f} ms", file=sys.stderr)
    return rows


def render(acc: list[str], lat: list[str], args: argparse.Namespace) -> str:
    h = host_facts()
    model = args.model or "the bundled model (edge_sdk/assets/default_model.onnx)"
    lines: list[str] = []
    if acc:
        lines += [f"Model: {model}; data: {args.data or 'its synthetic val split (200 images)'}; calibration: "
                  f"{args.calib or 'its synthetic train split'} ({args.calib_images} images).", "",
                  "| backend | method | exclude | AP50-95 fp32 | AP50-95 int8 | change (points) | AP50 fp32 → int8 "
                  "| parity | quantize s |", "|---|---|---|---:|---:|---:|---|---|---:|", *acc, "",
                  "quantize s: wall time of the int8 export (float conversion, calibration, quantization, parity); "
                  "\"(cached)\": the calibration came from the cache (calibration/cache.py), so it was not repeated.",
                  ""]
    if lat:
        lines += ["| size | backend | threads | fp32 p50 ms | int8 p50 ms | speed-up | int8 runs |",
                  "|---:|---|---:|---:|---:|---:|---|", *lat, "",
                  f"Latency: YOLOv8n-sized ONNX (random weights, 10 classes), {args.iters} interleaved calls each."]
    lines.append(f"Machine: {h['cpu_model']}, {h['physical_cores']} physical cores; Python {h['python']}; "
                 f"command: `python benchmarks/int8_accuracy.py {' '.join(sys.argv[1:])}`")
    return "\n".join(lines)


def write_into(path: Path, text: str, block: str | None = None) -> None:
    mark = marker(block)
    doc = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(mark) + ".*?" + re.escape(mark), re.S)
    if not pattern.search(doc):
        raise SystemExit(f"{path} has no pair of {mark} markers")
    path.write_text(pattern.sub(lambda _: f"{mark}\n{text}\n{mark}", doc), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--data", default=None)
    parser.add_argument("--calib", default=None)
    parser.add_argument("--backends", nargs="+", default=None)
    parser.add_argument("--methods", nargs="+",
                        default=["minmax", "moving_average", "percentile", "entropy", "distribution"],
                        help="calibration methods (or auto: each engine's default)")
    parser.add_argument("--excludes", nargs="+", default=["auto", "none"],
                        choices=["auto", "none", "tail", "tail+concats"],
                        help="exclusion sets per method (tail, tail+concats: steps of auto, for an ablation)")
    parser.add_argument("--calib-images", type=int, default=300)
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--sizes", type=int, nargs="*", default=[320, 640])
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--latency-only", action="store_true", help="only the latency table (e.g. its own block)")
    parser.add_argument("--write", default=None, help="replace the marked block of this Markdown file")
    parser.add_argument("--block", default=None, help="write into the <!-- int8-bench:BLOCK --> pair instead")
    args = parser.parse_args()
    installed = [b for b in quantizer_targets()
                 if get(b).quantizer_missing() is None and availability(int8_runtime(b)[0])[0]]
    args.backends = [b for b in (args.backends or installed) if b in installed]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            acc = [] if args.latency_only else accuracy_rows(args, Path(tmp))
            lat = latency_rows(args, Path(tmp)) if args.sizes else []
        except BackendUnavailableError as exc:
            raise SystemExit(f"error: {exc}") from exc
    text = render(acc, lat, args)
    print(text)
    if args.write:
        write_into(Path(args.write), text, args.block)


if __name__ == "__main__":
    main()
