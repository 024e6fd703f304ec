"""The precision an ONNX graph computes in, read from its compute nodes: Q/DQ or integer ops, and the
element type of their weights. Used by the ONNX Runtime backend for `precision_used`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from runtimes.precision import LayerTally, Precision, tally

#: nodes that carry the model's arithmetic (the rest is glue whose type follows them)
COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
#: integer compute ops (ONNX Runtime's QOperator format and the integer-input ops)
INTEGER_OPS = frozenset({"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QGemm"})
#: onnx TensorProto element type -> float precision
_FLOAT_TYPES = {1: Precision.FP32, 10: Precision.FP16, 16: Precision.BF16}


def onnx_precision(path: str | Path) -> Precision:
    """The precision of `onnx_tally(path)`."""
    return onnx_tally(path).precision


def onnx_tally(path: str | Path, requantized_only: bool = False) -> LayerTally:
    """fp32/fp16/bf16 from the weights of the compute nodes; int8 when every one is quantized (Q/DQ
    around it or an integer op), mixed when some are; UNKNOWN when the file has no compute node.
    `requantized_only`: as ONNX Runtime computes it (see `graph_tally`)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return graph_tally(proto.graph, requantized_only)


def graph_precision(graph: Any) -> Precision:
    """`onnx_precision` on a loaded GraphProto (subgraphs are not visited)."""
    return graph_tally(graph).precision


def graph_tally(graph: Any, requantized_only: bool = False) -> LayerTally:
    """The compute-layer tally of a loaded GraphProto (subgraphs are not visited). With `requantized_only`
    a Q/DQ layer counts as integer only when its output is quantized again, as ONNX Runtime computes:
    it fuses DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv, but a Conv whose output stays
    float (e.g. a QAT export that quantizes only layer inputs) runs in fp32 on dequantized inputs."""
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(str(node.op_type))
    weights = {init.name: int(init.data_type) for init in graph.initializer}
    inputs = {vi.name: int(vi.type.tensor_type.elem_type) for vi in graph.input}
    def layer(node: Any) -> Precision:
        if node.op_type in INTEGER_OPS:
            return Precision.INT8
        if all(_op(producers.get(name)) == "DequantizeLinear" for name in node.input[:2]):
            outputs = consumers.get(node.output[0], ["graph output"])
            if requantized_only and not all(op == "QuantizeLinear" for op in outputs):
                return Precision.FP32
            return Precision.INT8
        return _float_kind(node, producers, weights, inputs)

    return tally(layer(n) for n in graph.node if n.op_type in INTEGER_OPS or n.op_type in COMPUTE_OPS)


def _op(node: Any) -> str | None:
    return None if node is None else str(node.op_type)


def _float_kind(node: Any, producers: dict[str, Any], weights: dict[str, int], inputs: dict[str, int]) -> Precision:
    """The element type the node's weight (else its data input) arrives in: an initializer's type, a Cast's
    target type, or a graph input's type."""
    for name in node.input[1:2] or node.input[:1]:
        src = producers.get(name)
        if src is not None and src.op_type == "Cast":
            elem = next((int(a.i) for a in src.attribute if a.name == "to"), None)
        else:
            elem = weights.get(name, inputs.get(name))
        if elem is not None:
            return _FLOAT_TYPES.get(elem, Precision.UNKNOWN)
    return Precision.UNKNOWN
