"""Store an ONNX model's float32 weights as float16 while it still computes in float32.

Each large float32 initializer W becomes a float16 initializer plus a `Cast(to=FLOAT)` node
that recreates W at load time (runtimes fold the Cast once, when the session is built), so
the file is about half the size, inference speed is unchanged, and the only change to the
outputs is the rounding of the weights to float16 (about 3 significant digits).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

FP16_SUFFIX = "__fp16"
FP16_MAX = float(np.finfo(np.float16).max)


def _convertible(init: onnx.TensorProto, min_elements: int) -> bool:
    if init.data_type != onnx.TensorProto.FLOAT:
        return False
    count = int(np.prod(init.dims)) if len(init.dims) else 1
    return count >= min_elements


def store_weights_fp16(model: onnx.ModelProto, min_elements: int = 16) -> onnx.ModelProto:
    """A copy of `model` whose float32 initializers of at least `min_elements` values are kept
    as float16 and cast back to float32 by nodes at the start of the graph.

    Initializers whose values overflow float16 are left as they are.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    kept: list[onnx.TensorProto] = []
    casts: list[onnx.NodeProto] = []
    for init in graph.initializer:
        if not _convertible(init, min_elements):
            kept.append(init)
            continue
        values = numpy_helper.to_array(init)
        if values.size and float(np.abs(values).max()) > FP16_MAX:
            kept.append(init)
            continue
        half = numpy_helper.from_array(values.astype(np.float16), init.name + FP16_SUFFIX)
        kept.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT,
                                      name=f"{init.name}{FP16_SUFFIX}_cast"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return out


def fp16_stored_count(model: onnx.ModelProto) -> int:
    """How many initializers of `model` are stored as float16 by `store_weights_fp16`."""
    return sum(1 for i in model.graph.initializer if i.name.endswith(FP16_SUFFIX))
