"""Output rewrite for full-integer int8: boxes divided by the input size before the final concat.

A YOLOv8-style head ends in Concat(boxes [B,4,N] in input pixels, class scores [B,nc,N] in 0..1) on
axis 1. With int8 output (TFLite full-integer) one scale covers that tensor: at 320 px it is about
1.25 px per step, which sets every score below ~0.6 to the same value. Dividing the box rows by
(W, H, W, H) first puts both in 0..1. The decoder must multiply the boxes back: the rewritten model
records `"boxes": "normalized"` and the size in its edgebench metadata (`ModelMeta.extra`).
"""
from __future__ import annotations

import json

import numpy as np
import onnx

from converters.rewrites_graph import Edit, GraphIndex, apply_edits, attrs
from edge_sdk.decode import NORMALIZED_BOXES
from edge_sdk.meta import EDGEBENCH_KEY, ModelMeta

#: what the rewritten model's metadata says about its boxes (edge_sdk.decode.pixel_boxes multiplies them back)
NORMALIZED = NORMALIZED_BOXES


def normalize_boxes(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of `model` whose [B, 4+nc, N] output has its box rows divided by the input (W, H, W, H);
    (copy, 1) when the final Concat was found, else (unchanged copy, 0) — also when the metadata says
    the boxes are normalised already."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    ix = GraphIndex(out)
    hw = None if _already(out) else _input_hw(ix)
    sites = [n for n in out.graph.node if _is_box_score_concat(ix, n)] if hw else []
    if len(sites) != 1 or hw is None:
        return out, 0
    concat = sites[0]
    h, w = hw
    scale = ix.add_const("box_scale", np.array([w, h, w, h], np.float32).reshape(1, 4, 1))
    div = ix.node("Div", [concat.input[0], scale])
    new = onnx.helper.make_node("Concat", [div.output[0], *concat.input[1:]], list(concat.output),
                                name=concat.name, axis=int(attrs(concat)["axis"]))
    apply_edits(out, [Edit(concat.output[0], [div, new])])
    _mark(out, hw)
    return out, 1


def _already(model: onnx.ModelProto) -> bool:
    props = {p.key: p.value for p in model.metadata_props}
    return ModelMeta.from_props(props).extra.get("boxes") == NORMALIZED


def _input_hw(ix: GraphIndex) -> tuple[int, int] | None:
    """(H, W) of the image input, from its static shape or the model's imgsz metadata."""
    inputs = [i for i in ix.graph.input if i.name not in ix.inits]
    shape = ix.shape(inputs[0].name) if len(inputs) == 1 else None
    if shape is None or len(shape) != 4:
        return None
    if isinstance(shape[2], int) and isinstance(shape[3], int) and shape[2] > 0 and shape[3] > 0:
        return shape[2], shape[3]
    props = {p.key: p.value for p in ix.model.metadata_props}
    imgsz = ModelMeta.from_props(props).imgsz
    return (int(imgsz[0]), int(imgsz[1])) if imgsz else None


def _is_box_score_concat(ix: GraphIndex, node: onnx.NodeProto) -> bool:
    """The Concat on axis 1 producing a rank-3 graph output (directly or through Identity) whose first
    input has 4 rows."""
    if node.op_type != "Concat" or len(node.input) < 2 or not _is_output(ix, node.output[0]):
        return False
    first, whole = ix.shape(node.input[0]), ix.shape(node.output[0])
    if first is None or whole is None or len(first) != 3 or len(whole) != 3:
        return False
    return int(attrs(node).get("axis", 0)) % 3 == 1 and first[1] == 4


def _is_output(ix: GraphIndex, name: str) -> bool:
    """`name` is a graph output, or its only reader is an Identity whose output is one."""
    if name in ix.outputs:
        return True
    reader = ix.single_consumer(name)
    return reader is not None and reader.op_type == "Identity" and _is_output(ix, reader.output[0])


def _mark(model: onnx.ModelProto, hw: tuple[int, int]) -> None:
    """Record the normalised boxes (and the size to multiply back by) in the edgebench metadata."""
    props = {p.key: p.value for p in model.metadata_props}
    meta = ModelMeta.from_props(props)
    meta.extra = {**meta.extra, "boxes": NORMALIZED, "box_scale_hw": [int(hw[0]), int(hw[1])]}
    props[EDGEBENCH_KEY] = json.dumps(json.loads(meta.to_props()[EDGEBENCH_KEY]), sort_keys=True)
    for key, value in meta.to_props().items():
        if value and key not in props:
            props[key] = value
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
