"""edge_sdk.Detector end to end: letterbox rescale, metadata, input errors, and the YOLOv8 fixture."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import reference_nms as ref

from edge_sdk import Detector
from edge_sdk.letterbox import InputBuffer, letterbox_image, preprocess
from runtimes.errors import InputError
from testkit.models import make_layout_model, make_yolov8_onnx, parameter_count, synthetic_frame

NAMES = {0: "person", 1: "car", 2: "dog"}


def yolov8_out(boxes_xyxy: list, classes: list, scores: list, nc: int = 3, n: int = 16) -> np.ndarray:
    """[1, 4+nc, n] from corner boxes (as cx, cy, w, h), one class score each; zero-score padding."""
    b = np.array(boxes_xyxy, np.float64)
    out = np.zeros((4 + nc, n))
    out[:4, :len(b)] = [(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]]
    out[4 + np.array(classes), np.arange(len(b))] = scores
    return out.astype(np.float32)[None]


# (frame h, w) -> letterbox into 320x320 worked out by hand: scale, pad_x, pad_y.
#   480x640: scale min(320/480, 320/640) = 0.5 -> 320x240 content, (320-240)/2 = 40 px top.
#   300x640: scale 0.5 -> 320x150, (320-150)/2 = 85 px top.
#   640x300: scale 0.5 -> 150x320, 85 px left.
#   500x333: scale min(0.64, 0.961) = 0.64 -> round(213.12) = 213 wide, (320-213)/2 = 53.5 -> 53 px left.
GEOMETRY = {(480, 640): (0.5, 0, 40), (300, 640): (0.5, 0, 85), (640, 300): (0.5, 85, 0),
            (500, 333): (0.64, 53, 0)}


@pytest.mark.parametrize("hw", list(GEOMETRY))
def test_letterbox_rescale_to_original_pixels(tmp_path, hw):
    scale, px, py = GEOMETRY[hw]
    h, w = hw
    # one box inside the content area, one crossing its top-left corner (clipped to the image)
    inside = [px + 10, py + 20, px + 60, py + 100]
    crossing = [px - 30, py - 20, px + 40, py + 30]
    path = make_layout_model(tmp_path / "m.onnx", "yolov8", yolov8_out([inside, crossing], [1, 2], [0.9, 0.8]),
                             names=NAMES)
    with Detector(path) as det:
        dets = det(np.zeros((h, w, 3), np.uint8))
    assert dets.image_size == (h, w)
    np.testing.assert_allclose(dets.xyxy[0], [10 / scale, 20 / scale, 60 / scale, 100 / scale], rtol=1e-6)
    np.testing.assert_allclose(dets.xyxy[1], [0, 0, 40 / scale, 30 / scale], rtol=1e-6)
    assert dets.class_names == ["car", "dog"]


def test_letterbox_literal_numbers_480x640(tmp_path):
    # input box (80, 80, 120, 120) -> x / 0.5, (y - 40) / 0.5
    path = make_layout_model(tmp_path / "m.onnx", "yolov8", yolov8_out([[80, 80, 120, 120]], [0], [0.9]))
    with Detector(path) as det:
        np.testing.assert_allclose(det(np.zeros((480, 640, 3), np.uint8)).xyxy, [[160, 80, 240, 160]])


def test_clip_off_keeps_boxes_outside_the_image(tmp_path):
    path = make_layout_model(tmp_path / "m.onnx", "yolov8", yolov8_out([[-10, 30, 340, 60]], [0], [0.9]))
    with Detector(path, clip=False) as det:
        np.testing.assert_allclose(det(np.zeros((480, 640, 3), np.uint8)).xyxy, [[-20, -20, 680, 40]])
    with Detector(path) as det:
        np.testing.assert_allclose(det(np.zeros((480, 640, 3), np.uint8)).xyxy, [[0, 0, 640, 40]])


@pytest.mark.parametrize("meta", ["ultralytics", "edgebench", None])
def test_metadata_styles(tmp_path, meta):
    out = yolov8_out([[10, 10, 50, 50]], [2], [0.9])
    path = make_layout_model(tmp_path / "m.onnx", "yolov8", out, input_hw=(256, 320), names=NAMES, meta=meta)
    with Detector(path) as det:
        assert det.input_size == (256, 320)
        assert det.layout == "yolov8"
        assert det.names == (NAMES if meta else {})
        dets = det(np.zeros((256, 320, 3), np.uint8))
    assert dets.class_names == (["dog"] if meta else ["2"])


def test_layout_model_output_is_the_constant_for_any_input(tmp_path):
    out = np.random.default_rng(0).normal(size=(1, 9, 50)).astype(np.float32)
    sess = ort.InferenceSession(str(make_layout_model(tmp_path / "m.onnx", "yolov8", out)),
                                providers=["CPUExecutionProvider"])
    for fill in (0.0, 1.0, 1e6):
        got = sess.run(None, {"images": np.full((1, 3, 320, 320), fill, np.float32)})[0]
        np.testing.assert_array_equal(got, out)


def test_layout_model_rejects_a_shape_that_does_not_fit(tmp_path):
    with pytest.raises(ValueError, match="does not fit"):
        make_layout_model(tmp_path / "m.onnx", "end2end", np.zeros((1, 10, 7), np.float32))


@pytest.mark.parametrize("hw", [(720, 1280), (500, 333), (320, 320), (90, 50)])
@pytest.mark.parametrize("size", [(320, 320), (256, 320)])
def test_preprocess_is_letterbox_rgb_over_255(hw, size):
    frame = np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8)
    padded, lb_ref = letterbox_image(frame, size)
    expected = (padded[:, :, ::-1].astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    nchw, lb = preprocess(frame, size)
    nhwc, _ = preprocess(frame, size, layout="nhwc")
    assert lb == lb_ref
    np.testing.assert_array_equal(nchw, expected)
    np.testing.assert_array_equal(nhwc, expected.transpose(0, 2, 3, 1))
    assert nchw[0, :, 0, 0].tolist() == [np.float32(114) / np.float32(255)] * 3 or lb.pad_x == lb.pad_y == 0


def test_reused_input_buffer_refills_the_border_when_the_geometry_changes():
    rng = np.random.default_rng(1)
    for layout in ("nchw", "nhwc"):
        buffer = InputBuffer()
        for hw in [(480, 640), (480, 640), (640, 300), (320, 320), (500, 333), (480, 640)]:
            frame = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
            got, _ = preprocess(frame, (320, 320), layout=layout, buffer=buffer)
            assert got is buffer.array
            np.testing.assert_array_equal(got, preprocess(frame, (320, 320), layout=layout)[0])


def test_detector_frames_of_changing_size_in_one_stream(tmp_path):
    path = make_layout_model(tmp_path / "m.onnx", "yolov8", yolov8_out([[80, 100, 120, 140]], [0], [0.9]))
    with Detector(path) as det:
        for (h, w), (scale, px, py) in [*GEOMETRY.items(), *GEOMETRY.items()]:
            dets = det(np.zeros((h, w, 3), np.uint8))
            expected = [(80 - px) / scale, (100 - py) / scale, (120 - px) / scale, (140 - py) / scale]
            np.testing.assert_allclose(dets.xyxy[0], np.clip(expected, 0, [w, h, w, h]), rtol=1e-6)


# ---- errors ----------------------------------------------------------------------------------

def test_rank3_input_model_is_an_input_error(tmp_path):
    path = make_layout_model(tmp_path / "m.onnx", "yolov8", np.zeros((1, 6, 10), np.float32),
                             input_shape=(3, 320, 320))
    with pytest.raises(InputError, match="rank 4"):
        Detector(path)


@pytest.mark.parametrize("frame", ["image.jpg", np.zeros((320, 320), np.uint8), np.zeros((320, 320, 4), np.uint8),
                                   np.zeros((320, 320, 3), np.float32), np.zeros((0, 320, 3), np.uint8)])
def test_non_frame_input_is_an_input_error(tmp_path, frame):
    path = make_layout_model(tmp_path / "m.onnx", "yolov8", np.zeros((1, 6, 10), np.float32))
    with Detector(path) as det, pytest.raises(InputError):
        det(frame)


# ---- the YOLOv8-architecture fixture -----------------------------------------------------------

@pytest.fixture(scope="module")
def yolov8_320(tmp_path_factory):
    return make_yolov8_onnx(tmp_path_factory.mktemp("y8") / "yolov8.onnx", imgsz=320)


def test_yolov8_fixture_graph(yolov8_320):
    model = onnx.load(str(yolov8_320))
    onnx.checker.check_model(model)
    assert 3_100_000 < parameter_count(yolov8_320) < 3_200_000
    props = {p.key: p.value for p in model.metadata_props}
    assert props["imgsz"] == "[320, 320]" and props["stride"] == "32" and props["task"] == "detect"
    ops = {n.op_type for n in model.graph.node}
    assert {"Conv", "Sigmoid", "Split", "MaxPool", "Resize", "Softmax", "Concat"} <= ops


def test_yolov8_fixture_output_is_boxes_and_scores(yolov8_320):
    with Detector(yolov8_320) as det:
        out = det.infer(det.preprocess(synthetic_frame())[0])[0]
    assert out.shape == (1, 84, 2100)
    assert np.isfinite(out).all()
    scores = out[0, 4:]
    assert scores.min() >= 0 and scores.max() <= 1
    assert 0 < (scores.max(0) > 0.25).sum() < 0.2 * out.shape[2]  # mostly low, some above conf
    w, h = out[0, 2], out[0, 3]
    assert (w > 0).all() and (h > 0).all() and np.median(w) < 320


def test_detector_on_yolov8_fixture_matches_reference(yolov8_320):
    frame = synthetic_frame()  # 720x1280 -> scale 0.25, 320x180 content, (320-180)/2 = 70 px top
    with Detector(yolov8_320, multi_label=True) as det:
        tensor, _ = det.preprocess(frame)
        raw = det.infer(tensor)[0]
        dets = det(frame)
    expected = ref.to_original(ref.reference_detect(raw[0].tolist(), "yolov8", 0.25, 0.7, 300, True),
                               0.25, 0, 70, 1280, 720)
    assert len(dets) == len(expected) > 3
    exp = np.array(expected)
    np.testing.assert_allclose(dets.xyxy, exp[:, :4], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dets.scores, exp[:, 4], rtol=1e-6)
    np.testing.assert_array_equal(dets.class_ids, exp[:, 5].astype(int))


def test_yolov8_fixture_dynamic_batch(tmp_path):
    path = make_yolov8_onnx(tmp_path / "dyn.onnx", nc=3, imgsz=128, width=0.125, dynamic_batch=True,
                            names=NAMES)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((2, 3, 128, 128), np.float32)
    both = sess.run(None, {"images": x})[0]
    assert both.shape == (2, 7, 336)
    np.testing.assert_allclose(sess.run(None, {"images": x[1:]})[0], both[1:], rtol=1e-4, atol=1e-4)


def test_preprocess_takes_an_int_as_a_square_size() -> None:
    frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    square, lb = preprocess(frame, 320)
    pair, lb_pair = preprocess(frame, (320, 320))
    assert square.shape == (1, 3, 320, 320) and np.array_equal(square, pair) and lb == lb_pair
    assert preprocess(frame, np.int64(160))[0].shape == (1, 3, 160, 160)


@pytest.mark.parametrize("size", [0, -320, 320.0, True, "320", (320,), (320, 320, 3), (320, 0), None])
def test_preprocess_refuses_other_sizes_with_a_typed_error(size: object) -> None:
    frame = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(InputError, match="input size must be a positive int or"):
        preprocess(frame, size)  # type: ignore[arg-type]
