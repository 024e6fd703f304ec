"""A small ONNX graph builder (numpy + onnx only) used by the fixture models."""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: Opset of every fixture graph (Split takes its sizes as an input, ReduceMean axes as an attribute).
OPSET = 17
#: IR version matching OPSET, so older onnxruntime builds load the files too.
IR_VERSION = 8
#: Suffixes of learned tensors (weights and biases); everything else is a fixed constant.
LEARNED_SUFFIXES = (".weight", ".bias")


class GraphBuilder:
    """Collects nodes and initializers with unique names; `node` returns the output name."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, name: str, value: np.ndarray) -> str:
        """Add an initializer and return its name."""
        arr = np.array(value, copy=True, order="C")  # keeps 0-d scalars 0-d (ascontiguousarray would not)
        self.initializers.append(numpy_helper.from_array(arr, name))
        return name

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        """Add a single-output node and return its output name."""
        return self.node_multi(op, inputs, 1, **attrs)[0]

    def node_multi(self, op: str, inputs: list[str], n_out: int, **attrs: Any) -> list[str]:
        """Add a node with n_out outputs and return their names."""
        base = self._name(op.lower())
        outs = [f"{base}_o{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=base, **attrs))
        return outs

    def model(self, inputs: list[Any], outputs: list[Any], props: dict[str, str], name: str) -> onnx.ModelProto:
        """The finished, checked ModelProto with metadata props."""
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="edgebench-fixtures")
        model.ir_version = IR_VERSION
        helper.set_model_props(model, props)
        onnx.checker.check_model(model)
        return model


def float_input(name: str, shape: list[int | str]) -> Any:
    """A float32 graph input/output value info."""
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def count_learned(model: onnx.ModelProto) -> int:
    """Number of learned parameters (initializers named *.weight / *.bias) in a ModelProto."""
    total = 0
    for init in model.graph.initializer:
        if init.name.endswith(LEARNED_SUFFIXES):
            total += int(np.prod(init.dims)) if len(init.dims) else 1
    return total
