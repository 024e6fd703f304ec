"""ONNX Runtime backend: CPU EP by default, CUDA/TensorRT EPs when present."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from runtimes.base import Runtime, RuntimeOptions, TensorSpec
from runtimes.errors import HardwareUnavailableError, ModelLoadError
from runtimes.onnx_precision import onnx_tally
from runtimes.precision import Precision
from runtimes.threads import resolve_threads

_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}
_OPT_LEVELS = ("disable", "basic", "extended", "all")
_GPU_EPS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class OnnxRuntime(Runtime):
    """An ONNX model on onnxruntime. Options.extra: inter_op_threads, graph_optimization, providers."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, options: RuntimeOptions | None = None) -> None:
        super().__init__(path, options)
        import onnxruntime as ort

        self._ort = ort
        so = self._session_options(ort)
        providers = self._providers(ort)
        try:
            self._sess = ort.InferenceSession(str(self.path), sess_options=so, providers=providers)
        except Exception as exc:  # ORT raises its own untyped errors for bad files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"cannot load ONNX model '{self.path}': {first}") from exc
        self._inputs = [_spec(i) for i in self._sess.get_inputs()]
        self._outputs = [_spec(o) for o in self._sess.get_outputs()]
        self._in_names = [s.name for s in self._inputs]
        self._tally = onnx_tally(self.path, requantized_only=True)
        self._precision = self._tally.precision
        self._check_precision("ONNX Runtime runs the graph as it is stored; export or quantize the model "
                              "at the precision you want")

    def _session_options(self, ort: Any) -> Any:
        extra = self.options.extra
        so = ort.SessionOptions()
        so.intra_op_num_threads = resolve_threads(self.options.threads)
        so.inter_op_num_threads = int(extra.get("inter_op_threads", 1))
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        level = str(extra.get("graph_optimization", "all"))
        if level not in _OPT_LEVELS:
            raise ModelLoadError(f"graph_optimization must be one of {_OPT_LEVELS}, got '{level}'")
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
        # Spinning worker threads collapse on a busy small machine: wait passively.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        so.log_severity_level = 3
        return so

    def _providers(self, ort: Any) -> list[str]:
        explicit = self.options.extra.get("providers")
        if explicit:
            return list(explicit)
        available = ort.get_available_providers()
        device = self.options.device
        gpu = [p for p in _GPU_EPS if p in available]
        if device == "gpu" and not gpu:
            raise HardwareUnavailableError("device 'gpu' asked for, but onnxruntime has no CUDA/TensorRT provider")
        if device == "cpu":
            return ["CPUExecutionProvider"]
        return gpu + ["CPUExecutionProvider"]

    @property
    def providers(self) -> list[str]:
        """Execution providers the session actually uses."""
        return list(self._sess.get_providers())

    def _run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        feed = {name: arr for name, arr in zip(self._in_names, inputs, strict=False)}
        return list(self._sess.run(None, feed))

    def metadata(self) -> dict[str, str]:
        props = dict(self._sess.get_modelmeta().custom_metadata_map)
        return {**super().metadata(), **props}

    @property
    def precision_used(self) -> Precision:
        """From the graph: the weights' float type, and Q/DQ or integer ops (runtimes.onnx_precision)."""
        return self._precision

    def engine_versions(self) -> dict[str, str]:
        return {"onnxruntime": self._ort.__version__}

    def close(self) -> None:
        self._sess = None


def _spec(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else (d or None) for d in arg.shape)
    return TensorSpec(arg.name, shape, _ORT_DTYPES.get(arg.type, arg.type))
