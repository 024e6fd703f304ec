"""Two single-node rewrites: 2x nearest Resize -> Concat + DepthToSpace (exact), SiLU -> HardSwish
(changes the function)."""
from __future__ import annotations

import numpy as np
import onnx

from converters.rewrites_graph import Edit, GraphIndex, apply_edits, attrs

#: (coordinate_transformation_mode, nearest_mode) pairs whose 2x nearest upsample copies every
#: pixel into a 2x2 block: out[2h+i, 2w+j] = in[h, w]. Other pairs shift by one pixel.
REPLICATING = {("asymmetric", "floor"), ("asymmetric", "round_prefer_floor"),
               *((ctm, nm) for ctm in ("half_pixel", "pytorch_half_pixel", "half_pixel_symmetric")
                 for nm in ("round_prefer_floor", "round_prefer_ceil"))}
SILU_OPS = ("Swish", "SiLU", "Silu")


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _resize_factors(ix: GraphIndex, node: onnx.NodeProto) -> list[float] | None:
    """Per-axis scale factors of a Resize (from scales, or sizes over a static input shape)."""
    shape = ix.shape(node.input[0])
    ins = list(node.input) + [""] * 4
    scales_name, sizes_name = (ins[1], "") if ix.opset < 11 else (ins[2], ins[3])
    scales = ix.const(scales_name) if scales_name else None
    if scales is not None and scales.size:
        values = [float(s) for s in scales.ravel()]
    else:
        sizes = ix.const(sizes_name) if sizes_name else None
        if sizes is None or shape is None or attrs(node).get("keep_aspect_ratio_policy", "stretch") != "stretch":
            return None
        axes = attrs(node).get("axes", range(len(shape)))
        if any(not isinstance(shape[a], int) for a in axes):
            return None
        values = [float(s) / shape[a] for s, a in zip(sizes.ravel(), axes, strict=False)]
    return _on_all_axes(values, attrs(node).get("axes"), len(shape) if shape else len(values))


def _on_all_axes(values: list[float], axes: list[int] | None, rank: int) -> list[float] | None:
    if axes is None:
        return values if len(values) == rank else None
    full = [1.0] * rank
    for v, a in zip(values, axes, strict=False):
        full[a % rank] = v
    return full


def _is_2x_replicating(ix: GraphIndex, node: onnx.NodeProto) -> bool:
    a = attrs(node)
    if node.domain not in ("", "ai.onnx") or a.get("mode", "nearest") != "nearest":
        return False
    mode = ("asymmetric", "floor") if ix.opset < 11 else (
        a.get("coordinate_transformation_mode", "half_pixel"), a.get("nearest_mode", "round_prefer_floor"))
    shape = ix.shape(node.input[0])
    return (mode in REPLICATING and shape is not None and len(shape) == 4
            and _resize_factors(ix, node) == [1.0, 1.0, 2.0, 2.0])


def upsample_d2s(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Resize(nearest, x2 on H and W, NCHW) -> Concat([x]*4, axis=1) + DepthToSpace(2, DCR).

    DCR reads output (2h+i, 2w+j) of channel c from input channel (2i+j)*C + c, so four equal
    copies stacked on the channel axis reproduce the 2x2 replication exactly (CRD would need each
    channel repeated in place instead).
    """
    out = _copy(model)
    ix = GraphIndex(out)
    edits = []
    for node in out.graph.node:
        if node.op_type == "Resize" and _is_2x_replicating(ix, node):
            x = node.input[0]
            cat = ix.node("Concat", [x] * 4, axis=1)
            mode = {"mode": "DCR"} if ix.opset >= 11 else {}
            d2s = ix.node("DepthToSpace", [cat.output[0]], node.output[0], blocksize=2, **mode)
            edits.append(Edit(node.output[0], [cat, d2s]))
    apply_edits(out, edits)
    return out, len(edits)


def _silu_input(ix: GraphIndex, node: onnx.NodeProto) -> tuple[str, str | None] | None:
    """(x, the Sigmoid's output or None) when the node computes x * sigmoid(x)."""
    if node.domain not in ("", "ai.onnx"):
        return None
    if node.op_type in SILU_OPS:
        alpha = attrs(node).get("alpha", 1.0)
        return (node.input[0], None) if len(node.input) == 1 and np.isclose(alpha, 1.0) else None
    if node.op_type != "Mul" or len(node.input) != 2:
        return None
    for x, s in (node.input, node.input[::-1]):
        sig = ix.producer.get(s)
        if sig is not None and sig.op_type == "Sigmoid" and sig.domain in ("", "ai.onnx") and sig.input[0] == x:
            return x, s
    return None


def silu_hardswish(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """x * Sigmoid(x) (and Swish/SiLU nodes) -> HardSwish(x); the model computes a different function.

    Below opset 14 (no HardSwish) it writes x * HardSigmoid(x, alpha=1/6, beta=0.5), the same thing.
    """
    out = _copy(model)
    ix = GraphIndex(out)
    edits = []
    for node in out.graph.node:
        found = _silu_input(ix, node)
        if found is None:
            continue
        x, sig = found
        edits.append(Edit(node.output[0], _hardswish(ix, x, node.output[0]), [sig] if sig else []))
    apply_edits(out, edits)
    return out, len(edits)


def _hardswish(ix: GraphIndex, x: str, y: str) -> list[onnx.NodeProto]:
    if ix.opset >= 14:
        return [ix.node("HardSwish", [x], y)]
    gate = ix.node("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)
    return [gate, ix.node("Mul", [x, gate.output[0]], y)]
