"""converters.fp16_storage: float16-stored weights, float32 compute, same outputs to fp16 rounding."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from converters.fp16_storage import FP16_SUFFIX, fp16_stored_count, store_weights_fp16


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_yolo_graph_halves_and_keeps_its_outputs(small_model: Path) -> None:
    model = onnx.load(str(small_model))
    half = store_weights_fp16(model)
    onnx.checker.check_model(half)
    big = [i for i in model.graph.initializer if i.data_type == TensorProto.FLOAT and np.prod(i.dims) >= 16]
    assert fp16_stored_count(half) == len(big) > 10
    assert len(half.SerializeToString()) < 0.6 * len(model.SerializeToString())
    x = np.random.default_rng(0).random((1, 3, 128, 128), dtype=np.float32)
    ref, got = _run(model, x), _run(half, x)
    assert got.dtype == np.float32 and got.shape == ref.shape
    scale = np.abs(ref).max(axis=-1, keepdims=True) + 1e-6  # per output channel (boxes in px, scores in 0..1)
    assert np.abs(got - ref).max() > 0  # the weights really changed
    assert (np.abs(got - ref) / scale).max() < 2e-2
    assert len(model.graph.initializer) == len(half.graph.initializer)  # the input model is not modified
    assert not any(i.name.endswith(FP16_SUFFIX) for i in model.graph.initializer)


def test_small_and_overflowing_weights_stay_float32() -> None:
    small = numpy_helper.from_array(np.ones(4, np.float32), "small")
    huge = numpy_helper.from_array(np.full(32, 1e6, np.float32), "huge")
    fine = numpy_helper.from_array(np.linspace(-1, 1, 32, dtype=np.float32), "fine")
    nodes = [helper.make_node("Add", ["x", "fine"], ["a"]), helper.make_node("Add", ["a", "huge"], ["b"]),
             helper.make_node("Slice", ["b", "s0", "s1"], ["c"]), helper.make_node("Mul", ["c", "small"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [small, huge, fine, numpy_helper.from_array(np.array([0], np.int64), "s0"),
         numpy_helper.from_array(np.array([4], np.int64), "s1")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    half = store_weights_fp16(model)
    kinds = {i.name: i.data_type for i in half.graph.initializer}
    assert kinds["small"] == TensorProto.FLOAT and kinds["huge"] == TensorProto.FLOAT
    assert kinds["fine" + FP16_SUFFIX] == TensorProto.FLOAT16 and "fine" not in kinds
    x = np.zeros(32, np.float32)
    np.testing.assert_allclose(_run(half, x), _run(model, x), rtol=1e-3)
