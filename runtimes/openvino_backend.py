"""OpenVINO backend: an IR (.xml + .bin) or an ONNX file on the CPU plugin.

On CPUs with bf16 units OpenVINO computes in bf16 unless told otherwise, so the inference
precision hint is always set explicitly, and `precision_used` reports what the compiled
model says it runs, not what was asked for.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.base import Runtime, RuntimeOptions, TensorSpec, first_line
from runtimes.errors import HardwareUnavailableError, ModelLoadError
from runtimes.registry import import_engine
from runtimes.threads import resolve_threads

#: our precision name -> OpenVINO INFERENCE_PRECISION_HINT ("int8" models keep float ops in f32)
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
#: OpenVINO element type name -> our precision name
_HINT_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}
#: IR rt_info section holding the model's metadata props (OpenVINO copies ONNX metadata_props there)
META_SECTION = "framework"
_DEVICES = {"auto": "CPU", "cpu": "CPU", "gpu": "GPU", "npu": "NPU"}


class OpenVinoRuntime(Runtime):
    """A model on OpenVINO. Options.extra: num_streams (1), performance_hint ("LATENCY"), config (dict)."""

    name = "openvino"

    def __init__(self, path: str | Path, options: RuntimeOptions | None = None) -> None:
        super().__init__(path, options)
        self._ov = ov = import_engine("openvino")
        core = ov.Core()
        self._model = _read_model(core, self.path)
        self._compiled = self._compile(core)
        self._local = threading.local()  # one infer request per calling thread
        self._inputs = [_spec(p) for p in self._model.inputs]
        self._outputs = [_spec(p) for p in self._model.outputs]
        self._quantized = any(op.get_type_name() == "FakeQuantize" for op in self._model.get_ops())
        self._props = _rt_props(self._model)
        self._inference_precision = _precision_name(self._compiled.get_property("INFERENCE_PRECISION_HINT"))

    def compile_config(self) -> dict[str, Any]:
        """The properties passed to `compile_model` (precision hint always explicit)."""
        precision = self.options.precision
        if precision not in PRECISION_HINTS:
            raise ModelLoadError(f"openvino precision must be one of {tuple(PRECISION_HINTS)}, got '{precision}'")
        extra = self.options.extra
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": str(extra.get("performance_hint", "LATENCY")),
            "INFERENCE_NUM_THREADS": resolve_threads(self.options.threads),
            "NUM_STREAMS": int(extra.get("num_streams", 1)),
            "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision],
        }
        return {**config, **dict(extra.get("config") or {})}

    def _device(self, core: Any) -> str:
        device = _DEVICES.get(self.options.device.lower(), self.options.device.upper())
        if device not in core.available_devices:
            raise HardwareUnavailableError(
                f"openvino device '{device}' not found (available: {', '.join(core.available_devices)})")
        return device

    def _compile(self, core: Any) -> Any:
        device = self._device(core)
        try:
            return core.compile_model(self._model, device, self.compile_config())
        except RuntimeError as exc:
            raise ModelLoadError(f"openvino cannot compile '{self.path}' for {device}: {first_line(exc)}") from exc

    def _run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        feed = {i: np.ascontiguousarray(a) for i, a in enumerate(inputs)}
        result = self._request().infer(feed, share_inputs=False, share_outputs=False)
        return [np.asarray(result[port]) for port in self._compiled.outputs]

    def _request(self) -> Any:
        """This thread's infer request (an InferRequest must not run two inferences at once)."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        return request

    def compiled_property(self, name: str) -> Any:
        """A property of the compiled model (e.g. "INFERENCE_NUM_THREADS", "NUM_STREAMS")."""
        return self._compiled.get_property(name)

    @property
    def inference_precision(self) -> str:
        """The float precision the compiled model reports it computes in: "fp32", "bf16" or "fp16"."""
        return self._inference_precision

    @property
    def precision_used(self) -> str:
        """The compiled model's float precision, or "int8" for a quantized IR (FakeQuantize ops)."""
        return "int8" if self._quantized else self._inference_precision

    def metadata(self) -> dict[str, str]:
        """Sidecar JSON (if any) overlaid by the props stored in the model's rt_info."""
        return {**super().metadata(), **self._props}

    def engine_versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            short = version("openvino")
        except PackageNotFoundError:
            short = self._ov.__version__
        return {"openvino": short, "openvino_build": self._ov.get_version()}

    def close(self) -> None:
        self._local = threading.local()
        self._compiled = None
        self._model = None


def _read_model(core: Any, path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix == ".xml":
        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise ModelLoadError(f"OpenVINO IR '{path}' has no weights file '{weights.name}' next to it")
    elif suffix != ".onnx":
        raise ModelLoadError(f"openvino reads .xml (IR) or .onnx files, got '{path.name}'")
    try:
        return core.read_model(str(path))
    except RuntimeError as exc:
        raise ModelLoadError(f"openvino cannot read '{path}': {first_line(exc)}") from exc


def _rt_props(model: Any) -> dict[str, str]:
    """String props of the rt_info metadata section; empty when there is none."""
    info = model.get_rt_info()
    if META_SECTION not in info:
        return {}
    section = info[META_SECTION]
    if not isinstance(section, dict):  # a plain value, not a section of props
        return {}
    return {str(k): v.astype(str) if hasattr(v, "astype") else str(v) for k, v in section.items()}


def _precision_name(hint: Any) -> str:
    """Our name for an OpenVINO element type ("f32" -> "fp32", ...)."""
    name = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    return _HINT_NAMES.get(name, name)


def _spec(port: Any) -> TensorSpec:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    try:
        name = port.get_any_name()
    except RuntimeError:  # unnamed port
        name = port.get_node().get_friendly_name()
    return TensorSpec(name, shape, np.dtype(port.get_element_type().to_dtype()).name)

