"""OpenVINO backend: an IR (.xml + .bin) or an ONNX file on the CPU plugin.

On CPUs with bf16 units OpenVINO computes in bf16 unless told otherwise, so the inference
precision hint is always set explicitly (f32 when nothing is asked), and `precision_used` reports
what the compiled model's compute layers run (their runtime precisions in the executable graph),
not what was asked for: on a CPU without fp16 arithmetic an f16 hint runs bf16 or f32.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.base import Runtime, RuntimeOptions, TensorSpec, first_line
from runtimes.errors import HardwareUnavailableError, ModelLoadError
from runtimes.precision import LayerTally, Precision, tally
from runtimes.registry import import_engine
from runtimes.threads import resolve_threads

#: our precision -> OpenVINO INFERENCE_PRECISION_HINT (quantized models keep their float ops in f32)
PRECISION_HINTS = {Precision.FP32: "f32", Precision.BF16: "bf16", Precision.FP16: "f16",
                   Precision.INT8: "f32", Precision.MIXED: "f32"}
#: runtime precision of an executable-graph layer -> ours (i8/u8: a quantized layer)
_RUNTIME_NAMES = {"f32": Precision.FP32, "bf16": Precision.BF16, "f16": Precision.FP16}
_QUANTIZED = ("i8", "u8", "i4", "u4")
#: executable-graph layer types that carry the arithmetic
_COMPUTE = frozenset({"Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul"})
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
        self._props = _rt_props(self._model)
        self._tally = runtime_tally(self._compiled)
        self._precision = self._tally.precision
        self._check_precision(_refusal(self.options.precision, self._precision))

    def compile_config(self) -> dict[str, Any]:
        """The properties passed to `compile_model` (precision hint always explicit)."""
        precision = self.options.precision or Precision.FP32
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
    def precision_used(self) -> Precision:
        """What the compiled model's compute layers run (see `runtime_precision`)."""
        return self._precision

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


def _refusal(asked: Precision | None, used: Precision) -> str:
    """Why OpenVINO does not run `asked` here (the text of a PrecisionUnsupportedError)."""
    if asked in (Precision.INT8, Precision.MIXED):
        return "int8 needs a quantized IR (this one has no quantized compute layers)"
    if asked is Precision.FP16:
        return f"this CPU has no fp16 arithmetic, so OpenVINO's f16 hint runs {used} here"
    if asked is not None and used in (Precision.INT8, Precision.MIXED):
        return "the IR is quantized; it runs as it is (ask for int8 or nothing)"
    return f"OpenVINO computes this model in {used} on this CPU"


def runtime_precision(compiled: Any) -> Precision:
    """The precision of `runtime_tally(compiled)`."""
    return runtime_tally(compiled).precision


def runtime_tally(compiled: Any) -> LayerTally:
    """The precision of a compiled model from its executable graph: what each compute layer takes its
    activations in (int8 when all are quantized, mixed when some are or when float kinds differ).

    Not the layer's "runtimePrecision" alone: for an IR with fp16-compressed weights under an f32 hint it
    says f16 (the weights) while activations and outputs are f32, i.e. the layer computes in f32."""
    return tally(_layer_precision(op) for op in compiled.get_runtime_model().get_ops() if _is_compute(op))


def _is_compute(op: Any) -> bool:
    info = op.get_rt_info()  # an RTMap: `in` and [] only
    return "layerType" in info and _rt_str(info["layerType"]) in _COMPUTE


def _layer_precision(op: Any) -> Precision:
    info = op.get_rt_info()
    runtime = _rt_str(info["runtimePrecision"]) if "runtimePrecision" in info else ""
    activation = op.input(0).get_element_type().get_type_name() if op.get_input_size() else runtime
    if runtime in _QUANTIZED or activation in _QUANTIZED:
        return Precision.INT8
    return _RUNTIME_NAMES.get(activation, Precision.UNKNOWN)


def _rt_str(value: Any) -> str:
    return str(value.astype(str)) if hasattr(value, "astype") else str(value)


def _spec(port: Any) -> TensorSpec:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    try:
        name = port.get_any_name()
    except RuntimeError:  # unnamed port
        name = port.get_node().get_friendly_name()
    return TensorSpec(name, shape, np.dtype(port.get_element_type().to_dtype()).name)

