"""TFLite INT8 through ai-edge-quantizer (calibration.tflite): the excluded ONNX nodes are found in the
.tflite by value and stay float while every other op gets integer kernels, int8 I/O gives int8 tensors
the runtime reads, the calibration cache skips the calibration run, unsupported methods are refused,
and the output rewrite for full-integer models divides the boxes by the input size."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

pytest.importorskip("ai_edge_quantizer")
pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from calibration import tflite_ops  # noqa: E402
from calibration.cache import CalibrationCache  # noqa: E402
from calibration.dataset import CalibrationSet, build_calibration_set  # noqa: E402
from calibration.exclusions import decode_tail  # noqa: E402
from calibration.methods import Method  # noqa: E402
from calibration.onnx_prep import float32_onnx  # noqa: E402
from calibration.request import QuantizeRequest, QuantizeResult  # noqa: E402
from calibration.tflite import quantize  # noqa: E402
from converters.rewrites_outputs import NORMALIZED, normalize_boxes  # noqa: E402
from converters.tflite import to_tflite  # noqa: E402
from edge_sdk.meta import EDGEBENCH_KEY  # noqa: E402
from runtimes.errors import CalibrationError  # noqa: E402
from runtimes.precision import Precision  # noqa: E402
from runtimes.tflite_backend import TfliteRuntime  # noqa: E402

SIZE = 128


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tflite_int8")


@pytest.fixture(scope="module")
def calib(work: Path) -> CalibrationSet:
    """Eight smooth random images (blurred noise: structure at several scales, like photos)."""
    rng = np.random.default_rng(3)
    folder = work / "calib"
    folder.mkdir()
    for i in range(8):
        img = cv2.GaussianBlur((rng.random((96, 128, 3)) * 255).astype(np.uint8), (0, 0), 1.5 + i % 3)
        cv2.imwrite(str(folder / f"{i}.png"), img)
    return build_calibration_set(folder, SIZE, limit=8)


@pytest.fixture(scope="module")
def source(small_model: Path, work: Path) -> Path:
    return float32_onnx(small_model, work / "f32.onnx")


@pytest.fixture(scope="module")
def float_tflite(source: Path, work: Path) -> Path:
    return to_tflite(source, work / "f32.tflite", "fp32")


def _request(source: Path, artifact: Path, out: Path, calib: CalibrationSet, **kw: object) -> QuantizeRequest:
    tail = decode_tail(onnx.load(str(source)))
    return replace(QuantizeRequest(source, artifact, out, calib, Method.MOVING_AVERAGE, tail), **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def auto(source: Path, float_tflite: Path, calib: CalibrationSet, work: Path) -> QuantizeResult:
    return quantize(_request(source, float_tflite, work / "auto.tflite", calib))


@pytest.fixture(scope="module")
def plain(source: Path, float_tflite: Path, calib: CalibrationSet, work: Path) -> QuantizeResult:
    return quantize(_request(source, float_tflite, work / "none.tflite", calib, exclude=()))


def _structural_tail(path: Path) -> set[str]:
    """Output names of the .tflite ops from the first non-4-D tensor to the output (graph position, the
    TFLite twin of calibration.exclusions.decode_tail): an independent check of the by-value mapping."""
    interp = tflite_ops.interpreter(path)
    ranks = {int(t["index"]): len(t["shape"]) for t in interp.get_tensor_details()}
    flat: set[int] = set()
    names = {int(t["index"]): t["name"] for t in interp.get_tensor_details()}
    for op in interp._get_ops_details():
        outs = [int(o) for o in op["outputs"]]
        if any(int(i) in flat for i in op["inputs"]) or any(ranks[o] != 4 for o in outs):
            flat.update(outs)
    return {names[t] for t in flat}


def _run(path: Path, images: list[np.ndarray]) -> np.ndarray:
    rt = TfliteRuntime(path)
    try:
        return np.stack([rt.infer([x])[0][0] for x in images])
    finally:
        rt.close()


def test_excluded_nodes_map_to_the_tflite_decode_tail(source: Path, float_tflite: Path,
                                                      calib: CalibrationSet) -> None:
    sample = next(calib.arrays(limit=1))
    mapping = tflite_ops.onnx_nodes_of_ops(source, float_tflite, sample)
    ops = tflite_ops.read_ops(tflite_ops.interpreter(float_tflite))
    chosen, unmapped = tflite_ops.ops_of_nodes(mapping, decode_tail(onnx.load(str(source))), ops)
    assert len(mapping) == len(ops)  # every op found its ONNX node (the PADs through their convolution)
    assert {op.outputs[0] for op in chosen} == _structural_tail(float_tflite)
    assert unmapped == []


def test_int8_kernels_everywhere_but_the_excluded_ops(auto: QuantizeResult, work: Path) -> None:
    floats = tflite_ops.float_ops(auto.path)
    assert auto.float_ops == ()  # nothing in float beyond the exclusions
    assert sorted(op.label for op in floats) == sorted(auto.excluded)
    assert {op.name for op in floats} >= {"SOFTMAX", "CONCATENATION", "LOGISTIC"}  # DFL and output concat
    ints = [op for op in tflite_ops.read_ops(tflite_ops.interpreter(auto.path))
            if not op.computes_in_float and op.name not in tflite_ops.CONVERT_OPS]
    assert sum(op.name == "CONV_2D" for op in ints) > 10
    assert all(d in ("int8", "int16", "int32") for op in ints for d in op.input_dtypes[:1])
    rt = TfliteRuntime(auto.path)
    assert rt.precision_used is Precision.MIXED
    rt.close()


def test_without_exclusions_every_op_is_integer(plain: QuantizeResult) -> None:
    assert plain.excluded == () and plain.float_ops == ()
    assert tflite_ops.float_ops(plain.path) == []
    assert TfliteRuntime(plain.path).precision_used is Precision.INT8


def test_float_tail_keeps_the_scores_an_int8_concat_crushes(auto: QuantizeResult, plain: QuantizeResult,
                                                            float_tflite: Path, calib: CalibrationSet) -> None:
    images = list(calib.arrays(limit=4))
    ref, kept, crushed = (_run(p, images) for p in (float_tflite, auto.path, plain.path))
    scores = ref[:, 4:]
    assert np.abs(kept[:, 4:] - scores).max() < 0.1 * (scores.max() - scores.min()) + 0.02
    assert np.abs(kept[:, :4] - ref[:, :4]).mean() < 1.0  # boxes within a pixel on average
    assert len(np.unique(crushed[:, 4:])) <= 3  # one int8 step of the shared scale is ~1 px: scores collapse
    assert np.corrcoef(kept[:, 4:].ravel(), scores.ravel())[0, 1] > 0.9


def test_a_node_inside_the_backbone_stays_float_with_its_pad(source: Path, float_tflite: Path,
                                                            calib: CalibrationSet, work: Path) -> None:
    first_conv = next(n.name for n in onnx.load(str(source)).graph.node if n.op_type == "Conv")
    result = quantize(_request(source, float_tflite, work / "conv.tflite", calib, exclude=(first_conv,)))
    assert sorted(op.name for op in tflite_ops.float_ops(result.path)) == ["CONV_2D", "PAD"]
    assert set(result.extra["excluded_in_float_model"].values()) == {first_conv}
    assert result.float_ops == ()


def test_int8_io_gives_int8_tensors(source: Path, float_tflite: Path, calib: CalibrationSet, work: Path) -> None:
    full = quantize(_request(source, float_tflite, work / "io.tflite", calib, int8_io=True, exclude=()))
    tail = quantize(_request(source, float_tflite, work / "io_tail.tflite", calib, int8_io=True))
    dtypes = {}
    for name, result in (("full", full), ("tail", tail)):
        interp = tflite_ops.interpreter(result.path)
        dtypes[name] = (interp.get_input_details()[0]["dtype"], interp.get_output_details()[0]["dtype"])
    assert dtypes == {"full": (np.int8, np.int8), "tail": (np.int8, np.float32)}
    assert any("stay float32" in note for note in tail.notes) and not full.notes
    out = _run(full.path, list(calib.arrays(limit=1)))
    assert out.dtype == np.float32 and out.shape[1] == 4 + 4  # the runtime dequantizes


def test_cache_hit_skips_calibration_and_gives_the_same_model(source: Path, float_tflite: Path,
                                                              calib: CalibrationSet, work: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    cache = CalibrationCache(work / "cache")
    first = quantize(_request(source, float_tflite, work / "c1.tflite", calib, cache=cache))
    import ai_edge_quantizer.calibrator as aeq_calibrator

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("calibration ran on a cache hit")

    monkeypatch.setattr(aeq_calibrator.Calibrator, "calibrate", refuse)
    second = quantize(_request(source, float_tflite, work / "c2.tflite", calib, cache=cache))
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert first.path.read_bytes() == second.path.read_bytes()
    with pytest.raises(AssertionError, match="cache hit"):  # another setting is another key: calibrates
        quantize(_request(source, float_tflite, work / "c3.tflite", calib, cache=cache, int8_io=True))


@pytest.mark.parametrize("method", [Method.MINMAX, Method.PERCENTILE, Method.ENTROPY, Method.DISTRIBUTION])
def test_methods_the_quantizer_lacks_are_refused(method: Method, source: Path, float_tflite: Path,
                                                 calib: CalibrationSet, work: Path) -> None:
    with pytest.raises(CalibrationError, match="moving_average only"):
        quantize(_request(source, float_tflite, work / "m.tflite", calib, method=method))
    assert not (work / "m.tflite").exists()


def test_unknown_exclusions_are_refused(source: Path, float_tflite: Path, calib: CalibrationSet,
                                        work: Path) -> None:
    with pytest.raises(CalibrationError, match="matches an op"):
        quantize(_request(source, float_tflite, work / "x.tflite", calib, exclude=("no_such_node",)))


def test_normalize_boxes_divides_the_box_rows_and_says_so(source: Path) -> None:
    import onnxruntime as ort

    model, sites = normalize_boxes(onnx.load(str(source)))
    assert sites == 1
    x = np.random.default_rng(0).random((1, 3, SIZE, SIZE), dtype=np.float32)
    before = ort.InferenceSession(str(source)).run(None, {"images": x})[0]
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"images": x})[0]
    np.testing.assert_allclose(after[:, :4] * SIZE, before[:, :4], rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(after[:, 4:], before[:, 4:])
    meta = json.loads({p.key: p.value for p in model.metadata_props}[EDGEBENCH_KEY])
    assert meta["extra"]["boxes"] == NORMALIZED and meta["extra"]["box_scale_hw"] == [SIZE, SIZE]
    assert normalize_boxes(model)[1] == 0  # never twice


def test_normalised_boxes_decode_and_check_parity_as_pixels(source: Path, work: Path) -> None:
    """Detector and the parity check multiply the boxes back (edge_sdk.decode.pixel_boxes): the normalised
    model finds what the original finds, and passes fp32 parity against it."""
    from converters.parity import check_parity
    from edge_sdk import Detector

    model, _ = normalize_boxes(onnx.load(str(source)))
    onnx.save(model, str(work / "normalized.onnx"))
    frame = (np.random.default_rng(1).random((240, 320, 3)) * 255).astype(np.uint8)
    with Detector(source, conf=0.01) as a, Detector(work / "normalized.onnx", conf=0.01) as b:
        da, db = a(frame), b(frame)
    np.testing.assert_allclose(db.xyxy, da.xyxy, atol=1e-2)
    np.testing.assert_array_equal(db.class_ids, da.class_ids)
    assert check_parity(source, work / "normalized.onnx", backend="onnxruntime").passed
