"""The float32 ONNX every quantizer starts from: weights stored as float16 (Cast nodes that recreate
float32 at load, converters.fp16_storage) are folded back into float32 initializers, so quantizers
see plain float32 weights on their Conv/MatMul nodes. The computation is unchanged."""
from __future__ import annotations

from pathlib import Path

import onnx
from onnx import numpy_helper


def fold_weight_casts(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` where each Cast(to=FLOAT) of a float16/bfloat16 initializer is a float32
    initializer (named as the Cast's output); other nodes are kept in order."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {i.name: i for i in graph.initializer}
    halves = (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
    folded, used = [], set()
    kept = []
    for node in graph.node:
        src = inits.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if src is not None and src.data_type in halves and to == onnx.TensorProto.FLOAT:
            folded.append(numpy_helper.from_array(numpy_helper.to_array(src).astype("float32"), node.output[0]))
            used.add(src.name)
            continue
        kept.append(node)
    if not folded:
        return out
    still = {i for n in kept for i in n.input}
    rest = [i for i in graph.initializer if i.name not in used or i.name in still]
    del graph.initializer[:]
    graph.initializer.extend(rest + folded)
    del graph.node[:]
    graph.node.extend(kept)
    return out


def float32_onnx(source: str | Path, out: str | Path) -> Path:
    """Write `source` with its float16-stored weights folded to float32 (converters' and quantizers'
    common starting point); returns `out`."""
    model = fold_weight_casts(onnx.load(str(source)))
    onnx.save(model, str(out))
    return Path(out)


def prune_dead(model: onnx.ModelProto) -> None:
    """Drop the nodes and initializers nothing reaches the graph outputs through (in place)."""
    needed = {o.name for o in model.graph.output}
    keep: list[onnx.NodeProto] = []
    for node in reversed(model.graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    del model.graph.node[:]
    model.graph.node.extend(reversed(keep))
    inits = [t for t in model.graph.initializer if t.name in needed]
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)
