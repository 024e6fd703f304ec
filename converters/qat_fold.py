"""Turn the exporter's QAT graph into a deployable Q/DQ ONNX: int8 weight initializers and BatchNorm folded.

torch's exporter writes each quantized convolution as float W -> QuantizeLinear -> DequantizeLinear -> Conv ->
BatchNormalization (the weights are fake-quantized before BN, as they are trained). Per output channel, BN in
eval mode multiplies the convolution by k = gamma / sqrt(var + eps) and adds a bias, so the same function is
DequantizeLinear(sign(k) * q, scale * |k|) -> Conv with bias (b - mean) * k + beta: the int8 values q and the
learned scales are kept exactly, nothing is re-quantized.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from calibration.onnx_prep import prune_dead

#: The weights' int8 range (NNCF's symmetric 8-bit weights use 255 levels).
WEIGHT_QMIN, WEIGHT_QMAX = -127, 127


@dataclass
class FoldStats:
    """What the rewrite did: convolutions whose weights became int8, BatchNorms folded into them."""

    int8_weights: int = 0
    bn_folded: int = 0
    requantized_inputs: int = 0


class _Graph:
    """Producers, consumers and constant values of a graph (Constant nodes, initializers, Identity chains)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.graph = model.graph
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.uses = Counter(i for n in self.graph.node for i in n.input)
        self.uses.update(o.name for o in self.graph.output)
        self.inits = {t.name: t for t in self.graph.initializer}

    def const(self, name: str) -> np.ndarray | None:
        node = self.producer.get(name)
        if node is None:
            return numpy_helper.to_array(self.inits[name]) if name in self.inits else None
        if node.op_type == "Identity":
            return self.const(node.input[0])
        if node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        if self.uses[name] != 1:
            return None
        return next((n for n in self.graph.node if name in n.input), None)


def fold_qat_graph(model: onnx.ModelProto) -> FoldStats:
    """Rewrite `model` in place (see the module docstring); returns counts. Dead nodes are removed."""
    g, stats = _Graph(model), FoldStats()
    dead: set[int] = set()
    for conv in [n for n in model.graph.node if n.op_type == "Conv"]:
        dq = g.producer.get(conv.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or g.uses[dq.output[0]] != 1:
            continue
        q = g.producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue
        w, scale = g.const(q.input[0]), g.const(q.input[1])
        bias = g.const(conv.input[2]) if len(conv.input) > 2 else np.zeros(0 if w is None else w.shape[0], np.float32)
        if w is None or scale is None or bias is None:
            continue
        ints = np.clip(np.round(w / scale.reshape(-1, *([1] * (w.ndim - 1)))), WEIGHT_QMIN, WEIGHT_QMAX)
        bn = g.only_consumer(conv.output[0])
        if bn is not None and bn.op_type == "BatchNormalization":
            ints, scale, bias = _fold_bn(g, bn, ints, scale.astype(np.float64), bias)
            conv.output[0] = bn.output[0]
            dead.add(id(bn))
            stats.bn_folded += 1
        _replace_weight(model, conv, dq, ints.astype(np.int8), np.asarray(scale, np.float32), bias)
        dead.add(id(q))
        stats.int8_weights += 1
    keep = [n for n in model.graph.node if id(n) not in dead]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    prune_dead(model)
    stats.requantized_inputs = requantize_conv_inputs(model)
    return stats


#: ops that move values without changing them: their output is on their inputs' int8 grid
_GRID_KEEPING = ("Concat", "Split", "MaxPool", "Resize", "Reshape", "Transpose", "Slice")


def requantize_conv_inputs(model: onnx.ModelProto) -> int:
    """Give a quantized Conv that reads a layout op (Concat, Split, MaxPool, ...) of dequantized tensors
    a QuantizeLinear/DequantizeLinear pair on that grid, so that engines which fuse only
    DequantizeLinear -> Conv (ONNX Runtime) see it. Exact: the values already lie on the grid. Returns how
    many were added (none where the inputs' grids differ)."""
    g = _Graph(model)
    added = 0
    for conv in [n for n in model.graph.node if n.op_type == "Conv"]:
        src = g.producer.get(conv.input[0])
        weight = g.producer.get(conv.input[1])
        if src is None or src.op_type not in _GRID_KEEPING or weight is None or weight.op_type != "DequantizeLinear":
            continue
        grid = _grid(g, conv.input[0], 0)
        if grid is None:
            continue
        name = f"{conv.name or conv.output[0]}.requant"
        nodes = [helper.make_node("QuantizeLinear", [conv.input[0], *grid], [name + ".q"]),
                 helper.make_node("DequantizeLinear", [name + ".q", *grid], [name])]
        at = list(model.graph.node).index(conv)
        for node in reversed(nodes):
            model.graph.node.insert(at, node)
        conv.input[0] = name
        added += 1
    return added


def _grid(g: _Graph, tensor: str, depth: int) -> tuple[str, str] | None:
    """(scale, zero point) names when `tensor` is a DequantizeLinear output, or a grid-keeping op of tensors
    that all share one per-tensor grid."""
    node = g.producer.get(tensor)
    if node is None or depth > 6:
        return None
    if node.op_type == "DequantizeLinear":
        scale = g.const(node.input[1])
        return (node.input[1], node.input[2]) if scale is not None and scale.size == 1 else None
    if node.op_type not in _GRID_KEEPING:
        return None
    sources = node.input if node.op_type == "Concat" else node.input[:1]
    grids = [grid for grid in (_grid(g, t, depth + 1) for t in sources) if grid is not None]
    if not grids or len(grids) != len(sources):
        return None
    values = {(float(np.asarray(g.const(s)).reshape(-1)[0]), int(np.asarray(g.const(z)).reshape(-1)[0]))
              for s, z in grids}
    return grids[0] if len(values) == 1 else None


def _fold_bn(g: _Graph, bn: onnx.NodeProto, ints: np.ndarray, scale: np.ndarray,
             bias: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gamma, beta, mean, var = (np.asarray(g.const(i), np.float64) for i in bn.input[1:5])
    eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
    k = gamma / np.sqrt(var + eps)
    sign = np.where(k < 0, -1.0, 1.0).reshape(-1, *([1] * (ints.ndim - 1)))
    new_bias = (bias.astype(np.float64) - mean) * k + beta
    return ints * sign, scale.reshape(-1) * np.abs(k), new_bias


def _replace_weight(model: onnx.ModelProto, conv: onnx.NodeProto, dq: onnx.NodeProto, ints: np.ndarray,
                    scale: np.ndarray, bias: np.ndarray) -> None:
    base = conv.name or conv.output[0]
    names = (f"{base}.w_int8", f"{base}.w_scale", f"{base}.w_zero", f"{base}.bias")
    model.graph.initializer.extend([
        numpy_helper.from_array(ints, names[0]), numpy_helper.from_array(scale.reshape(-1), names[1]),
        numpy_helper.from_array(np.zeros(scale.size, np.int8), names[2]),
        numpy_helper.from_array(np.asarray(bias, np.float32).reshape(-1), names[3])])
    dq.input[:] = list(names[:3])
    del dq.attribute[:]
    dq.attribute.append(helper.make_attribute("axis", 0))
    if len(conv.input) > 2:
        conv.input[2] = names[3]
    else:
        conv.input.append(names[3])


