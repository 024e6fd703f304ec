"""QAT Q/DQ ONNX -> full-integer TFLite (converters.qat_tflite): the Q/DQ pairs are stripped with their
parameters kept, the .tflite has no float op and int8 I/O, and its tensors carry the Q/DQ model's scales and
weight integers — not what a calibration would pick (the test model's learned ranges are deliberately wider
than the observed ones, and its weight scales leave the int8 range unfilled)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

pytest.importorskip("ai_edge_quantizer")
pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from calibration import tflite_ops  # noqa: E402
from calibration.dataset import CalibrationSet, build_calibration_set  # noqa: E402
from converters.qat_tflite import Learned, QatTfliteResult, qat_to_tflite, strip_qdq  # noqa: E402
from converters.qat_tflite_ties import covering  # noqa: E402
from runtimes.errors import ConversionError  # noqa: E402
from runtimes.tflite_quant import dequantize, quantize  # noqa: E402

SIZE = 128
#: learned ranges are this much wider than the observed min/max (a calibration would not choose them)
WIDEN = 1.37
#: weight scales put the largest |w| of a channel at this integer (a min/max quantizer would use 127)
WEIGHT_TOP = 100


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("qat_tflite")


@pytest.fixture(scope="module")
def calib(work: Path) -> CalibrationSet:
    rng = np.random.default_rng(5)
    folder = work / "calib"
    folder.mkdir()
    for i in range(6):
        img = cv2.GaussianBlur((rng.random((96, 128, 3)) * 255).astype(np.uint8), (0, 0), 1.5 + i % 3)
        cv2.imwrite(str(folder / f"{i}.png"), img)
    return build_calibration_set(folder, SIZE, limit=6)


def _silu_outputs(model: onnx.ModelProto) -> list[str]:
    """SiLU outputs (Mul of x and Sigmoid(x)) read by convolutions only: their learned scales can all stay."""
    readers: dict[str, list[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.op_type)
    ops = {o: n.op_type for n in model.graph.node for o in n.output}
    return [n.output[0] for n in model.graph.node if n.op_type == "Mul" and "Sigmoid" in {ops.get(i) for i in n.input}
            and set(readers.get(n.output[0], [])) == {"Conv"}]


def _ranges(model: onnx.ModelProto, names: list[str], calib: CalibrationSet) -> dict[str, tuple[float, float]]:
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names if n != "images")
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = [o.name for o in sess.get_outputs()]
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    for x in calib.arrays():
        values = dict(zip(outs, sess.run(None, {"images": x}), strict=True)) | {"images": x}
        for n in names:
            lo[n], hi[n] = min(lo.get(n, 0.0), float(values[n].min())), max(hi.get(n, 0.0), float(values[n].max()))
    return {n: (lo[n], hi[n]) for n in names}


def _add_pair(graph: onnx.GraphProto, name: str, lo: float, hi: float) -> tuple[float, int]:
    """QuantizeLinear -> DequantizeLinear (uint8) after `name`, its readers rewired; returns (scale, zero point)."""
    scale = np.float32((hi - lo) * WIDEN / 255)
    zero = int(np.clip(round(-lo * WIDEN / float(scale)), 0, 255))
    graph.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), f"{name}.s"),
                              numpy_helper.from_array(np.array(zero, np.uint8), f"{name}.z")])
    for node in graph.node:
        node.input[:] = [f"{name}.dq" if i == name else i for i in node.input]
    graph.node.extend([helper.make_node("QuantizeLinear", [name, f"{name}.s", f"{name}.z"], [f"{name}.q"]),
                       helper.make_node("DequantizeLinear", [f"{name}.q", f"{name}.s", f"{name}.z"], [f"{name}.dq"])])
    return float(scale), zero


def _int8_weight(graph: onnx.GraphProto, conv: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray]:
    """The conv's float weights -> int8 (per output channel, max |q| = WEIGHT_TOP) -> DequantizeLinear(axis 0)."""
    inits = {t.name: t for t in graph.initializer}
    w = numpy_helper.to_array(inits[conv.input[1]])
    scale = (np.abs(w).reshape(w.shape[0], -1).max(1) / WEIGHT_TOP).astype(np.float32)
    q = np.clip(np.round(w / scale.reshape(-1, 1, 1, 1)), -127, 127).astype(np.int8)
    base = conv.input[1]
    graph.initializer.extend([numpy_helper.from_array(q, f"{base}.q8"), numpy_helper.from_array(scale, f"{base}.ws"),
                              numpy_helper.from_array(np.zeros(scale.size, np.int8), f"{base}.wz")])
    graph.node.append(helper.make_node("DequantizeLinear", [f"{base}.q8", f"{base}.ws", f"{base}.wz"],
                                       [f"{base}.dqw"], axis=0))
    conv.input[1] = f"{base}.dqw"
    return q, scale


@pytest.fixture(scope="module")
def qdq(small_model: Path, calib: CalibrationSet, work: Path) -> tuple[Path, dict[str, tuple[float, int]], int]:
    """small_model as a QAT export would write it: Q/DQ on the input and the SiLU outputs, int8 conv weights."""
    model = onnx.load(str(small_model))
    names = ["images", *_silu_outputs(model)]
    learned = {n: _add_pair(model.graph, n, *r) for n, r in _ranges(model, names, calib).items()}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    for conv in convs:
        _int8_weight(model.graph, conv)
    model = _sorted(model)
    path = work / "qdq.onnx"
    onnx.save(model, str(path))
    return path, learned, len(convs)


def _sorted(model: onnx.ModelProto) -> onnx.ModelProto:
    """Nodes in topological order (the pairs were appended at the end)."""
    known = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
    pending, ordered = list(model.graph.node), []
    while pending:
        ready = [n for n in pending if all(i in known or not i for i in n.input)]
        ordered += ready
        known.update(o for n in ready for o in n.output)
        pending = [n for n in pending if n not in ready]
    del model.graph.node[:]
    model.graph.node.extend(ordered)
    return model


@pytest.fixture(scope="module")
def converted(qdq: tuple[Path, dict[str, tuple[float, int]], int], calib: CalibrationSet,
              work: Path) -> QatTfliteResult:
    return qat_to_tflite(qdq[0], work / "qat.tflite", calib, calib_images=4, threads=1)


def test_strip_keeps_each_pair_and_the_weight_grid(qdq: tuple[Path, dict[str, tuple[float, int]], int]) -> None:
    path, learned, convs = qdq
    stripped = strip_qdq(onnx.load(str(path)))
    ops = {n.op_type for n in stripped.model.graph.node}
    assert not ops & {"QuantizeLinear", "DequantizeLinear"}
    assert stripped.activations == {n: Learned(s, z - 128) for n, (s, z) in learned.items()}
    assert len(stripped.weights) == convs and not stripped.conflicts
    inits = {t.name: numpy_helper.to_array(t) for t in stripped.model.graph.initializer}
    for name, (q, scale) in stripped.weights.items():
        assert np.array_equal(inits[name], q.astype(np.float32) * scale.reshape(-1, 1, 1, 1))
        assert np.abs(q).max() == WEIGHT_TOP


def test_learned_range_gives_back_the_scale_and_zero_point() -> None:
    """Our min/max are what ai-edge-quantizer's asymmetric int8 rule turns back into the learned pair."""
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithms.uniform_quantize.uniform_quantize_tensor import tensor_zp_scale_from_min_max

    for scale, zero in [(0.0037134757731109858, -128), (0.19317722, -74), (1e-3, 127), (0.0696161389, -124)]:
        qsv = Learned(float(np.float32(scale)), zero).qsv()
        zp, got = tensor_zp_scale_from_min_max(qsv["min"], qsv["max"], 8, False, qtyping.QuantGranularity.TENSORWISE)
        assert np.float32(got) == np.float32(scale) and int(zp) == zero


def test_a_concat_takes_the_learned_range_covering_its_inputs() -> None:
    """TFLite gives a concat and its inputs one scale: the widest input's learned one when it covers the others."""
    wide, narrow = Learned(0.155, -128), Learned(0.091, -128)
    assert covering([wide, narrow]) == wide == covering([wide])
    both = covering([Learned(0.1, -128), Learned(0.1, 127)])  # [0, 25.5] and [-25.5, 0]
    assert both.scale == pytest.approx(51.0 / 255) and both.zero_point == 0


def test_full_integer_with_int8_io(converted: QatTfliteResult) -> None:
    assert converted.float_ops == ()
    assert tflite_ops.float_ops(converted.path) == []
    interp = tflite_ops.interpreter(converted.path)
    for detail in interp.get_input_details() + interp.get_output_details():
        assert np.dtype(detail["dtype"]) == np.int8
    assert converted.notes == ()
    assert converted.parity is not None and converted.parity["precision_used"] == "int8"
    assert converted.parity["box_cosine"] > 0.95


def test_tensors_carry_the_learned_scales(converted: QatTfliteResult,
                                          qdq: tuple[Path, dict[str, tuple[float, int]], int]) -> None:
    """Read back from the .tflite itself: every learned activation's tensor has its scale (rel 1e-6) and
    zero point, every conv its learned weight scales and integers."""
    _, learned, convs = qdq
    assert set(converted.kept) == set(learned) and not converted.changed and not converted.unmatched
    interp = tflite_ops.interpreter(converted.path)
    details = {str(t["name"]): t for t in interp.get_tensor_details()}
    for onnx_name, tensor in converted.kept.items():
        scale, zero = learned[onnx_name]
        params = details[tensor]["quantization_parameters"]
        assert params["scales"][0] == pytest.approx(scale, rel=1e-6) and params["zero_points"][0] == zero - 128
    assert converted.weights == converted.weights_kept == convs
    weights = [int(op["inputs"][1]) for op in interp._get_ops_details() if op["op_name"] == "CONV_2D"]
    assert len(weights) == convs
    for index in weights:  # a min/max quantizer would put each channel's largest |w| at 127
        q = interp.get_tensor(index)
        assert np.abs(q.reshape(q.shape[0], -1)).max(1).tolist() == [WEIGHT_TOP] * q.shape[0]


def test_calibrated_tensors_and_images_are_listed(converted: QatTfliteResult, calib: CalibrationSet) -> None:
    assert converted.calib_images == tuple(str(p) for p in calib.files[:4])
    assert converted.calibrated and not set(converted.calibrated) & set(converted.kept.values())
    side = json.loads(converted.path.with_name(converted.path.name + ".json").read_text())
    assert side["precision"] == "int8" and side["int8"]["int8_io"] is True
    assert side["int8"]["calibration"]["files"] == [p.name for p in calib.files[:4]]
    assert json.loads(side["edgebench"])["extra"]["boxes"] == "normalized"


def test_outputs_follow_the_qdq_model(converted: QatTfliteResult, qdq: tuple[Path, dict[str, tuple[float, int]], int],
                                      calib: CalibrationSet) -> None:
    """On an image, the int8 model's boxes (back in pixels) and scores track the Q/DQ model's on ONNX Runtime."""
    import onnxruntime as ort

    x = next(calib.arrays(limit=1))
    ref = ort.InferenceSession(str(qdq[0]), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0][0]
    interp = tflite_ops.interpreter(converted.path)
    i, o = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.set_tensor(i["index"], quantize(x.transpose(0, 2, 3, 1), i))
    interp.invoke()
    got = dequantize(interp.get_tensor(o["index"]), o)[0]
    got[:4] *= SIZE
    assert np.corrcoef(got[:4].ravel(), ref[:4].ravel())[0, 1] > 0.99
    assert np.corrcoef(got[4:].ravel(), ref[4:].ravel())[0, 1] > 0.9


def test_a_model_without_qdq_is_refused(small_model: Path, calib: CalibrationSet, work: Path) -> None:
    with pytest.raises(ConversionError, match="not a Q/DQ model"):
        qat_to_tflite(small_model, work / "plain.tflite", calib)


def test_per_axis_activations_are_refused() -> None:
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2, 4, 4])
    inits = [numpy_helper.from_array(np.array([0.1, 0.2], np.float32), "s"),
             numpy_helper.from_array(np.zeros(2, np.uint8), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1)]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits))
    with pytest.raises(ConversionError, match="per-axis"):
        strip_qdq(model)
