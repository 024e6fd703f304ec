"""Which layers stay in float: the detection head's output layers and decode tail by default, found by graph
position.

The decode tail of a YOLO-family export starts where the per-level feature maps stop being 4-D
images (the reshape that flattens each level) and runs to the outputs: the concat of the levels,
the DFL softmax and its fixed 1x1 convolution, the anchor/stride arithmetic, the class sigmoid and
the final concat that puts boxes (0..imgsz px) and scores (0..1) in one tensor. A single int8 scale
over that concat crushes the scores (every detection lost); the DFL softmax and the decode are the
other known-sensitive layers. They are found from shapes, not names, so a third-party export (other
node names, YOLOv5/v7 5-D heads, NMS in the graph) gets the same treatment.

Just before the tail sit the head's output layers: the last convolution of each branch, whose raw
logits (box distributions, class scores) feed the softmax/sigmoid of the decode, and the per-level
concat that joins the box and class logits in one 4-D tensor. One int8 scale over that concat mixes
two ranges again, and the logits' rounding is amplified by the exponentials after them: on the bundled
model with ONNX Runtime, keeping them in float too halves the AP50-95 loss (docs/quantization.md).
They are found by walking back from the tail through layout ops (concat, reshape, transpose) to the
first compute op on each path.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import onnx

from runtimes.errors import InputError

#: what `--exclude` takes besides names
AUTO, NONE = "auto", "none"


@dataclass(frozen=True)
class Exclusion:
    """The ONNX nodes to keep in float, and how they were chosen ("auto", "none" or "names")."""

    mode: str
    nodes: tuple[str, ...] = ()
    added: tuple[str, ...] = ()  # nodes the sensitivity search added to the auto set (see sensitivity)

    @property
    def all_nodes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.nodes + self.added))

    def to_dict(self) -> dict[str, object]:
        return {"mode": self.mode, "nodes": list(self.nodes), "added": list(self.added)}


def resolve_exclusion(spec: str | Sequence[str] | None, model: onnx.ModelProto) -> Exclusion:
    """`auto` (or None): the head's output layers and the decode tail (`auto_exclusion`); `none`: nothing; else
    comma-separated node names or glob patterns (`/head/dfl/*`), each of which must match a node of `model`
    (InputError naming the first that does not)."""
    items = _items(spec)
    if not items or items == [AUTO]:
        return Exclusion(AUTO, auto_exclusion(model))
    if items == [NONE]:
        return Exclusion(NONE)
    if AUTO in items or NONE in items:
        raise InputError("--exclude takes 'auto', 'none' or node names, not a mix of them")
    names = [n.name for n in model.graph.node]
    chosen: dict[str, None] = {}
    for pattern in items:
        matched = [n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            raise InputError(f"--exclude: no node named '{pattern}' in the model (e.g. {', '.join(names[-3:])})")
        chosen.update(dict.fromkeys(matched))
    return Exclusion("names", tuple(chosen))


def _items(spec: str | Sequence[str] | None) -> list[str]:
    if spec is None:
        return []
    parts: Iterable[str] = spec.split(",") if isinstance(spec, str) else spec
    return [p.strip() for p in parts if p and p.strip()]


def auto_exclusion(model: onnx.ModelProto) -> tuple[str, ...]:
    """The default float set: the head's output layers and the decode tail, in graph order; () without a tail."""
    tail = decode_tail(model)
    chosen = set(tail) | set(head_outputs(model, tail))
    return tuple(n.name for n in model.graph.node if n.name in chosen)


#: ops that only move or join data: walked through (and kept in float) on the way back from the tail
LAYOUT_OPS = frozenset({"Concat", "Reshape", "Transpose", "Flatten", "Identity", "Squeeze", "Unsqueeze"})
#: where the walk back stops, keeping the op in float
COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})


def head_outputs(model: onnx.ModelProto, tail: Sequence[str]) -> tuple[str, ...]:
    """Nodes feeding the tail `tail` through layout ops only, up to and including the first compute op on each
    path (the head's last convolutions and the concat joining their logits)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    dynamic = _dynamic_tensors(model.graph)  # not the shape arithmetic feeding a Reshape
    in_tail = set(tail)
    stack = [i for n in model.graph.node if n.name in in_tail for i in n.input
             if i in producer and i in dynamic and producer[i].name not in in_tail]
    found: dict[str, None] = {}
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in found or node.name in in_tail:
            continue
        if node.op_type in COMPUTE_OPS:
            found[node.name] = None
        elif node.op_type in LAYOUT_OPS:
            found[node.name] = None
            stack.extend(i for i in node.input if i in dynamic)
    return tuple(found)


def decode_tail(model: onnx.ModelProto) -> tuple[str, ...]:
    """Names of the nodes from the first non-4-D tensor computed from the input to the outputs (graph
    order); () when the model has no such tail (shapes unknown, or an all-4-D graph)."""
    graph = model.graph
    ranks = _ranks(model)
    dynamic = _dynamic_tensors(graph)
    flat: set[str] = set()  # tensors on or after a non-4-D tensor
    tail: list[onnx.NodeProto] = []
    for node in graph.node:
        ins = [t for t in node.input if t in dynamic]
        if not ins:
            continue
        if any(t in flat for t in ins) or any(ranks.get(t, 4) != 4 for t in node.output):
            flat.update(node.output)
            tail.append(node)
    feeding = _ancestors_of_outputs(graph)
    return tuple(n.name for n in tail if n.name and any(o in feeding for o in n.output))


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except onnx.shape_inference.InferenceError:
        inferred = model
    g = inferred.graph
    return {vi.name: len(vi.type.tensor_type.shape.dim) for vi in [*g.value_info, *g.output, *g.input]
            if vi.type.tensor_type.HasField("shape")}


def _dynamic_tensors(graph: onnx.GraphProto) -> set[str]:
    """Tensors computed from the graph inputs (not constants folded from initializers)."""
    initializers = {i.name for i in graph.initializer}
    dynamic = {i.name for i in graph.input if i.name not in initializers}
    for node in graph.node:
        if node.op_type != "Shape" and any(t in dynamic for t in node.input):
            dynamic.update(node.output)
    return dynamic


def _ancestors_of_outputs(graph: onnx.GraphProto) -> set[str]:
    """Every tensor the graph outputs depend on (the outputs included)."""
    producer = {o: n for n in graph.node for o in n.output}
    seen: set[str] = set()
    stack = [o.name for o in graph.output]
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        node = producer.get(t)
        if node is not None:
            stack.extend(i for i in node.input if i)
    return seen
