"""ncnn int8 from a QAT Q/DQ ONNX: the learned scales are written into ncnn's table, nothing is re-calibrated.

The Q/DQ ONNX (trainer.qat_export) holds each quantized convolution as int8 weights -> DequantizeLinear
(axis 0) -> Conv, and each quantized activation as a QuantizeLinear -> DequantizeLinear pair. The float ncnn
model is converted (pnnx, through the capability table's converter) from the same graph with the pairs
removed and the weights dequantized, so its weights lie exactly on the learned grid. Then, per ncnn
convolution (matched to its ONNX Conv by weights, calibration.ncnn_names):

- weight scales = 1 / the learned per-output-channel scale, so ncnn's int8 codes are the learned integers;
- input scale = 1 / the learned scale of the activation the Conv reads (found through layout ops that keep
  a grid: Split, Concat, MaxPool, nearest Resize, ...); an unsigned 8-bit activation (0..255, e.g. the
  image) gets the scale covering the same range with ncnn's 127 levels (noted).

A Conv without int8 weights or without a quantized input stays float. ncnn runs 3x3 stride-1 int8
convolutions with Winograd kernels that need 6-bit weights (docs/quantization.md, "ncnn"); by default those
layers keep the learned 8-bit weights and are told not to use Winograd (layer key 31, ncnn's per-layer
feature mask, bit 6); `winograd="six-bit"` instead re-scales their weights to 31 levels (not learned).
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from calibration.ncnn import FloatModel, read_float_model
from calibration.ncnn_int8 import WINOGRAD_MAX, weight_scales, winograd_conv, write_int8_model
from calibration.ncnn_names import map_to_ncnn
from calibration.ncnn_param import Layer, ParamFile
from calibration.ncnn_table import CalibrationTable, write_table
from calibration.qat_strip import strip_qdq as strip_activations_and_weights
from calibration.request import QuantizeResult
from edge_sdk.atomic import write_json_atomic
from edge_sdk.hashing import sha256_of
from runtimes.base import read_sidecar_json, sidecar_path
from runtimes.capabilities import get as capability
from runtimes.errors import CalibrationError
from runtimes.precision import Precision

VERSION = "1"
WINOGRAD_MODES = ("off", "six-bit")
FEATMASK_KEY, NO_WINOGRAD = 31, 1 << 6  # ncnn's per-layer feature mask; bit 6: no Winograd convolution
#: ops whose output values are (a subset of) their data input's values: a grid upstream is the grid here
_KEEPS_GRID = frozenset({"Split", "Concat", "MaxPool", "Slice", "Reshape", "Transpose", "Identity", "Flatten",
                         "Squeeze", "Unsqueeze", "Resize"})
#: (ONNX source, output .param) -> the .param written; default: the capability table's ncnn converter
FloatConverter = Callable[[Path, Path], Path]


@dataclass(frozen=True)
class ActScale:
    """A learned activation quantizer: ONNX scale and whether it is signed int8 (else uint8, zero point 0)."""

    scale: float
    signed: bool

    def ncnn_scale(self) -> float:
        """ncnn's input scale (value * scale = int8 code, clipped to +-127)."""
        return 1.0 / self.scale if self.signed else 127.0 / (255.0 * self.scale)


@dataclass
class LearnedScales:
    """Per ONNX Conv name: its learned weight scales (ONNX, per output channel) and input quantizer."""

    weights: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: dict[str, ActScale] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def quantized(self) -> list[str]:
        """Convs with both learned weights and a learned input (the ones ncnn runs in int8)."""
        return [name for name in self.weights if name in self.inputs]


class _Graph:
    """Producers and constant values of an ONNX graph (initializers, Constant nodes, Identity chains)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.nodes = list(model.graph.node)
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.inits = {t.name: t for t in model.graph.initializer}

    def const(self, name: str) -> np.ndarray | None:
        if name in self.inits:
            return np.asarray(numpy_helper.to_array(self.inits[name]))
        node = self.producer.get(name)
        if node is not None and node.op_type == "Identity":
            return self.const(node.input[0])
        if node is not None and node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            return np.asarray(numpy_helper.to_array(node.attribute[0].t))
        return None

    def qdq(self, node: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray]:
        """(scale, zero point) of a QuantizeLinear/DequantizeLinear; zero point uint8 0 when absent."""
        scale = self.const(node.input[1])
        zero = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros((), np.uint8)
        if scale is None or zero is None:
            raise CalibrationError(f"{node.op_type} '{node.name}' has a scale or zero point that is not a constant")
        return scale.astype(np.float32), zero


def _activation_pair(g: _Graph, dq: onnx.NodeProto) -> ActScale | None:
    """The learned quantizer of an activation DequantizeLinear fed by a QuantizeLinear, else None."""
    q = g.producer.get(dq.input[0])
    if q is None or q.op_type != "QuantizeLinear":
        return None
    scale, zero = g.qdq(dq)
    if scale.size != 1:
        raise CalibrationError(f"activation quantizer '{dq.name}' is per channel; ncnn has one scale per tensor")
    if np.any(zero != 0):
        raise CalibrationError(f"activation quantizer '{dq.name}' is asymmetric (zero point {int(zero.ravel()[0])}): "
                               "ncnn's int8 is symmetric; export the QAT model with the ncnn scheme")
    return ActScale(float(scale.ravel()[0]), zero.dtype == np.int8)


def _input_scales(g: _Graph, tensor: str) -> set[ActScale] | None:
    """The learned quantizers every value of `tensor` comes from (through grid-keeping ops); None when some
    path reaches a float tensor."""
    node = g.producer.get(tensor)
    if node is None:
        return None
    if node.op_type == "DequantizeLinear":
        act = _activation_pair(g, node)
        return {act} if act is not None else None
    if node.op_type not in _KEEPS_GRID or (node.op_type == "Resize" and not _nearest(node)):
        return None
    found: set[ActScale] = set()
    for name in node.input if node.op_type == "Concat" else node.input[:1]:
        part = _input_scales(g, name)
        if part is None:
            return None
        found |= part
    return found


def _nearest(node: onnx.NodeProto) -> bool:
    mode = next((a.s for a in node.attribute if a.name == "mode"), b"nearest")
    return mode == b"nearest"


def _weight_scale(g: _Graph, conv: onnx.NodeProto) -> np.ndarray | None:
    """A Conv's learned per-output-channel weight scales (int8 initializer -> DequantizeLinear), else None."""
    dq = g.producer.get(conv.input[1])
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in g.inits:
        return None
    ints = g.const(dq.input[0])
    scale, zero = g.qdq(dq)
    if ints is None or ints.dtype != np.int8 or np.any(zero != 0):
        raise CalibrationError(f"weights of Conv '{conv.name}' are not symmetric int8 (dtype "
                               f"{None if ints is None else ints.dtype}); ncnn's int8 weights are")
    if scale.size not in (1, ints.shape[0]):
        raise CalibrationError(f"weights of Conv '{conv.name}' have {scale.size} scales for {ints.shape[0]} output "
                               "channels; ncnn's are per output channel")
    return np.broadcast_to(scale.reshape(-1), (ints.shape[0],)).astype(np.float32)


def learned_scales(model: onnx.ModelProto) -> LearnedScales:
    """Each Conv's learned weight scales and input quantizer, read from a Q/DQ ONNX."""
    g, found = _Graph(model), LearnedScales()
    for conv in (n for n in g.nodes if n.op_type == "Conv"):
        w = _weight_scale(g, conv)
        if w is not None:
            found.weights[conv.name] = w
        acts = _input_scales(g, conv.input[0])
        if not acts:
            continue
        act = min(acts, key=ActScale.ncnn_scale)  # the coarsest grid covers every range
        if len(acts) > 1:
            found.notes.append(f"Conv '{conv.name}' reads {len(acts)} differently quantized tensors; ncnn takes "
                               "one input scale (the coarsest)")
        found.inputs[conv.name] = act
    return found


def strip_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """A float copy of `model`: activation Q/DQ pairs removed, int8 weights dequantized (the learned grid;
    calibration.qat_strip). ncnn's conversion needs float graph outputs."""
    stripped = strip_activations_and_weights(model)
    for output in model.graph.output:
        producer = next((n for n in model.graph.node if output.name in n.output), None)
        if producer is not None and producer.op_type == "DequantizeLinear":
            raise CalibrationError(f"graph output '{output.name}' is quantized; ncnn conversion needs float outputs")
    return stripped.model


def qat_to_ncnn(qdq_onnx: str | Path, out_param: str | Path, *, winograd: str = "off",
                convert: FloatConverter | None = None) -> QuantizeResult:
    """Write the int8 ncnn model (`out_param` + `.bin`, `.table` and sidecar beside it) of a QAT Q/DQ ONNX with
    its learned scales; `convert` makes the float .param from the stripped ONNX (default: pnnx, the ncnn
    converter of the capability table)."""
    src, out = Path(qdq_onnx), Path(out_param)
    if winograd not in WINOGRAD_MODES:
        raise CalibrationError(f"winograd must be one of {', '.join(WINOGRAD_MODES)}, not '{winograd}'")
    model = _load(src)
    learned = learned_scales(model)
    if not learned.quantized():
        raise CalibrationError(f"'{src.name}' has no Conv with int8 weights and a quantized input: not a QAT Q/DQ "
                               "ONNX (quantize a float model with `edgebench quantize --backend ncnn`)")
    stripped = strip_qdq(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".qat-ncnn.", dir=out.parent) as tmp:
        float_onnx = Path(tmp) / f"{src.stem}.float.onnx"
        onnx.save(stripped, str(float_onnx))
        fp32 = (convert or _pnnx)(float_onnx, Path(tmp) / "fp32.param")
        fmodel = read_float_model(fp32)
        layers = ncnn_layers(stripped, learned.quantized(), fmodel)
        table, param, notes = learned_table(fmodel, layers, learned, winograd)
        table_path = write_table(out.with_suffix(".table"), table)
        written = write_int8_model(param, fmodel.data, fmodel.layout, table, out, out.with_suffix(".bin"))
        result = _result(src, out, fmodel, written.quantized, [*learned.notes, *notes], winograd,
                         {"table": str(table_path), "quantized_layers": len(written.quantized)})
        _write_sidecar(fp32, src, out, result)
    return result


def _load(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        raise CalibrationError(f"Q/DQ ONNX not found: {path}")
    return onnx.load(str(path))


def _pnnx(source: Path, out: Path) -> Path:
    return capability("ncnn").load_converter()(source, out, Precision.FP32)


def ncnn_layers(stripped: onnx.ModelProto, convs: Iterable[str], model: FloatModel) -> dict[str, str]:
    """ONNX Conv name -> the ncnn layer holding its (dequantized) weights; CalibrationError when one is not found."""
    mapped = map_to_ncnn(stripped, convs, model.param, model.data, model.layout)
    missing = mapped.unmapped + mapped.float_anyway
    if missing:
        raise CalibrationError(f"cannot find the ncnn layer of quantized Conv(s) {', '.join(missing[:3])} "
                               "(matched by weights); they would lose their learned scales")
    return mapped.layers


def learned_table(model: FloatModel, layers: dict[str, str], learned: LearnedScales,
                  winograd: str) -> tuple[CalibrationTable, ParamFile, list[str]]:
    """The ncnn table of the learned scales, the .param (Winograd switched off where needed) and notes."""
    table, by_name, masked, six_bit, unsigned = CalibrationTable(), model.param.by_name(), set(), [], []
    for node in learned.quantized():
        layer, step = by_name[layers[node]], learned.weights[node]
        scales = np.divide(1.0, step, out=np.zeros_like(step), where=step > 0).astype(np.float32)
        if winograd_conv(layer) and winograd == "six-bit":
            scales = weight_scales(layer, model.layout.floats(model.data, layer.name, 0))
            six_bit.append(layer.name)
        elif winograd_conv(layer):
            masked.add(layer.name)
        table.weights[layer.name] = scales
        act = learned.inputs[node]
        table.inputs[layer.name] = float(np.float32(act.ncnn_scale()))
        if not act.signed:
            unsigned.append(node)
    param = ParamFile([_no_winograd(ly) if ly.name in masked else ly for ly in model.param.layers],
                      model.param.blob_count)
    return table, param, _table_notes(masked, six_bit, unsigned)


def _no_winograd(layer: Layer) -> Layer:
    return layer.with_key(FEATMASK_KEY, layer.geti(FEATMASK_KEY) | NO_WINOGRAD)


def _table_notes(masked: set[str], six_bit: list[str], unsigned: list[str]) -> list[str]:
    notes = []
    if masked:
        notes.append(f"{len(masked)} 3x3 stride-1 int8 convolution(s) keep the learned 8-bit weights and run without "
                     "Winograd (its int8 kernel needs 6-bit weights)")
    if six_bit:
        notes.append(f"{len(six_bit)} 3x3 stride-1 convolution(s) re-scaled to {WINOGRAD_MAX}-level (6-bit) weights "
                     "for ncnn's int8 Winograd: their weight scales are NOT the learned ones")
    if unsigned:
        notes.append(f"{len(unsigned)} input(s) learned as unsigned 8-bit ({', '.join(unsigned[:2])}): ncnn's int8 "
                     "is signed, so the same range gets 127 levels (half the learned resolution)")
    return notes


def _result(src: Path, out: Path, model: FloatModel, quantized: tuple[str, ...], notes: list[str], winograd: str,
            extra: dict[str, Any]) -> QuantizeResult:
    done = set(quantized)
    compute = model.quantizable()
    float_ops = tuple(dict.fromkeys(ly.type for ly in compute if ly.name not in done))
    weights = "learned int8 per output channel" + ("" if winograd == "off" else " (6-bit on 3x3 stride-1)")
    return QuantizeResult(
        path=out, quantizer=f"edgebench ncnn QAT table {VERSION} (ncnn {_version('ncnn')})",
        scheme=f"ncnn int8 from QAT: weights {weights}, activations int8 symmetric per tensor (learned scales), "
               "dequantized to float after each int8 layer",
        excluded=tuple(ly.name for ly in compute if ly.name not in done), float_ops=float_ops,
        notes=(*notes, f"{len(done)} of {len(compute)} convolution layers int8 with the scales learned in "
               f"'{src.name}'; the rest and every activation run in float"),
        extra={**extra, "winograd": winograd, "source_sha256": sha256_of(src)})


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def _write_sidecar(float_param: Path, src: Path, out: Path, result: QuantizeResult) -> None:
    """The float model's sidecar, marked int8, with the provenance converters.int8 records (its `int8` key)."""
    side = read_sidecar_json(float_param) or {}
    provenance = {"method": "qat", "calibration": {"source": f"learned in QAT ({src.name})",
                                                   "sha256": result.extra["source_sha256"], "images": None},
                  "exclusion": None, "quantizer": result.quantizer, "scheme": result.scheme,
                  "excluded": list(result.excluded), "float_ops": list(result.float_ops), "int8_io": False,
                  "cache_hit": False, "notes": list(result.notes)}
    write_json_atomic(sidecar_path(out), {**side, "source": src.name, "precision": "int8", "weights_storage": "int8",
                                          "int8": provenance})
