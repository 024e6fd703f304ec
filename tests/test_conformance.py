"""Every installed backend against ONNX Runtime fp32 on the bundled model (template: tests/conformance.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
from conformance import BackendConformance


@pytest.fixture(scope="session")
def default_onnx() -> Path:
    from bench.sweep.defaults import default_model

    return default_model()  # ships with the repo: missing, it is an error, not a skip


def _openvino(onnx_path: Path, out: Path) -> Path:
    from converters.openvino import to_openvino

    return to_openvino(onnx_path, out / "model.xml")


def _ncnn(onnx_path: Path, out: Path) -> Path:
    from converters.ncnn import pnnx_binary, to_ncnn

    if pnnx_binary() is None:
        pytest.skip("converting to ncnn needs the pnnx binary (pip install 'edgebench[ncnn-export]')")
    return to_ncnn(onnx_path, out / "model.param")


def _tflite(onnx_path: Path, out: Path) -> Path:
    pytest.importorskip("litert_torch",
                        reason="converting to TFLite needs litert-torch (pip install 'edgebench[tflite-export]')")
    from converters.tflite import to_tflite

    return to_tflite(onnx_path, out / "model.tflite")


class TestOnnxRuntime(BackendConformance):
    backend = "onnxruntime"


class TestOpenVino(BackendConformance):
    backend = "openvino"
    convert = staticmethod(_openvino)


class TestNcnn(BackendConformance):
    backend = "ncnn"
    convert = staticmethod(_ncnn)


class TestTflite(BackendConformance):
    backend = "tflite"
    convert = staticmethod(_tflite)
