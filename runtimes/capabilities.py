"""The backend capability table: one typed record per backend, read by every other layer.

The registry (load, availability), bench's artifact planning, `edgebench export`'s choices and
dispatch, model-size counting, `edgebench env` and the benchmarks all read BACKENDS; none repeats
a fact that is here. Adding a backend = one `Capability` (here, or `register` at run time) + its
runtime module + its converter module (see docs/architecture.md).
"""
from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtimes.errors import EdgebenchError
from runtimes.precision import Precision

F32, F16, B16, I8, MIX = Precision.FP32, Precision.FP16, Precision.BF16, Precision.INT8, Precision.MIXED

#: A converter entry point: (ONNX source, output path, precision) -> the artifact written.
Converter = Callable[[Path, Path, Precision], Path]


@dataclass(frozen=True)
class Capability:
    """What one backend is, reads, writes and needs."""

    name: str
    import_name: str  # the engine's top-level module (found, never imported, by the availability check)
    pip_package: str
    extra: str | None  # the edgebench pip extra that installs the engine (None: core install)
    suffixes: tuple[str, ...]  # artifact suffixes; the first is the one a converter writes
    beside: tuple[str, ...] = ()  # files kept beside the artifact, as suffixes replacing its own
    runtime: str | None = None  # "module:Class" of the Runtime subclass; None = not implemented yet
    converter: str | None = None  # "module:function" (a Converter) from ONNX; None = no converter
    runs: tuple[Precision, ...] = (F32,)  # precisions the engine can run (what a device profile may ask)
    writes: tuple[Precision, ...] = ()  # precisions our converter bakes into the artifact
    hints: tuple[Precision, ...] = ()  # precisions given at load time only (the file is the same)
    hardware: str | None = None  # "nvidia-gpu", "apple": checked by edge_sdk.host
    devices: tuple[str, ...] = ()  # device kinds it targets (documentation and `edgebench env`)
    export_extra: str | None = None  # the extra that installs the converter's own tools, when not `extra`
    quantizer: str | None = None  # "module:function" (a calibration Quantizer): INT8 PTQ by the engine's own tool
    quantize_extra: str | None = None  # the extra that installs that quantizer, when not `extra`
    quantize_import: str | None = None  # the quantizer's own top-level module, when not the engine's
    quantize_probe: str | None = None  # "module:function" -> why the quantizer cannot run here (None: it can),
    #                                    for a quantizer that lives outside this interpreter
    inspector: str | None = None  # "module:function" (path -> dict of facts): checks an artifact without running
    #                               it, for hosts that convert but cannot run it (Core ML off macOS)

    @property
    def suffix(self) -> str:
        """The suffix a converter writes."""
        return self.suffixes[0]

    @property
    def produced(self) -> tuple[Precision, ...]:
        """The precisions this version can give an artifact: written by the converter, made by the
        quantizer (int8) or hinted at load."""
        return tuple(dict.fromkeys(self.writes + self.quantized + self.hints))

    @property
    def quantized(self) -> tuple[Precision, ...]:
        """(INT8,) when the backend has a PTQ quantizer, else ()."""
        return (I8,) if self.quantizer else ()

    def load_runtime_class(self) -> type[Any]:
        """Import the Runtime subclass (the engine itself is imported later, when a model loads)."""
        if self.runtime is None:
            raise EdgebenchError(f"backend '{self.name}' has no runtime in this version")
        return _resolve(self.runtime)  # type: ignore[no-any-return]

    def quantizer_missing(self) -> str | None:
        """Why this host cannot quantize for the backend (its quantizer package is not installed), or None."""
        if self.quantizer is None:
            return f"this version has no INT8 quantizer for {self.name}"
        if self.quantize_probe is not None:
            return _resolve(self.quantize_probe)()  # type: ignore[no-any-return]
        module = self.quantize_import or self.import_name
        if importlib.util.find_spec(module) is None:
            extra = self.quantize_extra or self.extra
            return (f"its quantizer needs the Python package '{module}'"
                    + (f" (pip install 'edgebench[{extra}]')" if extra else ""))
        return None

    def load_quantizer(self) -> Any:
        """Import the quantizer entry point (a calibration.request.Quantizer)."""
        if self.quantizer is None:
            raise EdgebenchError(f"backend '{self.name}' has no INT8 quantizer in this version")
        return _resolve(self.quantizer)

    def load_inspector(self) -> Callable[[Path], dict[str, Any]]:
        """Import the inspector entry point (path -> facts of the artifact, without running it)."""
        if self.inspector is None:
            raise EdgebenchError(f"backend '{self.name}' has no artifact inspector in this version")
        return _resolve(self.inspector)  # type: ignore[no-any-return]

    def load_converter(self) -> Converter:
        """Import the converter entry point."""
        if self.converter is None:
            raise EdgebenchError(f"backend '{self.name}' has no converter in this version")
        return _resolve(self.converter)  # type: ignore[no-any-return]


def _resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


_BUILTIN = (
    Capability("onnxruntime", "onnxruntime", "onnxruntime", None, (".onnx",),
               runtime="runtimes.ort_backend:OnnxRuntime", runs=(F32, F16, I8, MIX), writes=(F32,),
               quantizer="calibration.ort:quantize",
               devices=("x86_64 CPU", "arm64 CPU", "NVIDIA GPU (CUDA/TensorRT EPs)")),
    Capability("openvino", "openvino", "openvino", "openvino", (".xml",), beside=(".bin",),
               runtime="runtimes.openvino_backend:OpenVinoRuntime", converter="converters.openvino:to_openvino",
               runs=(F32, F16, B16, I8, MIX), writes=(F32, F16, B16), hints=(F32, F16, B16),
               devices=("x86_64 CPU", "Intel GPU", "Intel NPU"),
               quantizer="calibration.openvino:quantize", quantize_extra="openvino-int8", quantize_import="nncf"),
    Capability("ncnn", "ncnn", "ncnn", "ncnn", (".param",), beside=(".bin",),
               runtime="runtimes.ncnn_backend:NcnnRuntime", converter="converters.ncnn:to_ncnn",
               runs=(F32, F16, B16, I8), writes=(F32, F16, B16), hints=(F32, F16, B16),
               devices=("arm64 CPU (Raspberry Pi)", "armv7 CPU", "x86_64 CPU"),
               export_extra="ncnn-export", quantizer="calibration.ncnn:quantize"),
    Capability("tflite", "ai_edge_litert", "ai-edge-litert", "tflite", (".tflite",),
               runtime="runtimes.tflite_backend:TfliteRuntime", converter="converters.tflite:to_tflite",
               runs=(F32, F16, I8), writes=(F32, F16),
               devices=("Android arm64 (XNNPACK)", "arm64 CPU", "x86_64 CPU"),
               export_extra="tflite-export", quantizer="calibration.tflite:quantize",
               quantize_extra="tflite-export", quantize_import="ai_edge_quantizer"),
    Capability("tensorrt", "tensorrt", "tensorrt", "tensorrt", (".engine", ".plan"),
               runtime="runtimes.tensorrt_backend:TensorrtRuntime",
               converter="converters.tensorrt:to_tensorrt",  # built on the device; int8 from a Q/DQ .onnx
               runs=(F32, F16, I8, MIX), writes=(F32, F16, I8), hardware="nvidia-gpu",
               devices=("Jetson Orin", "NVIDIA GPU"),
               quantizer="calibration.modelopt:quantize",  # ModelOpt in its own interpreter: a Q/DQ .onnx
               quantize_probe="calibration.modelopt:missing"),
    Capability("coreml", "coremltools", "coremltools", "coreml", (".mlpackage", ".mlmodel"),
               runtime="runtimes.coreml_backend:CoremlRuntime", converter="converters.coreml:to_coreml",
               inspector="converters.coreml:inspect_mlpackage",
               runs=(F32, F16, I8), writes=(F32, F16), hardware="apple", export_extra="coreml-export",
               devices=("iPhone / Apple silicon (ANE, GPU, CPU)",)),
    Capability("torch", "torch", "torch", "train", (".ckpt", ".pt", ".pt2"),
               runtime="runtimes.torch_backend:TorchRuntime", runs=(F32,),
               devices=("training host (CPU reference)", "NVIDIA GPU (CUDA)")),
)

#: name -> capability, in the order `edgebench env` lists them
BACKENDS: dict[str, Capability] = {c.name: c for c in _BUILTIN}


def register(capability: Capability) -> None:
    """Add (or replace) a backend at run time: a plugin, or a test's fake backend."""
    BACKENDS[capability.name] = capability


def unregister(name: str) -> None:
    """Remove a backend added by `register` (tests)."""
    BACKENDS.pop(name, None)


def get(name: str) -> Capability:
    """The capability of a named backend, or an error listing the known names."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise EdgebenchError(f"unknown backend '{name}' (known: {', '.join(BACKENDS)})") from None


def converter_targets() -> tuple[str, ...]:
    """Backends an ONNX model can be converted to, in table order."""
    return tuple(c.name for c in BACKENDS.values() if c.converter)


def for_suffix(suffix: str) -> Capability | None:
    """The backend that reads artifacts with this suffix, or None."""
    suffix = suffix.lower()
    return next((c for c in BACKENDS.values() if suffix in c.suffixes), None)


def files_beside(path: str | Path) -> list[Path]:
    """The files a two-file artifact keeps beside it (OpenVINO/ncnn `<stem>.bin`); existence not checked."""
    p = Path(path)
    cap = for_suffix(p.suffix)
    return [p.with_suffix(s) for s in cap.beside] if cap else []


def all_written_precisions() -> tuple[Precision, ...]:
    """Every precision some converter writes or some quantizer makes (export's --precision choices)."""
    seen: dict[Precision, None] = {}
    for cap in BACKENDS.values():
        seen.update(dict.fromkeys(cap.writes + cap.quantized))
    return tuple(seen)


def quantizer_targets() -> tuple[str, ...]:
    """Backends with an INT8 quantizer, in table order."""
    return tuple(c.name for c in BACKENDS.values() if c.quantizer)
