"""Named backends with a light availability check that never imports the engine."""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from runtimes.base import Runtime, RuntimeOptions
from runtimes.errors import (
    BackendNotImplementedError,
    BackendUnavailableError,
    EdgebenchError,
    ModelLoadError,
)


@dataclass(frozen=True)
class BackendSpec:
    """How to find, check and load one backend."""

    name: str
    import_name: str  # top-level module the engine installs
    pip_package: str
    extra: str | None
    suffixes: tuple[str, ...]
    module: str | None = None  # runtimes.<file> holding the Runtime subclass; None = not written yet
    class_name: str = ""
    hardware: str | None = None  # e.g. "nvidia-gpu", "apple" - checked by edge_sdk.host
    precisions: tuple[str, ...] = ("fp32",)


BACKENDS: dict[str, BackendSpec] = {
    s.name: s
    for s in (
        BackendSpec("onnxruntime", "onnxruntime", "onnxruntime", None, (".onnx",),
                    "runtimes.ort_backend", "OnnxRuntime", precisions=("fp32", "fp16", "int8")),
        BackendSpec("openvino", "openvino", "openvino", "openvino", (".xml",),
                    "runtimes.openvino_backend", "OpenVinoRuntime",
                    precisions=("fp32", "bf16", "fp16", "int8")),
        BackendSpec("ncnn", "ncnn", "ncnn", "ncnn", (".param",),
                    "runtimes.ncnn_backend", "NcnnRuntime", precisions=("fp32", "fp16", "bf16", "int8")),
        BackendSpec("tflite", "ai_edge_litert", "ai-edge-litert", "tflite", (".tflite",),
                    "runtimes.tflite_backend", "TfliteRuntime", precisions=("fp32", "fp16", "int8")),
        BackendSpec("tensorrt", "tensorrt", "tensorrt", "tensorrt", (".engine", ".plan"),
                    hardware="nvidia-gpu", precisions=("fp32", "fp16", "int8")),
        BackendSpec("coreml", "coremltools", "coremltools", "coreml", (".mlpackage", ".mlmodel"),
                    hardware="apple", precisions=("fp32", "fp16", "int8")),
        BackendSpec("torch", "torch", "torch", "train", (".pt", ".ckpt"),
                    precisions=("fp32",)),
    )
}


def import_engine(name: str) -> ModuleType:
    """Import a backend's engine package (inside the backend, at load time), or raise
    BackendUnavailableError naming the package and the pip extra."""
    spec = get_spec(name)
    try:
        return importlib.import_module(spec.import_name)
    except ImportError as exc:
        raise BackendUnavailableError(name, spec.pip_package, spec.extra, f"import failed: {exc}") from exc


def get_spec(name: str) -> BackendSpec:
    """The spec of a named backend, or an error listing the known names."""
    try:
        return BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise EdgebenchError(f"unknown backend '{name}' (known: {known})") from None


def is_installed(name: str) -> bool:
    """True when the backend's engine package can be found (not imported)."""
    return importlib.util.find_spec(get_spec(name).import_name) is not None


def availability(name: str) -> tuple[bool, str]:
    """(usable, reason) without importing the engine; hardware is checked by the caller."""
    spec = get_spec(name)
    if spec.module is None:
        return False, "not implemented in this version of edgebench"
    if not is_installed(name):
        hint = f" (pip install 'edgebench[{spec.extra}]')" if spec.extra else ""
        return False, f"package '{spec.pip_package}' not installed{hint}"
    return True, "ok"


def backend_for_path(path: str | Path) -> str:
    """Infer the backend from an artifact's suffix."""
    suffix = Path(path).suffix.lower()
    for spec in BACKENDS.values():
        if suffix in spec.suffixes:
            return spec.name
    raise ModelLoadError(f"cannot tell the backend for '{path}': unknown suffix '{suffix}'")


def runtime_class(name: str) -> type[Runtime]:
    """Import and return the Runtime subclass of a backend, with typed errors."""
    spec = get_spec(name)
    if spec.module is None:
        raise BackendNotImplementedError(f"backend '{name}' is not implemented in this version of edgebench")
    if not is_installed(name):
        raise BackendUnavailableError(name, spec.pip_package, spec.extra)
    module = importlib.import_module(spec.module)
    return getattr(module, spec.class_name)


def load(path: str | Path, backend: str | None = None, options: RuntimeOptions | None = None,
         **kwargs: Any) -> Runtime:
    """Open an artifact on a backend (inferred from the suffix when not given)."""
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"model not found: {p}")
    name = backend or backend_for_path(p)
    opts = options or RuntimeOptions(**kwargs)
    return runtime_class(name)(p, opts)
