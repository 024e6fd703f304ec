"""converters.onnx_torch: the ONNX graph as a torch module, checked against ONNX Runtime."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch", reason="converters.onnx_torch needs torch (pip install 'edgebench[train]')")
ort = pytest.importorskip("onnxruntime")

from converters.onnx_torch import onnx_to_torch  # noqa: E402
from runtimes.errors import ConversionError  # noqa: E402


def _run_both(model: onnx.ModelProto | Path, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """(ONNX Runtime outputs, torch module outputs) on the same input."""
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})
    with torch.no_grad():
        got = onnx_to_torch(model)(torch.from_numpy(x))
    got = got if isinstance(got, tuple) else (got,)
    return ref, [g.numpy() for g in got]


def _graph(nodes: list, inits: list, in_shape: list[int], out_names: list[str], opset: int = 17) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in out_names], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _init(name: str, arr: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(arr, name)


def test_bundled_model_matches_onnxruntime() -> None:
    from bench.sweep.defaults import default_model

    x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    ref, got = _run_both(default_model(), x)
    assert got[0].shape == ref[0].shape
    np.testing.assert_allclose(got[0][:, 4:], ref[0][:, 4:], atol=1e-4)  # scores
    assert np.abs(got[0][:, :4] - ref[0][:, :4]).max() <= 2e-5 * np.abs(ref[0][:, :4]).max()  # boxes (px)


def test_yolov8_fixture_matches_onnxruntime(tmp_path: Path) -> None:
    from testkit.models import make_yolov8_onnx

    path = make_yolov8_onnx(tmp_path / "y8.onnx", nc=3, imgsz=160)
    x = np.random.default_rng(1).random((1, 3, 160, 160), dtype=np.float32)
    ref, got = _run_both(path, x)
    np.testing.assert_allclose(got[0][:, 4:], ref[0][:, 4:], atol=1e-4)
    assert np.abs(got[0][:, :4] - ref[0][:, :4]).max() <= 2e-5 * np.abs(ref[0][:, :4]).max()


def _rewrite_style_graph() -> onnx.ModelProto:
    """Ops the graph rewrites produce: fp16 weights behind Cast, int8 behind DequantizeLinear, a
    concat + DepthToSpace upsample, HardSwish/HardSigmoid, Shape-folded Reshape, ReduceSum, MatMul."""
    rng = np.random.default_rng(2)
    w16 = rng.normal(size=(8, 4, 3, 3)).astype(np.float16)
    w8 = rng.integers(-100, 100, size=(8, 8, 1, 1)).astype(np.int8)
    s8 = (rng.random(8) * 0.02 + 0.01).astype(np.float32)
    nodes = [
        helper.make_node("Cast", ["w16"], ["w"], to=TensorProto.FLOAT),
        helper.make_node("Conv", ["x", "w"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("HardSwish", ["c1"], ["h"]),
        helper.make_node("DequantizeLinear", ["w8", "s8"], ["wq"], axis=0),
        helper.make_node("Conv", ["h", "wq"], ["c2"], pads=[0, 0, 1, 1], strides=[2, 2]),
        helper.make_node("HardSigmoid", ["c2"], ["hs"], alpha=0.25, beta=0.4),
        helper.make_node("Concat", ["hs", "hs", "hs", "hs"], ["cat"], axis=1),
        helper.make_node("DepthToSpace", ["cat"], ["up"], blocksize=2, mode="DCR"),
        helper.make_node("MaxPool", ["up"], ["mp"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Shape", ["mp"], ["shp"]),
        helper.make_node("Gather", ["shp", "i01"], ["nc"], axis=0),
        helper.make_node("Concat", ["nc", "m1"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["mp", "flat_shape"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["t"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["t", "mm"], ["proj"]),
        helper.make_node("Softmax", ["proj"], ["sm"], axis=-1),
        helper.make_node("ReduceSum", ["sm", "ax"], ["rs"], keepdims=1),
        helper.make_node("Slice", ["flat", "st", "en", "ax1"], ["sl"]),
        helper.make_node("Unsqueeze", ["sl", "ax0"], ["us"]),
        helper.make_node("Squeeze", ["us", "ax0"], ["sq"]),
        helper.make_node("Reshape", ["sq", "img_shape"], ["sq_img"]),
        helper.make_node("Resize", ["sq_img", "", "", "sizes"], ["rz"], mode="nearest"),
    ]
    inits = [_init("w16", w16), _init("w8", w8), _init("s8", s8), _init("i01", np.array([0, 1], np.int64)),
             _init("m1", np.array([-1], np.int64)), _init("mm", rng.normal(size=(8, 5)).astype(np.float32)),
             _init("ax", np.array([2], np.int64)), _init("st", np.array([2], np.int64)),
             _init("en", np.array([6], np.int64)), _init("ax1", np.array([1], np.int64)),
             _init("ax0", np.array([0], np.int64)), _init("img_shape", np.array([1, 4, 10, 10], np.int64)),
             _init("sizes", np.array([1, 4, 20, 20], np.int64))]
    return _graph(nodes, inits, [1, 4, 8, 8], ["rs", "rz"])


def test_rewrite_style_ops_match_onnxruntime() -> None:
    x = np.random.default_rng(3).normal(size=(1, 4, 8, 8)).astype(np.float32)
    ref, got = _run_both(_rewrite_style_graph(), x)
    assert len(got) == len(ref) == 2
    for r, g in zip(ref, got, strict=False):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space_modes(mode: str) -> None:
    model = _graph([helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode=mode)], [], [1, 8, 3, 3], ["y"])
    x = np.arange(72, dtype=np.float32).reshape(1, 8, 3, 3)
    ref, got = _run_both(model, x)
    np.testing.assert_array_equal(got[0], ref[0])


def test_constants_become_float32_buffers() -> None:
    module = onnx_to_torch(_rewrite_style_graph())
    floats = [b for b in module.buffers() if b.is_floating_point()]
    assert floats and all(b.dtype == torch.float32 for b in floats)  # fp16 weights were folded through Cast


def test_unsupported_op_is_a_one_line_typed_error() -> None:
    model = _graph([helper.make_node("Einsum", ["x", "x"], ["y"], equation="ij,jk->ik")], [], [2, 2], ["y"])
    with pytest.raises(ConversionError) as info:
        onnx_to_torch(model)
    assert "Einsum" in str(info.value) and "\n" not in str(info.value)


def test_data_dependent_shape_is_a_typed_error() -> None:
    shape_in = helper.make_tensor_value_info("s", TensorProto.INT64, [2])
    g = helper.make_graph([helper.make_node("Reshape", ["x", "s"], ["y"])], "t",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2]), shape_in],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    module = onnx_to_torch(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    with pytest.raises(ConversionError, match="constant input"):
        module(torch.zeros(2, 2), torch.tensor([4, 1]))
