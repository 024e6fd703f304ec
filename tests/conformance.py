"""Backend conformance template: every backend subclasses `BackendConformance` (tests/test_conformance.py).

The same model (the bundled default model, a trained detector, so boxes sit on real objects
rather than the near-duplicates of a random network) runs on the backend and on ONNX Runtime
fp32 over the same synthetic val images; the detections must agree within `box_tol_px` after
greedy same-class matching, and the metadata, input specs and errors must behave alike.
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from conftest import matched_same_class

from edge_sdk.detector import Detector
from edge_sdk.synth import CLASS_NAMES, render_image
from runtimes import availability, load
from runtimes.errors import EdgebenchError
from runtimes.precision import Precision, PrecisionError, PrecisionUnsupportedError

FRAMES = 4


def conformance_frames() -> list[np.ndarray]:
    """Seeded synthetic val-like frames (some 4:3) with objects on them."""
    return [render_image(7, "val", i, 320, CLASS_NAMES, nonsquare=0.5).image for i in range(FRAMES)]


class BackendConformance:
    """Subclass with `backend` and `convert` (ONNX path, output folder -> artifact path)."""

    backend: ClassVar[str]
    convert: ClassVar[Callable[[Path, Path], Path] | None] = None
    box_tol_px: ClassVar[float] = 0.5
    score_tol: ClassVar[float] = 2e-3
    min_matched: ClassVar[float] = 0.97

    @pytest.fixture(scope="class")
    @classmethod
    def artifact(cls, default_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
        ok, why = availability(cls.backend)
        if not ok:
            pytest.skip(f"{cls.backend} unavailable: {why}")
        if cls.convert is None:
            return default_onnx
        return cls.convert(default_onnx, tmp_path_factory.mktemp(cls.backend))

    def test_detections_match_onnxruntime_fp32(self, artifact: Path, default_onnx: Path) -> None:
        total = matched = 0
        with Detector(default_onnx, backend="onnxruntime") as ref_det, \
                Detector(artifact, backend=self.backend, precision="fp32") as det:
            assert det.names == ref_det.names and det.input_size == ref_det.input_size
            for frame in conformance_frames():
                ref, got = ref_det(frame), det(frame)
                assert len(ref) > 0
                r, g = matched_same_class(ref, got)
                total, matched = total + len(ref), matched + len(r)
                if len(r):
                    assert np.abs(ref.xyxy[r] - got.xyxy[g]).max() <= self.box_tol_px
                    assert np.abs(ref.scores[r] - got.scores[g]).max() <= self.score_tol
                assert abs(len(ref) - len(got)) <= max(1, len(ref) // 20)
        assert matched / total >= self.min_matched

    def test_metadata_and_specs(self, artifact: Path, default_onnx: Path) -> None:
        with load(default_onnx, "onnxruntime") as ref, load(artifact, self.backend) as rt:
            assert rt.inputs[0].static_shape() == ref.inputs[0].static_shape() is not None
            assert rt.precision_used == "fp32"
            assert rt.engine_versions()
        with Detector(artifact, backend=self.backend) as det, Detector(default_onnx) as ref_det:
            assert det.meta.names == ref_det.meta.names and det.meta.layout == ref_det.meta.layout
            assert det.meta.stride == ref_det.meta.stride

    def test_precision_used_is_the_engines_not_the_request(self, artifact: Path) -> None:
        """The rule of runtimes.precision on every backend: an fp32 artifact asked for int8 is refused,
        naming what runs; an unknown name lists the valid ones; no request runs the artifact as it is."""
        with load(artifact, self.backend) as rt:
            assert rt.precision_used is Precision.FP32
        with pytest.raises(PrecisionUnsupportedError, match="at int8; it runs fp32"):
            load(artifact, self.backend, precision="int8")
        with pytest.raises(PrecisionError, match=r"unknown precision 'fp64' \(valid: fp32, fp16, bf16, int8, mixed\)"):
            load(artifact, self.backend, precision="fp64")
        with pytest.raises(PrecisionUnsupportedError):
            Detector(artifact, backend=self.backend, precision="int8")

    def test_every_float_request_runs_or_is_refused_truthfully(self, artifact: Path) -> None:
        for asked in ("fp32", "fp16", "bf16"):
            try:
                rt = load(artifact, self.backend, precision=asked)
            except PrecisionUnsupportedError as exc:
                assert f"at {asked}; it runs " in str(exc) and f"it runs {asked}" not in str(exc)
                continue
            with rt:
                assert rt.precision_used == asked

    def test_wrong_input_is_a_typed_error(self, artifact: Path) -> None:
        with load(artifact, self.backend) as rt:
            with pytest.raises(EdgebenchError):
                rt.infer(np.zeros((3, 320, 320), np.float32))  # rank 3 instead of 4

    def test_concurrent_calls_get_their_own_results(self, artifact: Path) -> None:
        xs = [np.random.default_rng(i).random((1, 3, 320, 320), dtype=np.float32) for i in range(2)]
        with load(artifact, self.backend, threads=1) as rt:
            expected = [rt.infer(x)[0] for x in xs]
            with ThreadPoolExecutor(2) as pool:
                got = list(pool.map(lambda i: rt.infer(xs[i % 2])[0], range(6)))
            rt.close()
            rt.close()  # safe twice
        for i, out in enumerate(got):
            np.testing.assert_array_equal(out, expected[i % 2])
