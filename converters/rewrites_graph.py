"""Graph plumbing for the ONNX rewrites (onnx + numpy only): lookups, fresh names, constants, and
applying edits in place so the graph stays topologically sorted."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

Dim = Any  # int, a dim_param string, or None (unknown)


@dataclass
class Edit:
    """Replace the node whose first output is `anchor` by `nodes` (the last one reuses the anchor's
    output name); nodes listed in `removable` go too once nothing reads them."""

    anchor: str
    nodes: list[onnx.NodeProto]
    removable: list[str] = field(default_factory=list)


def opset(model: onnx.ModelProto) -> int:
    """The default-domain opset version of a model."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    """A node's attributes as Python values (strings decoded)."""
    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        out[a.name] = value.decode() if isinstance(value, bytes) else value
    return out


def _dims(value_info: Any) -> list[Dim] | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


class GraphIndex:
    """Read-only view of a model for matching: producers, consumers, constants and inferred shapes."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model, self.graph = model, model.graph
        self.opset = opset(model)
        self.producer = {o: n for n in self.graph.node for o in n.output if o}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in self.graph.node:
            for i in _reads([n]):
                self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in self.graph.output}
        self.inits = {i.name: i for i in self.graph.initializer}
        self.shapes, self.types = _infer(model)
        self._taken = set(self.producer) | set(self.inits) | {i.name for i in self.graph.input}
        self._taken |= {n.name for n in self.graph.node}

    def shape(self, name: str) -> list[Dim] | None:
        """The tensor's shape (static ints, dim_param strings or None), None when unknown."""
        return self.shapes.get(name)

    def single_consumer(self, name: str) -> onnx.NodeProto | None:
        """The only node reading `name` (None if several, none, or it is a graph output)."""
        readers = self.consumers.get(name, [])
        return readers[0] if len(readers) == 1 and name not in self.outputs else None

    def const(self, name: str) -> np.ndarray | None:
        """The value of a constant tensor: an initializer, a Constant node, or a Cast of either."""
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is None:
            return None
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        if node.op_type == "Cast":
            src = self.const(node.input[0])
            to = helper.tensor_dtype_to_np_dtype(attrs(node)["to"])
            return None if src is None else src.astype(to)
        return None

    def fresh(self, prefix: str) -> str:
        """A tensor/node name not used anywhere in the graph yet."""
        i = 0
        while f"{prefix}_{i}" in self._taken:
            i += 1
        name = f"{prefix}_{i}"
        self._taken.add(name)
        return name

    def add_const(self, prefix: str, value: np.ndarray) -> str:
        """Add an initializer (also a graph input for IR < 4) and return its name."""
        name = self.fresh(prefix)
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        if self.model.ir_version < 4:
            dtype = helper.np_dtype_to_tensor_dtype(np.asarray(value).dtype)
            self.graph.input.append(helper.make_tensor_value_info(name, dtype, list(np.shape(value))))
        return name

    def node(self, op: str, inputs: list[str], output: str | None = None, **kw: Any) -> onnx.NodeProto:
        """A new node with a fresh name (and a fresh output unless `output` is given)."""
        name = self.fresh(f"rw_{op.lower()}")
        return helper.make_node(op, inputs, [output or self.fresh(f"{name}_out")], name=name, **kw)


def _infer(model: onnx.ModelProto) -> tuple[dict[str, list[Dim]], dict[str, int]]:
    """Shapes and element types of every tensor ONNX shape inference can reach."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, ValueError):
        inferred = model  # fall back to the value_info the file already carries
    g = inferred.graph
    shapes: dict[str, list[Dim]] = {}
    types: dict[str, int] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        dims = _dims(vi)
        if dims is not None:
            shapes[vi.name] = dims
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        shapes[init.name], types[init.name] = list(init.dims), init.data_type
    return shapes, types


def apply_edits(model: onnx.ModelProto, edits: list[Edit]) -> None:
    """Splice every edit in at its anchor's position, drop dead removable nodes and stale metadata."""
    if not edits:
        return
    by_anchor = {e.anchor: e for e in edits}
    removable = {r for e in edits for r in e.removable}
    old = list(model.graph.node)
    nodes: list[onnx.NodeProto] = []
    for n in old:
        key = n.output[0] if n.output else ""
        nodes.extend(by_anchor[key].nodes if key in by_anchor else [n])
    nodes = _drop_dead(nodes, removable, {o.name for o in model.graph.output})
    used_before = _reads(old)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    _prune(model, used_before)


def _drop_dead(nodes: list[onnx.NodeProto], removable: set[str], outputs: set[str]) -> list[onnx.NodeProto]:
    """Remove removable nodes (keyed by first output) whose outputs nobody reads, until none is left."""
    while True:
        read = _reads(nodes) | outputs
        dead = [n for n in nodes if n.output and n.output[0] in removable and not set(n.output) & read]
        if not dead:
            return nodes
        gone = {n.output[0] for n in dead}
        nodes = [n for n in nodes if not (n.output and n.output[0] in gone)]


def _reads(nodes: Any) -> set[str]:
    """Every tensor name the nodes read, including from inside their subgraphs (If, Loop, Scan)."""
    read: set[str] = set()
    for n in nodes:
        read.update(n.input)
        for a in n.attribute:
            for sub in [a.g] if a.HasField("g") else list(a.graphs):
                read |= _reads(sub.node) | {o.name for o in sub.output}
    return read


def _prune(model: onnx.ModelProto, used_before: set[str]) -> None:
    """Drop initializers the edits left unread, and value_info of tensors that no longer exist."""
    g = model.graph
    read = _reads(g.node) | {o.name for o in g.output}
    keep = [i for i in g.initializer if i.name in read or i.name not in used_before]
    if len(keep) != len(g.initializer):
        gone = {i.name for i in g.initializer} - {i.name for i in keep}
        del g.initializer[:]
        g.initializer.extend(keep)
        kept_inputs = [i for i in g.input if i.name not in gone]
        del g.input[:]
        g.input.extend(kept_inputs)
    produced = {o for n in g.node for o in n.output} | {i.name for i in g.input}
    stale = [v for v in g.value_info if v.name not in produced]
    for v in stale:
        g.value_info.remove(v)


def is_topologically_sorted(model: onnx.ModelProto) -> bool:
    """Every node input is a graph input, an initializer, or an earlier node's output."""
    g = model.graph
    known = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    for n in g.node:
        if any(i not in known for i in n.input):
            return False
        known.update(n.output)
    return True
