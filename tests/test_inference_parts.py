"""A runtime that times parts of its own inference (TensorRT's H2D / compute / D2H by CUDA events) gets
them into the bench's breakdown as parts of "inference", outside the total, and into the Markdown notes."""
from __future__ import annotations

from typing import Any

import numpy as np

from bench.measure.runner import detector_step
from bench.measure.timing import StageTimer
from bench.report.markdown import _row_notes
from bench.report.rows import Latency, ResultRow


class _Runtime:
    def __init__(self) -> None:
        self.last_stages_ms: dict[str, float] = {}

    def run(self, i: int) -> None:
        self.last_stages_ms = {"h2d": 0.5 + i, "compute": 4.0, "d2h": 0.25}


class _Detector:
    def __init__(self) -> None:
        self.runtime = _Runtime()
        self.calls = 0

    def preprocess(self, frame: np.ndarray) -> tuple[np.ndarray, Any]:
        return frame, None

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        self.runtime.run(self.calls)
        self.calls += 1
        return [tensor]

    def postprocess(self, outputs: list[np.ndarray], lb: Any) -> None:
        return None


def _clock() -> Any:
    state = {"t": 0}

    def tick() -> int:
        state["t"] += 1_000_000  # 1 ms per mark
        return state["t"]
    return tick


def test_runtime_parts_are_recorded_outside_the_total() -> None:
    det = _Detector()
    timer = StageTimer(clock=_clock())
    step = detector_step(det, [np.zeros((1, 3, 4, 4), np.float32)])  # type: ignore[arg-type]
    for _ in range(3):
        timer.start()
        step(timer)
        timer.end_iteration()
    samples = timer.samples()
    assert samples["inference.h2d"] == [500_000, 1_500_000, 2_500_000]
    assert samples["inference.compute"] == [4_000_000] * 3 and samples["inference.d2h"] == [250_000] * 3
    assert samples["total"] == [3_000_000] * 3  # three laps of 1 ms: the parts add nothing
    latency = Latency.from_dict(timer.summary())
    parts = latency.inference_parts()
    assert list(parts) == ["h2d", "compute", "d2h"] and parts["compute"].p50 == 4.0 and parts["h2d"].p50 == 1.5
    assert Latency.from_dict(latency.to_dict()).inference_parts() == parts  # survives the JSON round trip
    row = ResultRow(backend="tensorrt", precision="fp16", imgsz=640, status="ok", latency_ms=latency)
    assert any("inference on the device, p50: h2d 1.50 ms, compute 4.00 ms, d2h 0.25 ms" in n for n in _row_notes(row))


def test_a_runtime_without_parts_adds_no_stage() -> None:
    det = _Detector()
    det.runtime = object()  # type: ignore[assignment]
    det.infer = lambda tensor: [tensor]  # type: ignore[method-assign]
    timer = StageTimer(clock=_clock())
    timer.start()
    detector_step(det, [np.zeros((1, 3, 4, 4), np.float32)])(timer)  # type: ignore[arg-type]
    timer.end_iteration()
    assert set(timer.samples()) == {"preprocess", "inference", "postprocess", "total"}
