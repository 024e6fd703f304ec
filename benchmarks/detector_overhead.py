"""Detector overhead: end-to-end `edge_sdk.Detector` latency against raw `Runtime.infer`, same run.

Run:  python benchmarks/detector_overhead.py [--iters 100] [--warmup 10] [--sizes 640 320]

Builds a YOLOv8n-sized ONNX (testkit.models.make_yolov8_onnx: YOLOv8 architecture, width
0.25, depth 0.33, 80 classes, 3.15 M parameters, random weights) at each size in a temporary
directory, opens it twice on ONNX Runtime with default options (Detector, and a bare Runtime),
and times, interleaved in one loop (the order alternates every iteration):
  - raw:        Runtime.infer on an already preprocessed tensor;
  - end-to-end: Detector(frame) = letterbox preprocess + infer + decode/NMS/rescale (conf 0.25);
  - preprocess and postprocess alone, for the breakdown.
The frame is a seeded 1280x720 synthetic BGR image with shapes. Prints a Markdown table
(p50/p90 in ms; percentiles by numpy's linear interpolation) and the machine. Target:
end-to-end <= 1.05x raw inference at 640.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import _repo  # noqa: F401  (the checkout on sys.path, for testkit)
import numpy as np

from edge_sdk import Detector
from edge_sdk.host import host_facts
from runtimes import load
from runtimes.threads import resolve_threads
from testkit.models import make_yolov8_onnx, synthetic_frame

TARGET_RATIO = 1.05
DEPLOY_CONF = 0.25


def _timed(fn: Callable[[], object], into: list[float]) -> None:
    t0 = time.perf_counter_ns()
    fn()
    into.append((time.perf_counter_ns() - t0) / 1e6)


def measure(model: Path, frame: np.ndarray, iters: int, warmup: int) -> dict[str, list[float]]:
    """Interleaved samples (ms) of raw inference, end-to-end, preprocess and postprocess."""
    det = Detector(model, conf=DEPLOY_CONF)
    raw = load(model)
    tensor, lb = det.preprocess(frame)
    outputs = raw.infer(tensor)
    stages: dict[str, Callable[[], object]] = {
        "raw": lambda: raw.infer(tensor),
        "e2e": lambda: det(frame),
        "pre": lambda: det.preprocess(frame),
        "post": lambda: det.postprocess(outputs, lb),
    }
    for _ in range(warmup):
        for fn in stages.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in stages}
    samples["detections"] = [float(len(det(frame)))]
    for i in range(iters):
        order = ("raw", "e2e") if i % 2 == 0 else ("e2e", "raw")
        for name in (*order, "pre", "post"):
            _timed(stages[name], samples[name])
    det.close()
    raw.close()
    return samples


def row(imgsz: int, s: dict[str, list[float]]) -> dict[str, float]:
    p50 = {k: float(np.percentile(v, 50)) for k, v in s.items()}
    p90 = {k: float(np.percentile(v, 90)) for k, v in s.items()}
    return {"imgsz": imgsz, "raw_p50": p50["raw"], "raw_p90": p90["raw"], "e2e_p50": p50["e2e"],
            "e2e_p90": p90["e2e"], "ratio": p50["e2e"] / p50["raw"], "pre_p50": p50["pre"],
            "post_p50": p50["post"], "detections": s["detections"][0]}


def markdown(rows: list[dict[str, float]]) -> str:
    head = ("| imgsz | raw infer p50 ms | raw p90 ms | end-to-end p50 ms | end-to-end p90 ms | ratio (p50) "
            "| preprocess p50 ms | postprocess p50 ms | detections |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r['imgsz']} | {r['raw_p50']:.2f} | {r['raw_p90']:.2f} | {r['e2e_p50']:.2f} | "
                     f"{r['e2e_p90']:.2f} | {r['ratio']:.3f} | {r['pre_p50']:.2f} | {r['post_p50']:.2f} | "
                     f"{r['detections']:.0f} |")
    return "\n".join(lines)


def machine() -> str:
    import onnxruntime

    h = host_facts()
    return (f"CPU: {h['cpu_model']}, {h['physical_cores']} physical / {h['logical_cores']} logical cores "
            f"({h['usable_cores']} usable); ORT {onnxruntime.__version__}, intra-op threads "
            f"{resolve_threads(None)} (default); Python {h['python']}; {h['os_release']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=100, help="timed iterations per size (>= 50)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed iterations per size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[640, 320], help="model input sizes")
    args = parser.parse_args()
    if args.iters < 50:
        parser.error("--iters must be at least 50")
    frame = synthetic_frame(720, 1280)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            model = make_yolov8_onnx(Path(tmp) / f"yolov8n_like_{size}.onnx", imgsz=size)
            rows.append(row(size, measure(model, frame, args.iters, args.warmup)))
    print(f"Detector overhead, 1280x720 frame, conf {DEPLOY_CONF}, {args.iters} iterations "
          f"after {args.warmup} warm-up, interleaved\n")
    print(markdown(rows))
    print(f"\n{machine()}")
    for r in rows:
        if r["imgsz"] == 640:
            verdict = "met" if r["ratio"] <= TARGET_RATIO else "MISSED"
            print(f"target end-to-end <= {TARGET_RATIO}x raw at 640: {verdict} ({r['ratio']:.3f}x)")


if __name__ == "__main__":
    main()
