"""A QAT Q/DQ ONNX's float graph and what its Q/DQ nodes held: each activation QuantizeLinear ->
DequantizeLinear pair is removed and its scale/zero point kept by the tensor it quantizes; each int8 weight ->
DequantizeLinear becomes the float initializer q * scale (exactly the learned grid). Read by the QAT routes to
ncnn (calibration.ncnn_qat) and to full-integer TFLite (converters.qat_tflite)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from calibration.onnx_prep import prune_dead
from runtimes.errors import ConversionError


@dataclass(frozen=True)
class Learned:
    """A learned activation quantization, as int8 (TFLite's type): scale and zero point."""

    scale: float
    zero_point: int

    def qsv(self) -> dict[str, np.ndarray]:
        """min/max from which ai-edge-quantizer's asymmetric int8 rule gives back exactly this scale and zp."""
        lo = (-128 - self.zero_point) * np.float64(self.scale)
        hi = (127 - self.zero_point) * np.float64(self.scale)
        return {"min": np.array(lo, np.float64), "max": np.array(hi, np.float64)}


@dataclass
class StrippedQdq:
    """The float ONNX of a Q/DQ model and what its Q/DQ nodes held."""

    model: onnx.ModelProto
    activations: dict[str, Learned]  # float tensor name -> its learned quantization
    weights: dict[str, tuple[np.ndarray, np.ndarray]]  # float weight initializer -> (int8 values, per-axis-0 scale)
    conflicts: list[str] = field(default_factory=list)  # tensors quantized twice with different parameters


def strip_qdq(model: onnx.ModelProto) -> StrippedQdq:
    """A copy of `model` without Q/DQ nodes: activation pairs removed (their parameters kept by the float
    tensor they quantize), int8 weights dequantized into float initializers (q * scale, as DequantizeLinear
    computes it)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    consts = _constants(graph)
    producer = {o: n for n in graph.node for o in n.output}
    result = StrippedQdq(out, {}, {})
    rename: dict[str, str] = {}
    drop: set[str] = set()
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        src = producer.get(node.input[0])
        if src is not None and src.op_type == "QuantizeLinear":
            _strip_pair(src, node, consts, result, rename)
            drop.update((src.output[0], node.output[0]))
        elif node.input[0] in consts:
            _dequantize_weight(node, consts, result)
            drop.add(node.output[0])
    kept = [n for n in graph.node if n.output[0] not in drop]
    for node in kept:
        node.input[:] = [_resolve(rename, i) for i in node.input]
    kept += _output_identities(graph, rename)
    del graph.node[:]
    graph.node.extend(kept)
    prune_dead(out)
    return result


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _strip_pair(q: onnx.NodeProto, dq: onnx.NodeProto, consts: dict[str, np.ndarray], result: StrippedQdq,
                rename: dict[str, str]) -> None:
    """Record the pair's learned parameters on the tensor it quantizes; readers of DQ's output read that tensor."""
    learned = _learned(q, consts)
    if _learned(dq, consts) != learned:
        result.conflicts.append(f"{q.input[0]}: QuantizeLinear and DequantizeLinear parameters differ")
    tensor = q.input[0]
    before = result.activations.setdefault(tensor, learned)
    if before != learned:
        result.conflicts.append(f"{tensor}: quantized twice ({before} and {learned}); the first is used")
    rename[dq.output[0]] = tensor


def _learned(node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> Learned:
    """A per-tensor Q or DQ node's scale and zero point, the zero point as int8 (uint8's minus 128)."""
    if node.input[1] not in consts:
        raise ConversionError(f"{node.name or node.output[0]}: the scale is not a constant")
    scale = consts[node.input[1]]
    zero = consts[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros((), np.uint8)
    if scale.size != 1 or zero.size != 1:
        raise ConversionError(f"{node.name or node.output[0]}: per-axis activation quantization has no "
                              "per-tensor int8 form in TFLite")
    if zero.dtype not in (np.uint8, np.int8):
        raise ConversionError(f"{node.name or node.output[0]}: {zero.dtype} quantization is not 8-bit")
    offset = 128 if zero.dtype == np.uint8 else 0
    return Learned(float(scale.reshape(())), int(zero.reshape(())) - offset)


def _dequantize_weight(dq: onnx.NodeProto, consts: dict[str, np.ndarray], result: StrippedQdq) -> None:
    """The float initializer DequantizeLinear computes from constant integers, under DQ's output name."""
    q, scale = consts[dq.input[0]], consts[dq.input[1]].astype(np.float32)
    zero = consts[dq.input[2]] if len(dq.input) > 2 and dq.input[2] else np.zeros_like(scale, dtype=q.dtype)
    axis = next((int(a.i) for a in dq.attribute if a.name == "axis"), 1) % max(q.ndim, 1)
    shape = [1] * q.ndim
    if scale.size > 1:
        shape[axis] = scale.size
    ints = q.astype(np.int32) - zero.astype(np.int32).reshape(shape if zero.size > 1 else ())
    value = (ints.astype(np.float32) * scale.reshape(shape if scale.size > 1 else ())).astype(np.float32)
    result.model.graph.initializer.append(numpy_helper.from_array(value, dq.output[0]))
    if q.dtype == np.int8 and axis == 0 and not np.any(zero):
        result.weights[dq.output[0]] = (q.astype(np.int8), np.broadcast_to(scale.reshape(-1), (q.shape[0],)).copy())


def _resolve(rename: dict[str, str], name: str) -> str:
    while name in rename:
        name = rename[name]
    return name


def _output_identities(graph: onnx.GraphProto, rename: dict[str, str]) -> list[onnx.NodeProto]:
    """An Identity for each graph output that was a DequantizeLinear's (the output keeps its name)."""
    return [onnx.helper.make_node("Identity", [_resolve(rename, o.name)], [o.name])
            for o in graph.output if o.name in rename]
