"""DFL on 4-D tensors only: Softmax over the bins, then the expectation sum(p * w), written as
Reshape [b, mid, n, post] -> Transpose -> Softmax(axis 1) -> Conv 1x1 (weights w) -> Reshape.

Sites: the expectation written as ReduceSum(Softmax(x) * w), or any DFL that goes through 5-D
tensors (a 5-D reshape before the Softmax, a 3-D Conv after it). The new graph reads the tensor
that fed the 5-D Reshape (so no 5-D tensor remains) and writes the original output name (or, when
that output is 5-D, the output of the Reshape that reads it). Needs opset >= 13 (per-axis Softmax).
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np
import onnx
from onnx import helper

from converters.rewrites_graph import Dim, Edit, GraphIndex, apply_edits, attrs
from converters.rewrites_ops import _copy

_PLAIN_CONV = {"group": 1, "auto_pad": "NOTSET"}


@dataclass
class Expectation:
    """sum over the Softmax axis of p * weights: the nodes after the Softmax and the result's name."""

    keys: list[str]
    out: str
    weights: np.ndarray
    by_conv: bool


@dataclass
class Source:
    """The tensor the new Reshape reads, the shape `t` whose axis `p` holds the bins, and the
    Transpose `perm` from t's order to the Softmax input's order."""

    name: str
    t: list[Dim]
    perm: list[int]
    keys: list[str]


def _weights_along(c: np.ndarray | None, k: int, r: int, n: int) -> np.ndarray | None:
    """The n weights of a constant that broadcasts against a rank-r tensor along axis k only."""
    if c is None or c.size != n or c.ndim > r or n < 2:
        return None
    pos = k - (r - c.ndim)
    return c.ravel() if pos >= 0 and c.shape[pos] == n else None


def _reduced_axes(ix: GraphIndex, node: onnx.NodeProto, r: int) -> list[int] | None:
    if ix.opset >= 13:
        axes = ix.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
    else:
        axes = attrs(node).get("axes")
    return None if axes is None else sorted(int(a) % r for a in np.ravel(axes))


def _by_mul(ix: GraphIndex, sm: onnx.NodeProto, mul: onnx.NodeProto, k: int, r: int, n: int) -> Expectation | None:
    other = mul.input[1] if mul.input[0] == sm.output[0] else mul.input[0]
    w = _weights_along(ix.const(other), k, r, n)
    red = ix.single_consumer(mul.output[0])
    if w is None or red is None or red.op_type != "ReduceSum" or _reduced_axes(ix, red, r) != [k]:
        return None
    return Expectation([mul.output[0], red.output[0]], red.output[0], w, False)


def _by_conv(ix: GraphIndex, conv: onnx.NodeProto, k: int, r: int, n: int) -> Expectation | None:
    a = attrs(conv)
    plain = all(a.get(key, v) == v for key, v in _PLAIN_CONV.items()) and not any(
        set(a.get(key, [1])) - {1} for key in ("strides", "dilations", "kernel_shape")) and not any(a.get("pads", []))
    w = ix.const(conv.input[1])
    if k != 1 or not plain or len([i for i in conv.input if i]) != 2 or w is None:
        return None
    if w.shape != (1, n) + (1,) * (r - 2):
        return None
    return Expectation([conv.output[0]], conv.output[0], w.ravel(), True)


def _expectation(ix: GraphIndex, sm: onnx.NodeProto, k: int, r: int, n: int) -> Expectation | None:
    nxt = ix.single_consumer(sm.output[0])
    if nxt is None or nxt.domain not in ("", "ai.onnx"):
        return None
    if nxt.op_type == "Mul":
        return _by_mul(ix, sm, nxt, k, r, n)
    return _by_conv(ix, nxt, k, r, n) if nxt.op_type == "Conv" else None


def _source(ix: GraphIndex, x: str) -> Source:
    """Walk back over an optional Transpose and a Reshape from a tensor of rank <= 4."""
    s = ix.shape(x) or []
    here, perm, keys = x, list(range(len(s))), []
    node = ix.producer.get(here)
    if node is not None and node.op_type == "Transpose":
        perm, keys, here = list(attrs(node).get("perm", perm[::-1])), [here], node.input[0]
        node = ix.producer.get(here)
    src_shape = ix.shape(node.input[0]) if node is not None and node.op_type == "Reshape" else None
    if node is None or src_shape is None or len(src_shape) > 4 or ix.shape(here) is None:
        return Source(x, s, list(range(len(s))), [])
    return Source(node.input[0], ix.shape(here) or [], perm, keys + [here])


def _batch(dim: Dim, batch: Dim) -> int | None:
    """A Reshape target entry for dim 0: the static size, or 0 (copy) for the symbolic batch."""
    if isinstance(dim, int):
        return dim
    return 0 if isinstance(dim, str) and dim == batch else None


def _target(ix: GraphIndex, shape: list[Dim] | None, batch: Dim) -> list[int] | None:
    """A static Reshape target (0 for the symbolic batch) of rank <= 4, or None."""
    if not shape or len(shape) > 4 or any(not isinstance(d, int) for d in shape[1:]):
        return None
    first = _batch(shape[0], batch)
    return None if first is None else [first, *shape[1:]]


def _final(ix: GraphIndex, e: Expectation, batch: Dim) -> tuple[str, list[int]] | None:
    """(the name to write, its Reshape target): the expectation itself, or the Reshape that reads it
    when the expectation is 5-D (that Reshape is then replaced too)."""
    target = _target(ix, ix.shape(e.out), batch)
    if target is not None:
        return e.out, target
    reader = ix.single_consumer(e.out)
    if reader is None or reader.op_type != "Reshape":
        return None
    target = _target(ix, ix.shape(reader.output[0]), batch)
    return None if target is None else (reader.output[0], target)


def _site(ix: GraphIndex, sm: onnx.NodeProto) -> Edit | None:
    x = sm.input[0]
    s = ix.shape(x)
    if ix.opset < 13 or s is None or sm.domain not in ("", "ai.onnx"):
        return None
    r = len(s)
    k = attrs(sm).get("axis", -1) % r
    n = s[k]
    e = _expectation(ix, sm, k, r, n) if isinstance(n, int) else None
    if e is None:
        return None
    src = _source(ix, x)
    if len(ix.shape(src.name) or s) > 4:
        return None  # a 5-D tensor that does not come from a Reshape: nothing 4-D to start from
    if e.by_conv and r <= 4 and len(src.t) <= 4:
        return None  # already the 4-D form
    return _build(ix, sm, e, src, k)


def _build(ix: GraphIndex, sm: onnx.NodeProto, e: Expectation, src: Source, k: int) -> Edit | None:
    t, perm = src.t, src.perm
    p = perm[k]
    batch = (ix.shape(src.name) or [None])[0]
    first = _batch(t[0], batch)
    final = _final(ix, e, t[0])
    if p < 1 or perm[0] != 0 or first is None or final is None or any(not isinstance(d, int) for d in t[1:]):
        return None
    out, target = final
    n, mid, post = t[p], prod(t[1:p]), prod(t[p + 1:])
    dtype = helper.tensor_dtype_to_np_dtype(ix.types.get(sm.input[0]) or onnx.TensorProto.FLOAT)
    nodes = [ix.node("Reshape", [src.name, ix.add_const("rw_dfl_shape", np.array([first, mid, n, post], np.int64))])]
    nodes.append(ix.node("Transpose", [nodes[-1].output[0]], perm=[0, 2, 1, 3]))
    nodes.append(ix.node("Softmax", [nodes[-1].output[0]], axis=1))
    w = ix.add_const("rw_dfl_bins", e.weights.astype(dtype).reshape(1, n, 1, 1))
    nodes.append(ix.node("Conv", [nodes[-1].output[0], w], kernel_shape=[1, 1]))
    q = [a - (a > p) for i, a in enumerate(perm) if i != k]
    if q != sorted(q):
        rest = [first, *[d for i, d in enumerate(t) if i != p][1:]]
        nodes.append(ix.node("Reshape", [nodes[-1].output[0], ix.add_const("rw_dfl_shape", np.array(rest, np.int64))]))
        nodes.append(ix.node("Transpose", [nodes[-1].output[0]], perm=q))
    shape = ix.add_const("rw_dfl_shape", np.array(target, np.int64))
    nodes.append(ix.node("Reshape", [nodes[-1].output[0], shape], out))
    return Edit(out, nodes, [sm.output[0], *e.keys, *src.keys])


def dfl_4d(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Rewrite every DFL that uses 5-D tensors or ReduceSum(Softmax(x) * bins) to the 4-D Conv form."""
    out = _copy(model)
    ix = GraphIndex(out)
    edits = [e for e in (_site(ix, n) for n in list(out.graph.node) if n.op_type == "Softmax") if e is not None]
    apply_edits(out, edits)
    return out, len(edits)
