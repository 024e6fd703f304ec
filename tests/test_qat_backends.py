"""A QAT Q/DQ ONNX (the trainer.qat_export layout) on the other int8 backends, its learned scales kept:
ncnn (calibration.ncnn_qat: the scales written into ncnn's table, the learned integer weights in the .bin,
Winograd switched off on those layers), OpenVINO (the Q/DQ ONNX converted as it is into FakeQuantize IR) and
TensorRT (an explicit-quantization model its builder takes without calibration, on the stand-in of
test_tensorrt). Each backend's artifact is checked for parity against the Q/DQ ONNX on ONNX Runtime.

The Q/DQ fixture is built here with numpy (no torch, no NNCF): every Conv outside the automatic exclusions
gets int8 per-output-channel weights -> DequantizeLinear(axis 0) and a Q/DQ pair on its input (uint8 with
zero point 0 on the image, as NNCF does for a non-negative tensor; int8 symmetric, or uint8 asymmetric,
elsewhere), with scales that are deliberately not the ones a calibration would pick."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from calibration.exclusions import resolve_exclusion
from calibration.ncnn_param import TAG_INT8, Layer, bin_layout, read_param
from calibration.onnx_prep import float32_onnx
from calibration.request import QuantizeResult
from converters.parity import centred_cosine, check_parity, parity_inputs
from runtimes import RuntimeOptions, load
from runtimes.precision import Precision

#: a trained model: an untrained one is so ill-conditioned that rounding ties alone fail any parity check
BUNDLED = Path(__file__).resolve().parents[1] / "edge_sdk" / "assets" / "default_model.onnx"
IMGSZ = 320
#: learned scales differ from a calibration's: each activation range is stretched by this (weights by its root)
STRETCH = 1.37


def _conv_input_ranges(model: onnx.ModelProto, tensors: list[str]) -> dict[str, tuple[float, float]]:
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    probe.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in tensors
                              if t not in have and t != "images")
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    lo = {t: 0.0 for t in tensors}
    hi = {t: 1.0 for t in tensors}
    for x in parity_inputs((IMGSZ, IMGSZ), 2, seed=3):
        for name, value in zip(names, sess.run(names, {"images": x}), strict=True):
            if name in lo:
                lo[name], hi[name] = min(lo[name], float(value.min())), max(hi[name], float(value.max()))
    return {t: (lo[t] * STRETCH, hi[t] * STRETCH) for t in tensors}


def _pair(tensor: str, lo: float, hi: float, mode: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """A Q/DQ pair on `tensor`: 'unsigned' (uint8, zero point 0), 'symmetric' (int8, 0) or 'asymmetric' (uint8)."""
    if mode == "unsigned":
        scale, zero = hi / 255.0, np.uint8(0)
    elif mode == "symmetric":
        scale, zero = max(abs(lo), abs(hi)) / 127.0, np.int8(0)
    else:
        scale = (hi - lo) / 255.0
        zero = np.uint8(np.clip(round(-lo / scale), 0, 255))
    base = f"{tensor}.qdq"
    inits = [numpy_helper.from_array(np.array(scale, np.float32), f"{base}.scale"),
             numpy_helper.from_array(np.array(zero), f"{base}.zero")]
    args = [f"{base}.scale", f"{base}.zero"]
    nodes = [helper.make_node("QuantizeLinear", [tensor, *args], [f"{base}.q"], name=f"{base}/Q"),
             helper.make_node("DequantizeLinear", [f"{base}.q", *args], [f"{base}.dq"], name=f"{base}/DQ")]
    return nodes, inits


def _int8_weights(conv: onnx.NodeProto, w: np.ndarray) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    scale = (np.abs(w).reshape(w.shape[0], -1).max(axis=1) * np.sqrt(STRETCH) / 127.0).astype(np.float32)
    ints = np.clip(np.round(w / scale.reshape(-1, 1, 1, 1)), -127, 127).astype(np.int8)
    base = f"{conv.name}.w"
    inits = [numpy_helper.from_array(ints, f"{base}_int8"), numpy_helper.from_array(scale, f"{base}_scale"),
             numpy_helper.from_array(np.zeros(scale.size, np.int8), f"{base}_zero")]
    dq = helper.make_node("DequantizeLinear", [f"{base}_int8", f"{base}_scale", f"{base}_zero"], [f"{base}_dq"],
                          name=f"{base}/DQ", axis=0)
    return dq, inits


def _quant_points(model: onnx.ModelProto, convs: list[onnx.NodeProto]) -> list[list[tuple[onnx.NodeProto, int]]]:
    """Where NNCF puts each quantized conv's input quantizer: before a Split (on its input), before a Concat (on
    every input, one shared scale), else on the conv's own input; groups of (consumer, input index)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    groups, seen = [], set()
    for conv in convs:
        prod = producer.get(conv.input[0])
        if prod is not None and prod.op_type == "Split":
            group = [(prod, 0)]
        elif prod is not None and prod.op_type == "Concat":
            group = [(prod, i) for i in range(len(prod.input))]
        else:
            group = [(conv, 0)]
        key = tuple((n.name, i) for n, i in group)
        if key not in seen:
            seen.add(key)
            groups.append(group)
    return groups


def make_qat_onnx(source: Path, out: Path, activations: str) -> Path:
    """The float ONNX `source` as a QAT-style Q/DQ ONNX (see the module docstring)."""
    model = onnx.load(str(source))
    skip = set(resolve_exclusion("auto", model).all_nodes)
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.name not in skip]
    groups = _quant_points(model, convs)
    ranges = _conv_input_ranges(model, sorted({n.input[i] for g in groups for n, i in g}))
    pairs: dict[str, tuple[list[onnx.NodeProto], list[onnx.TensorProto]]] = {}
    for group in groups:
        tensors = [n.input[i] for n, i in group]
        lo, hi = min(ranges[t][0] for t in tensors), max(ranges[t][1] for t in tensors)
        for t in tensors:
            pairs.setdefault(t, _pair(t, lo, hi, "unsigned" if t == "images" else activations))
        for n, i in group:
            n.input[i] = f"{n.input[i]}.qdq.dq"
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes, inits = list(pairs.get("images", ([], []))[0]), list(pairs.get("images", ([], []))[1])
    quantized = {c.name for c in convs}
    for node in model.graph.node:
        if node.name in quantized:
            dq, consts = _int8_weights(node, weights[node.input[1]])
            nodes.append(dq)
            inits += consts
            node.input[1] = dq.output[0]
        nodes.append(node)
        for o in node.output:
            nodes += pairs.get(o, ([], []))[0]
            inits += pairs.get(o, ([], []))[1]
    used = {i for n in nodes for i in n.input}
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.node[:], model.graph.initializer[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(kept + inits)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


@pytest.fixture(scope="module")
def qat(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qat-backends")
    src = float32_onnx(BUNDLED, root / "float.onnx")
    return {"root": root, "float": src, "symmetric": make_qat_onnx(src, root / "sym.onnx", "symmetric"),
            "asymmetric": make_qat_onnx(src, root / "asym.onnx", "asymmetric")}


def _quantizers(model: onnx.ModelProto) -> dict[str, tuple[float, int, bool]]:
    """Activation QuantizeLinear name -> (scale, zero point, signed)."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {n.name: (float(inits[n.input[1]]), int(inits[n.input[2]]), inits[n.input[2]].dtype == np.int8)
            for n in model.graph.node if n.op_type == "QuantizeLinear"}


def _weight_ints(model: onnx.ModelProto) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Conv name -> (int8 weights, per-channel scales) of the Q/DQ ONNX."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    dqs = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    return {c.name: (inits[dqs[c.input[1]].input[0]], inits[dqs[c.input[1]].input[1]])
            for c in model.graph.node if c.op_type == "Conv" and c.input[1] in dqs}


# --- reading the learned scales and stripping the pairs (no engine needed) ----------------------------------------

def test_learned_scales_are_read_per_conv(qat: dict[str, Path]) -> None:
    from calibration.ncnn_qat import learned_scales

    model = onnx.load(str(qat["symmetric"]))
    learned = learned_scales(model)
    ints = _weight_ints(model)
    assert set(learned.weights) == set(ints) and len(ints) > 10
    for name, (_, scale) in ints.items():
        np.testing.assert_array_equal(learned.weights[name], scale)
    first = next(n for n in model.graph.node if n.op_type == "Conv")
    assert not learned.inputs[first.name].signed  # the image: uint8, zero point 0
    scales = {s for s, _, _ in _quantizers(model).values()}
    assert {a.scale for a in learned.inputs.values()} <= scales
    assert set(learned.quantized()) == set(ints)  # every int8 conv reads a quantized tensor (through Split/Concat)


def test_strip_keeps_the_learned_grid_and_removes_every_pair(qat: dict[str, Path]) -> None:
    from calibration.ncnn_qat import strip_qdq

    model = onnx.load(str(qat["symmetric"]))
    stripped = strip_qdq(model)
    onnx.checker.check_model(stripped)
    assert not [n for n in stripped.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    inits = {t.name: numpy_helper.to_array(t) for t in stripped.graph.initializer}
    convs = {n.name: n for n in stripped.graph.node if n.op_type == "Conv"}
    for name, (ints, scale) in _weight_ints(model).items():
        w = inits[convs[name].input[1]]
        assert w.dtype == np.float32
        np.testing.assert_array_equal(w, ints.astype(np.float32) * scale.reshape(-1, 1, 1, 1))
    x = parity_inputs((IMGSZ, IMGSZ), 1)[0]
    float_out = ort.InferenceSession(stripped.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"images": x})[0]
    qdq_out = ort.InferenceSession(str(qat["symmetric"]), providers=["CPUExecutionProvider"]).run(
        None, {"images": x})[0]
    assert not np.array_equal(float_out, qdq_out)  # the pairs rounded; they are gone, the rest is the same model
    assert centred_cosine(float_out[:, 4:], qdq_out[:, 4:]) > 0.9


# --- ncnn -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NcnnBuild:
    """The int8 ncnn models written from the symmetric Q/DQ ONNX: Winograd off (default) and six-bit."""

    off: Path
    result: QuantizeResult
    six: Path
    six_result: QuantizeResult


@pytest.fixture(scope="module")
def ncnn_int8(qat: dict[str, Path]) -> NcnnBuild:
    pytest.importorskip("ncnn", reason="ncnn int8 needs ncnn (pip install 'edgebench[ncnn]')")
    from calibration.ncnn_qat import qat_to_ncnn
    from converters.ncnn import pnnx_binary
    from runtimes.errors import BackendUnavailableError

    try:
        pnnx_binary()
    except BackendUnavailableError:
        pytest.skip("the float ncnn model needs pnnx (pip install 'edgebench[ncnn-export]')")
    out = qat["root"] / "ncnn" / "int8.param"
    six = qat["root"] / "ncnn" / "six.param"
    six_result = qat_to_ncnn(qat["symmetric"], six, winograd="six-bit")
    return NcnnBuild(out, qat_to_ncnn(qat["symmetric"], out), six, six_result)


def _ncnn_int8_layers(param: Path) -> dict[str, tuple[Layer, np.ndarray]]:
    """ncnn layer name -> (layer, int8 weight codes) of the int8 layers of a written model."""
    model = read_param(param)
    data = param.with_suffix(".bin").read_bytes()
    layout = bin_layout(model, data)
    out: dict[str, tuple[Layer, np.ndarray]] = {}
    for ly in model.layers:
        chunk = layout.chunks.get(ly.name, [None])[0]
        if chunk is not None and chunk.tag == TAG_INT8:
            out[ly.name] = (ly, np.frombuffer(data, np.int8, chunk.count, chunk.offset + 4))
    return out


def test_ncnn_table_holds_the_learned_scales_and_the_bin_the_learned_integers(qat: dict[str, Path],
                                                                               ncnn_int8: NcnnBuild) -> None:
    from calibration.ncnn_table import read_table

    model = onnx.load(str(qat["symmetric"]))
    table = read_table(ncnn_int8.off.with_suffix(".table"))
    layers = _ncnn_int8_layers(ncnn_int8.off)
    ints = _weight_ints(model)
    assert len(layers) == len(ints) == len(table.layers())
    # every ONNX int8 weight tensor is exactly the codes of one ncnn int8 layer, with scale 1 / the learned scale
    codes = {name: c for name, (_, c) in layers.items()}
    for name, (q, scale) in ints.items():
        hits = [ly for ly, c in codes.items() if c.size == q.size and np.array_equal(c, q.reshape(-1))]
        assert len(hits) == 1, name
        np.testing.assert_allclose(table.weights[hits[0]], 1.0 / scale, rtol=1e-6)
    learned = {round(1.0 / s, 2) for s, _, _ in _quantizers(model).values()}
    image = next(s for n, (s, _, _) in _quantizers(model).items() if n.startswith("images."))
    got = {round(v, 2) for v in table.inputs.values()}
    assert got - learned == {round(127.0 / (255.0 * image), 2)}  # the unsigned image: same range, 127 levels
    assert any("unsigned" in n for n in ncnn_int8.result.notes)


def test_ncnn_winograd_layers_keep_learned_weights_or_take_six_bits(ncnn_int8: NcnnBuild) -> None:
    from calibration.ncnn_int8 import winograd_conv

    off = _ncnn_int8_layers(ncnn_int8.off)
    six = _ncnn_int8_layers(ncnn_int8.six)
    wino = [name for name, (ly, _) in off.items() if winograd_conv(ly)]
    assert wino and set(off) == set(six)
    for name, (ly, codes) in off.items():
        assert (ly.geti(31) == 64) == (name in wino)
        assert six[name][0].geti(31) == 0
        assert np.abs(six[name][1]).max() == (31 if name in wino else np.abs(codes).max())
    assert np.abs(np.concatenate([off[n][1] for n in wino])).max() > 31  # learned 8-bit codes kept
    assert any("NOT the learned" in n for n in ncnn_int8.six_result.notes)


def test_ncnn_int8_runs_mixed_and_matches_the_qdq_onnx(qat: dict[str, Path], ncnn_int8: NcnnBuild) -> None:
    param = ncnn_int8.off
    with load(param, "ncnn") as rt:
        assert rt.precision_used in (Precision.INT8, Precision.MIXED)
    side = json.loads(param.with_name(param.name + ".json").read_text())
    assert side["precision"] == "int8" and side["int8"]["method"] == "qat"
    assert side["input_shape"] == [1, 3, IMGSZ, IMGSZ]
    result = check_parity(qat["symmetric"], param, backend="ncnn", images=4, options=RuntimeOptions(threads=1))
    assert result.passed, result.summary()
    assert result.score_cosine > 0.99 and result.box_cosine > 0.99


def test_ncnn_refuses_asymmetric_activations(qat: dict[str, Path], tmp_path: Path) -> None:
    from calibration.ncnn_qat import qat_to_ncnn
    from runtimes.errors import CalibrationError

    with pytest.raises(CalibrationError, match="asymmetric.*ncnn scheme"):
        qat_to_ncnn(qat["asymmetric"], tmp_path / "a.param")
    with pytest.raises(CalibrationError, match="not a QAT Q/DQ ONNX"):
        qat_to_ncnn(qat["float"], tmp_path / "f.param")
    assert not list(tmp_path.glob("*.param"))


# --- OpenVINO ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["symmetric", "asymmetric"])
def test_openvino_converts_the_qdq_onnx_into_fakequantize_with_the_learned_scales(qat: dict[str, Path],
                                                                                 tmp_path: Path, scheme: str) -> None:
    ov = pytest.importorskip("openvino", reason="the IR needs openvino (pip install 'edgebench[openvino]')")
    from converters.openvino import to_openvino

    xml = to_openvino(qat[scheme], tmp_path / "m.xml")
    ir = ov.Core().read_model(str(xml))
    fqs = [op for op in ir.get_ops() if op.get_type_name() == "FakeQuantize"]
    quantizers = _quantizers(onnx.load(str(qat[scheme])))
    assert len(fqs) == len(quantizers) and {op.get_levels() for op in fqs} == {256}
    kept = []
    for op in fqs:
        lo, hi = (np.ravel(op.input_value(i).get_node().get_data())[0] for i in (3, 4))
        kept.append((float(hi - lo) / 255.0, float(lo)))
    for scale, zero, signed in quantizers.values():  # the learned grid: its step and its low end
        low = -128 * scale if signed else -zero * scale
        assert any(abs(s - scale) <= 1e-6 * scale and abs(lo - low) <= 1e-5 for s, lo in kept), (scale, zero)
    weights = [op for op in ir.get_ops() if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8]
    assert len(weights) == len(_weight_ints(onnx.load(str(qat[scheme]))))
    with load(xml, "openvino") as rt:
        assert rt.precision_used in (Precision.INT8, Precision.MIXED)
    result = check_parity(qat[scheme], xml, backend="openvino", images=4, options=RuntimeOptions(threads=1))
    assert result.passed and result.score_cosine > 0.99, result.summary()


# --- TensorRT (stand-in builder) --------------------------------------------------------------------------------

def test_tensorrt_builds_int8_from_the_qat_onnx_without_calibration(qat: dict[str, Path], tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from test_tensorrt import FAKE, FakeTrt

    from converters.export import export
    from converters.tensorrt import to_tensorrt
    from runtimes import cuda_buffers
    from runtimes.onnx_precision import onnx_precision

    trt = FakeTrt()
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", trt)
    monkeypatch.setitem(cuda_buffers.APIS, "fake", lambda: trt.cuda)
    assert onnx_precision(qat["symmetric"]) in (Precision.INT8, Precision.MIXED)
    out = to_tensorrt(qat["symmetric"], tmp_path / "q.engine", "int8", FAKE)
    assert [c[1] for c in trt.config_log() if c[0] == "flag"] == ["INT8"]
    assert not [c for c in trt.config_log() if "calibrator" in str(c)]
    assert json.loads(out.with_name(out.name + ".json").read_text())["precision"] in ("int8", "mixed")
    trt.log.clear()
    result = export(qat["symmetric"], "tensorrt", tmp_path / "e.engine", "int8", parity=False,
                    converter_options={"options": FAKE})
    assert result.quantization is None  # nothing re-calibrated: the learned Q/DQ is the int8 model
    assert [c[1] for c in trt.config_log() if c[0] == "flag"] == ["INT8"]
