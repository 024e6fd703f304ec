"""Decoding + class-aware NMS, exactly, through edge_sdk.Detector on constant-output ONNX models."""
from __future__ import annotations

import numpy as np
import pytest
import reference_nms as ref

from edge_sdk import Detections, Detector
from edge_sdk.decode import DecodeConfig, decode, infer_layout
from edge_sdk.nms import batched_nms
from runtimes.errors import LayoutError
from testkit.models import make_layout_model

FRAME = np.zeros((320, 320, 3), np.uint8)  # same size as the model input: identity letterbox
JUST_ABOVE = float(np.nextafter(np.float32(0.25), np.float32(1)))

# cx, cy, w, h in input pixels, and 3 class scores per box.
BOXES = [(100, 100, 40, 40), (104, 100, 40, 40), (102, 100, 40, 40), (250, 250, 60, 30),
         (250, 250, 60, 30), (200, 60, 20, 20), (60, 250, 30, 30), (150, 160, 50, 50)]
SCORES = [[0.9, 0.1, 0.0],  # a0: class 0
          [0.8, 0.0, 0.0],  # a1: class 0, IoU 0.818 with a0 -> suppressed at iou 0.7
          [0.0, 0.85, 0.0],  # a2: class 1, overlaps a0 -> kept (other class)
          [0.0, 0.0, 0.25],  # a3: exactly conf -> dropped (strict >)
          [0.0, 0.0, JUST_ABOVE],  # a4: one float32 step above conf -> kept
          [0.3, 0.6, 0.0],  # a5: class 1; class 0 too when multi-label
          [0.1, 0.1, 0.1],  # a6: below conf
          [0.5, 0.0, 0.0]]  # a7: class 0, far from a0
A0 = (80, 80, 120, 120, 0.9, 0)
A1 = (84, 80, 124, 120, 0.8, 0)
A2 = (82, 80, 122, 120, 0.85, 1)
A4 = (220, 235, 280, 265, JUST_ABOVE, 2)
A5 = (190, 50, 210, 70, 0.6, 1)
A5_CLS0 = (190, 50, 210, 70, 0.3, 0)
A7 = (125, 135, 175, 185, 0.5, 0)


def yolov8_output() -> np.ndarray:
    return np.concatenate([np.array(BOXES, np.float32).T, np.array(SCORES, np.float32).T])[None]


def yolov5_output(obj: float = 1.0) -> np.ndarray:
    rows = [list(b) + [obj] + s for b, s in zip(BOXES, SCORES, strict=False)]
    return np.array(rows, np.float32)[None]


def run(tmp_path, layout: str, output: np.ndarray, frame: np.ndarray = FRAME, **kwargs) -> Detections:
    path = make_layout_model(tmp_path / f"{layout}.onnx", layout, output)
    with Detector(path, **kwargs) as det:
        assert det.layout == layout
        return det(frame)


def assert_dets(dets: Detections, expected: list, rtol: float = 1e-5) -> None:
    """Same boxes, scores and classes in the same (score) order."""
    assert len(dets) == len(expected), (dets.to_list(), expected)
    if not expected:
        return
    exp = np.array([e[:5] for e in expected], np.float64)
    np.testing.assert_allclose(dets.xyxy, exp[:, :4], rtol=rtol, atol=1e-5)
    np.testing.assert_allclose(dets.scores, exp[:, 4], rtol=1e-6)
    np.testing.assert_array_equal(dets.class_ids, [e[5] for e in expected])


@pytest.mark.parametrize("layout", ["yolov8", "yolov5"])
def test_single_label_class_aware_nms_and_strict_conf(tmp_path, layout):
    out = yolov8_output() if layout == "yolov8" else yolov5_output()
    assert_dets(run(tmp_path, layout, out), [A0, A2, A5, A7, A4])


@pytest.mark.parametrize("layout", ["yolov8", "yolov5"])
def test_iou_threshold_is_strict_overlap(tmp_path, layout):
    out = yolov8_output() if layout == "yolov8" else yolov5_output()
    # IoU(a0, a1) = 1440 / 1760 = 0.818: suppressed at 0.7 (above), kept at 0.85.
    assert_dets(run(tmp_path, layout, out, iou=0.85), [A0, A2, A1, A5, A7, A4])


@pytest.mark.parametrize("layout", ["yolov8", "yolov5"])
def test_multi_label_keeps_every_class_above_conf(tmp_path, layout):
    out = yolov8_output() if layout == "yolov8" else yolov5_output()
    assert_dets(run(tmp_path, layout, out, multi_label=True), [A0, A2, A5, A7, A5_CLS0, A4])


def test_conf_equal_to_score_is_dropped(tmp_path):
    assert_dets(run(tmp_path, "yolov8", yolov8_output(), conf=0.5), [A0, A2, A5])
    assert_dets(run(tmp_path, "yolov8", yolov8_output(), conf=0.9), [])


@pytest.mark.parametrize("max_det", [0, 1, 2, 4])
def test_max_det_keeps_the_best(tmp_path, max_det):
    assert_dets(run(tmp_path, "yolov8", yolov8_output(), max_det=max_det), [A0, A2, A5, A7, A4][:max_det])


def test_yolov5_objectness_multiplies_class_scores(tmp_path):
    box = [(60, 60, 20, 20), (160, 160, 20, 20), (260, 60, 20, 20), (60, 260, 20, 20)]
    obj_cls = [(0.5, [0.6, 0.0, 0.0]),  # 0.30 -> kept
               (0.9, [0.0, 0.25, 0.0]),  # 0.225 -> dropped although both factors >= conf
               (0.2, [0.0, 0.0, 0.99]),  # 0.198 -> dropped although the class score is high
               (0.8, [0.0, 0.4, 0.35])]  # 0.32 (class 1), 0.28 (class 2)
    out = np.array([[*b, o, *c] for b, (o, c) in zip(box, obj_cls, strict=False)], np.float32)[None]
    f = np.float32
    r0 = (50, 50, 70, 70, float(f(0.5) * f(0.6)), 0)
    r3 = (50, 250, 70, 270, float(f(0.8) * f(0.4)), 1)
    r3b = (50, 250, 70, 270, float(f(0.8) * f(0.35)), 2)
    assert_dets(run(tmp_path, "yolov5", out), [r3, r0])
    assert_dets(run(tmp_path, "yolov5", out, multi_label=True), [r3, r0, r3b])


def end2end_output() -> np.ndarray:
    rows = [(10, 10, 50, 50, 0.9, 2), (200, 200, 220, 240, 0.6, 5), (12, 12, 52, 52, 0.8, 2),
            (100, 100, 150, 150, 0.25, 0)] + [(0, 0, 0, 0, 0, 0)] * 4
    return np.array(rows, np.float32)[None]


def test_end2end_filters_sorts_and_cuts_without_nms(tmp_path):
    e = [(10, 10, 50, 50, 0.9, 2), (12, 12, 52, 52, 0.8, 2), (200, 200, 220, 240, 0.6, 5)]
    assert_dets(run(tmp_path, "end2end", end2end_output()), e)  # overlapping same class: both kept
    assert_dets(run(tmp_path, "end2end", end2end_output(), max_det=2), e[:2])
    assert_dets(run(tmp_path, "end2end", end2end_output(), conf=0.8), e[:1])


# ---- against the independent reference on seeded random tensors ---------------------------------

def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Boxes (cx, cy, w, h) around a few cluster centres, so NMS has real work; some cross the border."""
    centres = rng.uniform(20, 300, (6, 2))
    cxcy = centres[rng.integers(0, 6, n)] + rng.normal(0, 12, (n, 2))
    wh = rng.uniform(12, 90, (n, 2))
    return np.concatenate([cxcy, wh], 1).astype(np.float32)


def random_output(layout: str, seed: int, n: int = 300, nc: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if layout == "end2end":
        xy = rng.uniform(-10, 300, (n, 2))
        rows = np.concatenate([xy, xy + rng.uniform(5, 80, (n, 2)), rng.random((n, 1)),
                               rng.integers(0, nc, (n, 1))], 1)
        return rows.astype(np.float32)[None]
    boxes = random_boxes(rng, n)
    if layout == "yolov8":
        return np.concatenate([boxes.T, rng.random((nc, n)) ** 3]).astype(np.float32)[None]
    obj, cls = rng.random((n, 1)) ** 0.5, rng.random((n, nc)) ** 2
    return np.concatenate([boxes, obj, cls], 1).astype(np.float32)[None]


SETTINGS = [dict(conf=0.25, iou=0.5, max_det=300, multi_label=False),
            dict(conf=0.1, iou=0.6, max_det=50, multi_label=True),
            dict(conf=0.4, iou=0.3, max_det=7, multi_label=False),
            dict(conf=0.05, iou=0.45, max_det=300, multi_label=True)]


def reference(out: np.ndarray, layout: str, s: dict) -> list:
    return ref.reference_detect(out[0].tolist(), layout, s["conf"], s["iou"], s["max_det"], s["multi_label"])


@pytest.mark.parametrize("layout", ["yolov8", "yolov5", "end2end"])
@pytest.mark.parametrize("seed", [0, 1])
def test_detector_matches_reference_on_random_outputs(tmp_path, layout, seed):
    out = random_output(layout, seed)
    path = make_layout_model(tmp_path / "m.onnx", layout, out)
    for s in SETTINGS:
        expected = ref.to_original(reference(out, layout, s), 1.0, 0, 0, 320, 320)
        with Detector(path, **s) as det:
            got = det(FRAME)
        assert len(expected) > (5 if s["max_det"] > 7 else 1)  # the case is not trivial
        assert_dets(got, expected)


@pytest.mark.parametrize("layout", ["yolov8", "yolov5", "end2end"])
def test_letterboxed_frame_matches_reference(tmp_path, layout):
    out = random_output(layout, seed=7)
    path = make_layout_model(tmp_path / "m.onnx", layout, out)
    frame = np.zeros((480, 640, 3), np.uint8)  # scale 0.5, padding 40 px top and bottom
    s = SETTINGS[1]
    expected = ref.to_original(reference(out, layout, s), 0.5, 0, 40, 640, 480)
    with Detector(path, **s) as det:
        assert_dets(det(frame), expected)


@pytest.mark.parametrize("layout", ["yolov8", "yolov5", "end2end"])
def test_decode_batches_match_reference(layout):
    out = np.concatenate([random_output(layout, seed=3), random_output(layout, seed=4)])
    s = SETTINGS[0]
    results = decode(out, layout, DecodeConfig(conf=s["conf"], iou=s["iou"], max_det=s["max_det"]))
    for i, (xyxy, scores, cls) in enumerate(results):
        got = Detections(xyxy, scores, cls)
        assert_dets(got, reference(out[i:i + 1], layout, s))


# ---- layout inference ------------------------------------------------------------------------

@pytest.mark.parametrize("shape,nc,layout", [
    ((1, 84, 8400), None, "yolov8"), ((1, 84, 8400), 80, "yolov8"), ((1, 6, 2100), 2, "yolov8"),
    ((1, 25200, 85), None, "yolov5"), ((1, 25200, 85), 80, "yolov5"), ((2, 6300, 7), 2, "yolov5"),
    ((1, 300, 6), None, "end2end"), ((1, 300, 6), 80, "end2end"),
])
def test_infer_layout_from_shape(shape, nc, layout):
    assert infer_layout(shape, nc) == layout


@pytest.mark.parametrize("shape,nc", [((1, 84), None), ((1, 84, 8400, 1), None), ((1, 4, 4), None),
                                      ((1, 3, 100), None), ((1, 10, 8400), 80), ((1, 8400, 10), 80)])
def test_impossible_shape_is_a_layout_error(shape, nc):
    with pytest.raises(LayoutError):
        infer_layout(shape, nc)


@pytest.mark.parametrize("layout", ["yolov8", "yolov5", "end2end"])
def test_detector_infers_layout_without_metadata(tmp_path, layout):
    path = make_layout_model(tmp_path / "m.onnx", layout, random_output(layout, 0), meta=None)
    with Detector(path) as det:
        assert det.layout == layout
        assert det.input_size == (320, 320)


def test_unknown_layout_name_is_a_layout_error():
    with pytest.raises(LayoutError, match="unknown layout"):
        decode(np.zeros((1, 84, 10), np.float32), "yolov9000", DecodeConfig())


@pytest.mark.parametrize("nc", [2, 5])  # ~1500 per class (loop per kept box) / ~600 per class (pairwise)
def test_many_candidates_match_reference(nc):
    out = random_output("yolov8", seed=11, n=3000, nc=nc)
    s = dict(conf=0.05, iou=0.5, max_det=300, multi_label=False)
    (xyxy, scores, cls), = decode(out, "yolov8", DecodeConfig(conf=s["conf"], iou=s["iou"], max_det=s["max_det"]))
    assert len(scores) > 50
    assert_dets(Detections(xyxy, scores, cls), reference(out, "yolov8", s))


def test_agnostic_nms_over_many_boxes_matches_reference():
    out = random_output("yolov8", seed=12, n=3000, nc=1)  # ~1600 candidates, one class
    s = dict(conf=0.1, iou=0.6, max_det=100, multi_label=False)
    cfg = DecodeConfig(conf=s["conf"], iou=s["iou"], max_det=s["max_det"], agnostic=True)
    (xyxy, scores, cls), = decode(out, "yolov8", cfg)
    assert_dets(Detections(xyxy, scores, cls), reference(out, "yolov8", s))


def nms_vs_reference(boxes: np.ndarray, scores: np.ndarray, cls: np.ndarray, iou: float, agnostic: bool = False):
    idx = batched_nms(boxes, scores, cls, iou, 300, agnostic)
    cands = [(float(s), n, 0 if agnostic else int(c), tuple(float(v) for v in b))
             for n, (b, s, c) in enumerate(zip(boxes, scores, cls, strict=False))]
    expected = ref.greedy_nms(cands, iou, 300)
    assert [tuple(float(v) for v in boxes[j]) + (float(scores[j]),) for j in idx] == [e[:5] for e in expected]


def test_nms_iou_exactly_at_threshold_is_kept():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 20], [5, 0, 15, 10]], np.float32)  # IoU 0.5 and 1/3
    scores, cls = np.array([0.9, 0.8, 0.7], np.float32), np.zeros(3, np.int64)
    np.testing.assert_array_equal(batched_nms(boxes, scores, cls, 0.5), [0, 1, 2])
    np.testing.assert_array_equal(batched_nms(boxes, scores, cls, 0.4999), [0, 2])
    np.testing.assert_array_equal(batched_nms(boxes, scores, cls, 1 / 3), [0, 2])
    np.testing.assert_array_equal(batched_nms(boxes, scores, cls, 0.3), [0])
    np.testing.assert_array_equal(batched_nms(boxes, scores, cls, 0.3, max_det=0), np.zeros(0, np.int64))
    # nested, sharing the right edge: IoU = overlap / width, the tightest case for any x-pruning
    nested = np.array([[0, 0, 10, 10], [4.9990234375, 0, 10, 10], [5.0009765625, 0, 10, 10]], np.float32)
    for agnostic in (False, True):
        np.testing.assert_array_equal(batched_nms(nested, scores, cls, 0.5, agnostic=agnostic), [0, 2])
        np.testing.assert_array_equal(batched_nms(nested[[1, 0]], scores[:2], cls[:2], 0.5, agnostic=agnostic), [0])
        np.testing.assert_array_equal(batched_nms(nested[[2, 0]], scores[:2], cls[:2], 0.5, agnostic=agnostic), [0, 1])


@pytest.mark.parametrize("scale,offset", [(1.0, 0.0), (1e-3, 5000.0), (50.0, -2000.0)])
@pytest.mark.parametrize("iou", [0.0, 0.3, 0.7, 0.95])
def test_nms_matches_reference_on_tiny_huge_and_shifted_boxes(scale, offset, iou):
    rng = np.random.default_rng(int(iou * 100))
    n = 400
    xy = offset + scale * (rng.uniform(0, 40, (n, 2)).round(1))
    wh = scale * rng.choice([0.5, 1, 2, 4, 8], (n, 2)) * rng.integers(1, 4, (n, 1))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    boxes[::7] = boxes[::7][0]  # many identical boxes
    scores = rng.random(n).astype(np.float32)
    cls = rng.choice([0, 3, 79], n)
    nms_vs_reference(boxes, scores, cls, iou)
    nms_vs_reference(boxes, scores, cls, iou, agnostic=True)


@pytest.mark.parametrize("kw, msg", [({"conf": -0.5}, "conf must be between 0 and 1"),
                                     ({"conf": 1.5}, "conf must be between 0 and 1"),
                                     ({"iou": 2.0}, "iou must be above 0 and at most 1"),
                                     ({"iou": 0.0}, "iou must be above 0 and at most 1"),
                                     ({"max_det": -1}, "max_det must be a non-negative integer")])
def test_thresholds_that_make_no_sense_are_refused(kw: dict, msg: str) -> None:
    from runtimes.errors import InputError

    with pytest.raises(InputError, match=msg):
        DecodeConfig(**kw)
