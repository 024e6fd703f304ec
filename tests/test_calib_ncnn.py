"""ncnn INT8 PTQ written by us (calibration.ncnn): the calibration table format, the int8 .param/.bin
(int8 keys and weights on quantized layers only, the excluded DFL convolution left float), the engine
running it as mixed precision with the fp32 model's detections, and the cached table."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("ncnn", reason="ncnn quantization needs ncnn (pip install 'edgebench[ncnn]')")

from calibration.cache import CalibrationCache  # noqa: E402
from calibration.dataset import build_calibration_set  # noqa: E402
from calibration.exclusions import resolve_exclusion  # noqa: E402
from calibration.methods import Method  # noqa: E402
from calibration.ncnn import quantize  # noqa: E402
from calibration.ncnn_int8 import quantize_weights, winograd_conv  # noqa: E402
from calibration.ncnn_param import TAG_INT8, bin_layout, read_param  # noqa: E402
from calibration.ncnn_stats import BINS, kl_bins, percentile_bins  # noqa: E402
from calibration.ncnn_table import CalibrationTable, parse_table, read_table  # noqa: E402
from calibration.onnx_prep import float32_onnx  # noqa: E402
from calibration.request import QuantizeRequest  # noqa: E402
from converters.ncnn import pnnx_binary, to_ncnn  # noqa: E402
from edge_sdk.detector import Detector  # noqa: E402
from edge_sdk.frames import read_image  # noqa: E402
from edge_sdk.synth import generate  # noqa: E402
from runtimes import load  # noqa: E402
from runtimes.errors import BackendUnavailableError, CalibrationError  # noqa: E402
from runtimes.precision import Precision  # noqa: E402

try:
    pnnx_binary()
except BackendUnavailableError:
    pytest.skip("the float ncnn model needs pnnx (pip install 'edgebench[ncnn-export]')", allow_module_level=True)

BUNDLED = Path(__file__).resolve().parents[1] / "edge_sdk" / "assets" / "default_model.onnx"
IMGSZ = 320


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ncnn-ptq")
    data = generate(root / "data", train=12, val=4, imgsz=IMGSZ, seed=11) / "data.yaml"
    source = float32_onnx(BUNDLED, root / "src.onnx")
    return {"root": root, "data": data, "source": source, "fp32": to_ncnn(source, root / "fp32.param")}


def _request(work: dict[str, Path], out: str, exclude: str = "auto", method: Method = Method.MINMAX,
             cache: CalibrationCache | None = None, limit: int = 8) -> QuantizeRequest:
    spec = resolve_exclusion(exclude, onnx.load(str(work["source"])))
    return QuantizeRequest(source=work["source"], artifact=work["fp32"], out=work["root"] / out,
                           calib=build_calibration_set(work["data"], IMGSZ, limit=limit), method=method,
                           exclude=spec.all_nodes, cache=cache, threads=2)


@pytest.fixture(scope="module")
def auto(work: dict[str, Path]) -> tuple[QuantizeRequest, object]:
    req = _request(work, "int8.param", cache=CalibrationCache(work["root"] / "cache"))
    return req, quantize(req)


def _dfl_conv(param: Path) -> str:
    """The DFL's fixed 1x1 convolution: the one whose weights are 0..15."""
    model = read_param(param)
    data = param.with_suffix(".bin").read_bytes()
    layout = bin_layout(model, data)
    return next(ly.name for ly in model.layers if ly.type == "Convolution"
                and np.array_equal(layout.floats(data, ly.name, 0), np.arange(16, dtype=np.float32)))


def test_table_format_round_trips_and_reads_ncnn2table_output() -> None:
    table = CalibrationTable({"conv_0": np.array([127.0, 0.5, 1e-3, 31.0 / 7], np.float32)}, {"conv_0": 98.25})
    again = parse_table(table.text())
    assert again.layers() == ["conv_0"] and again.inputs == table.inputs
    np.testing.assert_array_equal(again.weights["conv_0"], table.weights["conv_0"])
    ncnn2table = "conv_0_param_0 12.500000 3.250000 \nconv_1_param_0 1.000000 \nconv_0 45.678900 \n"
    parsed = parse_table(ncnn2table)
    assert parsed.layers() == ["conv_0"] and parsed.inputs["conv_0"] == pytest.approx(45.6789)
    assert list(parsed.weights["conv_0"]) == [12.5, 3.25]
    with pytest.raises(CalibrationError, match="one number"):
        parse_table("conv_0 1.0 2.0\n")
    with pytest.raises(CalibrationError, match=":2: not a scale"):
        parse_table("conv_0 1.0\nconv_1 abc\n")


def test_kl_and_percentile_clip_a_long_tail_and_keep_a_flat_range() -> None:
    rng = np.random.default_rng(0)
    tailed = np.abs(rng.standard_normal(200_000))
    tailed = np.concatenate([tailed, [40.0]])  # one outlier sets absmax
    hist = np.bincount(np.minimum((tailed / 40.0 * BINS).astype(int), BINS - 1), minlength=BINS)
    assert 128 <= kl_bins(hist) < BINS // 4  # clipped well below the outlier
    assert percentile_bins(hist, 99.99) < BINS // 8
    flat = np.ones(BINS, np.int64)
    assert kl_bins(flat) > BINS * 0.9 and percentile_bins(flat, 100.0) == BINS


def test_weights_round_half_away_from_zero_and_clip_like_ncnn() -> None:
    w = np.array([[0.5, -0.5, 1.5, -2.0, 300.0]], np.float32)
    assert quantize_weights(w, np.array([1.0], np.float32)).tolist() == [1, -1, 2, -2, 127]


def test_int8_model_marks_quantized_layers_only_and_keeps_the_dfl_float(work: dict[str, Path], auto: tuple) -> None:
    req, result = auto
    param = read_param(req.out)
    dfl = _dfl_conv(work["fp32"])
    convs = [ly for ly in param.layers if ly.type == "Convolution"]
    int8 = [ly.name for ly in convs if ly.geti(8) == 2]
    # auto keeps 7 convolutions float: the DFL's fixed one and the head's six output convs
    assert dfl in result.excluded and len(result.excluded) == 7 and not set(result.excluded) & set(int8)
    assert len(int8) == len(convs) - 7 and result.extra["quantized_layers"] == len(int8)
    data = req.out.with_suffix(".bin").read_bytes()
    layout = bin_layout(param, data)  # our reader walks the int8 .bin to its exact end
    for ly in convs:
        first = layout.chunks[ly.name][0]
        assert (first.tag == TAG_INT8) == (ly.name in int8)
        if ly.name in int8:
            codes = np.frombuffer(data, np.int8, first.count, first.offset + 4)
            assert np.abs(codes).max() == (31 if winograd_conv(ly) else 127)  # 6-bit for ncnn's int8 Winograd
    table = read_table(req.out.with_suffix(".table"))
    assert table.layers() == int8
    assert len(req.out.with_suffix(".bin").read_bytes()) < 0.4 * len(work["fp32"].with_suffix(".bin").read_bytes())


def test_int8_model_runs_mixed_with_the_fp32_detections(work: dict[str, Path], auto: tuple) -> None:
    req, _ = auto
    with load(req.out, threads=2, precision="int8") as rt:
        assert rt.precision_used is Precision.MIXED
    # int8 scores move by a few hundredths: detections at the 0.25 threshold are matched down to 0.1
    ref_det, q_det = Detector(work["fp32"], threads=2), Detector(req.out, threads=2, conf=0.1)
    images = sorted((work["data"].parent / "images" / "val").glob("*"))
    score_moves, total = [], 0
    for path in images:
        frame = read_image(path)
        ref, got = ref_det(frame), q_det(frame)
        total += len(ref.scores)
        score_moves += _matches(ref, got, iou=0.75)
    assert total >= 4, "the fp32 model should find the synthetic shapes"
    assert len(score_moves) >= 0.95 * total, (len(score_moves), total)
    assert float(np.median(score_moves)) < 0.03, score_moves


def _matches(ref: object, got: object, iou: float) -> list[float]:
    """|score change| of each fp32 detection that has an int8 detection of its class with IoU >= iou."""
    moves = []
    for box, cls, score in zip(ref.xyxy, ref.class_ids, ref.scores, strict=True):  # type: ignore[attr-defined]
        same = got.class_ids == cls  # type: ignore[attr-defined]
        if not same.any():
            continue
        overlap = _iou(box, got.xyxy[same])  # type: ignore[attr-defined]
        if overlap.max() >= iou:
            moves.append(abs(float(score) - float(got.scores[same][overlap.argmax()])))  # type: ignore[attr-defined]
    return moves


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: np.prod(b[..., 2:] - b[..., :2], axis=-1)  # noqa: E731
    return np.asarray(inter / (area(box) + area(boxes) - inter))


def test_table_is_cached_and_exclusion_none_quantizes_every_conv(work: dict[str, Path], auto: tuple) -> None:
    req, first = auto
    assert not first.cache_hit
    again = quantize(_request(work, "none.param", exclude="none", cache=req.cache))
    assert again.cache_hit and again.excluded == ()  # same key: exclusions filter the cached table
    param = read_param(again.path)
    assert all(ly.geti(8) == 2 for ly in param.layers if ly.type == "Convolution")
    table = read_table(again.path.with_suffix(".table"))
    assert table.inputs[_dfl_conv(work["fp32"])] > 0
    # the DFL's fixed weights 0..15 get the whole-number scale 8 (codes 0, 8, ..., 120: exact), not 127/15
    assert table.weights[_dfl_conv(work["fp32"])].tolist() == [8.0]
    learned = next(ly for ly in param.layers if ly.type == "Convolution" and ly.name != _dfl_conv(work["fp32"]))
    assert float(table.weights[learned.name][0]) != round(float(table.weights[learned.name][0]))


def test_entropy_runs_and_unknown_methods_are_refused(work: dict[str, Path]) -> None:
    result = quantize(_request(work, "kl.param", method=Method.ENTROPY, limit=2))
    assert result.path.is_file() and "entropy" in result.scheme
    with pytest.raises(CalibrationError, match="minmax, entropy, percentile"):
        quantize(_request(work, "d.param", method=Method.DISTRIBUTION, limit=1))
    with pytest.raises(CalibrationError, match="already quantized"):
        quantize(QuantizeRequest(source=work["source"], artifact=result.path, out=work["root"] / "x.param",
                                 calib=build_calibration_set(work["data"], IMGSZ, limit=1), method=Method.MINMAX))
