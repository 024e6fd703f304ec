"""Parity check: a model against itself, a perturbed copy, crushed scores, other head layouts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from converters.parity import (
    ParityTolerance,
    centred_cosine,
    check_parity,
    compare_outputs,
    parity_inputs,
    tolerance_for,
)
from runtimes import load
from testkit.models import make_layout_model

NC = 4


def perturb_score_conv(src: Path, dst: Path, factor: float = 4.0) -> str:
    """Copy `src` with the weights of one class-logit conv ([nc, c, 1, 1]) multiplied by `factor`."""
    proto = onnx.load(str(src))
    for init in proto.graph.initializer:
        dims = list(init.dims)
        if init.name.endswith("weight") and len(dims) == 4 and dims[0] == NC and dims[2:] == [1, 1]:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(factor), init.name))
            onnx.save(proto, str(dst))
            return init.name
    raise AssertionError("no class-logit conv found in the fixture model")


def test_a_model_against_itself_is_exact(small_model: Path) -> None:
    res = check_parity(small_model, small_model, images=2)
    assert res.passed, res.failures
    assert res.box_max_abs == 0 and res.score_max_abs == 0
    assert res.box_cosine == pytest.approx(1.0) and res.score_cosine == pytest.approx(1.0)
    assert res.ref_detections > 0 and res.matched == res.ref_detections and res.count_diff == 0
    assert res.mean_iou == pytest.approx(1.0) and res.class_agreement == 1.0
    d = res.to_dict()
    assert d["passed"] is True and d["layout"] == "yolov8" and d["input_size"] == [128, 128]
    assert "parity PASS" in res.summary()


def test_perturbed_score_conv_fails_on_score_rows_only(small_model: Path, tmp_path: Path) -> None:
    name = perturb_score_conv(small_model, tmp_path / "perturbed.onnx")
    res = check_parity(small_model, tmp_path / "perturbed.onnx", images=2)
    assert not res.passed, name
    assert res.box_max_abs == 0 and res.box_cosine == pytest.approx(1.0)  # box branch untouched
    assert res.score_max_abs > 0.05 and res.score_cosine < 0.999
    assert any(f.startswith("score") for f in res.failures)
    assert not any(f.startswith("box") for f in res.failures)
    assert "FAIL" in res.summary()


def test_crushed_scores_hide_in_a_whole_output_cosine(small_model: Path) -> None:
    with load(small_model, threads=1) as rt:
        ref = [rt.infer(x)[0] for x in parity_inputs((128, 128), n=2)]
    crushed = []
    for out in ref:
        c = out.copy()
        step = np.float32(np.abs(out).max() / 127)  # one int8 scale shared by boxes and scores
        c[:, 4:] = np.round(c[:, 4:] / step) * step
        crushed.append(c)
    whole = centred_cosine(np.concatenate(ref), np.concatenate(crushed))
    res = compare_outputs(ref, crushed, "yolov8", (128, 128), tolerance_for("int8"))
    assert whole > 0.999  # what a single cosine would report
    assert res.box_cosine == pytest.approx(1.0) and res.score_cosine < 0.5
    assert not res.passed and res.match_rate < 0.5


@pytest.mark.parametrize("layout", ["yolov5", "end2end"])
def test_other_layouts_split_boxes_and_scores(layout: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    if layout == "yolov5":
        out = np.concatenate([rng.uniform(10, 100, (1, 50, 4)), rng.uniform(0, 1, (1, 50, 1 + NC))], 2)
    else:
        out = np.concatenate([np.sort(rng.uniform(0, 100, (1, 20, 4)), 2), rng.uniform(0, 1, (1, 20, 1)),
                              rng.integers(0, NC, (1, 20, 1))], 2)
    path = make_layout_model(tmp_path / f"{layout}.onnx", layout, out, input_hw=(64, 64),
                             names={i: str(i) for i in range(NC)})
    res = check_parity(path, path, images=1)
    assert res.layout == layout and res.passed and res.ref_detections > 0
    worse = out.copy()
    worse[..., 4] *= 0.5  # halve objectness / scores only
    res = compare_outputs([out], [worse], layout, (64, 64), ParityTolerance())
    assert res.box_max_abs == 0 and res.score_max_abs > 0.1 and not res.passed


def test_tolerances_are_looser_for_reduced_precision() -> None:
    fp32, bf16 = tolerance_for("fp32"), tolerance_for("bf16")
    assert bf16.score_cosine < fp32.score_cosine and bf16.match_rate < fp32.match_rate
    assert tolerance_for("unknown") == fp32
