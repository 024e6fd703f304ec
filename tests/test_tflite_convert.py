"""converters.tflite on a small YOLO-like graph: NHWC input, outputs equal to ONNX Runtime, sidecar, fp16 storage."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from converters.tflite import CONVERT_EXTRA, to_tflite
from runtimes.base import sidecar_path
from runtimes.errors import BackendUnavailableError, EdgebenchError

pytest.importorskip("litert_torch",
                    reason="converting to TFLite needs litert-torch (pip install 'edgebench[tflite-export]')")
pytest.importorskip("ai_edge_litert", reason="running TFLite needs ai-edge-litert (pip install 'edgebench[tflite]')")

PROPS = {"names": "{0: 'a', 1: 'b'}", "imgsz": "[64, 64]", "stride": "32", "task": "detect"}


def _small_detector(path: Path) -> Path:
    """images [1,3,64,64] -> conv/SiLU -> stride-2 conv -> nearest 2x upsample -> concat -> 1x1 head [1, 6, 1024]."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, s).astype(np.float32), n) for n, s in
             (("w1", (8, 3, 3, 3)), ("b1", (8,)), ("w2", (8, 8, 3, 3)), ("w3", (6, 16, 1, 1)))]
    inits += [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
              numpy_helper.from_array(np.array([1, 6, -1], np.int64), "flat")]
    nodes = [helper.make_node("Conv", ["images", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Sigmoid", ["c1"], ["s1"]), helper.make_node("Mul", ["c1", "s1"], ["a1"]),
             helper.make_node("Conv", ["a1", "w2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Resize", ["c2", "", "scales"], ["up"], mode="nearest"),
             helper.make_node("Concat", ["a1", "up"], ["cat"], axis=1),
             helper.make_node("Conv", ["cat", "w3"], ["c3"]),
             helper.make_node("Reshape", ["c3", "flat"], ["output0"])]
    graph = helper.make_graph(nodes, "small",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 1024])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, PROPS)
    onnx.save(model, str(path))
    return path


def _tflite_run(path: Path, x_nchw: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)))
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("tflite")
    src = _small_detector(folder / "small.onnx")
    return src, to_tflite(src, folder / "fp32.tflite"), to_tflite(src, folder / "fp16.tflite", "fp16")


def test_fp32_matches_onnxruntime_with_nhwc_input(converted: tuple[Path, Path, Path]) -> None:
    import onnxruntime as ort

    src, fp32, _ = converted
    x = np.random.default_rng(1).random((1, 3, 64, 64), dtype=np.float32)
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    got = _tflite_run(fp32, x)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)


def test_sidecar_records_layout_and_metadata(converted: tuple[Path, Path, Path]) -> None:
    _, fp32, _ = converted
    side = json.loads(sidecar_path(fp32).read_text(encoding="utf-8"))
    assert side["input_layout"] == "NHWC" and side["tflite_input_shape"] == [1, 64, 64, 3]
    assert side["input_shape"] == [1, 3, 64, 64] and side["output_shapes"] == [[1, 6, 1024]]
    assert side["format"] == "tflite" and side["precision"] == "fp32" and side["weights_storage"] == "fp32"
    assert side["names"] == PROPS["names"] and side["imgsz"] == PROPS["imgsz"] and side["stride"] == "32"
    assert json.loads(side["edgebench"])["extra"]["target"] == "tflite"


def test_fp16_stores_half_weights_and_stays_close(converted: tuple[Path, Path, Path]) -> None:
    _, fp32, fp16 = converted
    side = json.loads(sidecar_path(fp16).read_text(encoding="utf-8"))
    assert side["precision"] == "fp16" and side["weights_storage"] == "fp16"
    assert fp16.stat().st_size < fp32.stat().st_size
    x = np.random.default_rng(2).random((1, 3, 64, 64), dtype=np.float32)
    a, b = _tflite_run(fp32, x), _tflite_run(fp16, x)
    assert not np.array_equal(a, b)  # the weights really were rounded
    np.testing.assert_allclose(b, a, atol=2e-2 * np.abs(a).max())


def test_bad_arguments_are_typed_errors(converted: tuple[Path, Path, Path], tmp_path: Path) -> None:
    src, _, _ = converted
    with pytest.raises(EdgebenchError, match="bf16"):
        to_tflite(src, tmp_path / "m.tflite", "bf16")
    with pytest.raises(EdgebenchError, match=r"\.tflite"):
        to_tflite(src, tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


def test_missing_litert_torch_names_the_extra(converted: tuple[Path, Path, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake(name: str, *args: object) -> object:
        if name == "litert_torch":
            raise ImportError("No module named 'litert_torch'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(BackendUnavailableError, match=CONVERT_EXTRA):
        to_tflite(converted[0], tmp_path / "m.tflite")
