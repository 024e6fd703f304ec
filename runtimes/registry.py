"""Finding, checking and loading backends, from the capability table (runtimes.capabilities)."""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from runtimes.base import Runtime, RuntimeOptions
from runtimes.capabilities import BACKENDS, Capability, for_suffix, get
from runtimes.errors import BackendNotImplementedError, BackendUnavailableError, ModelLoadError

__all__ = ["BACKENDS", "Capability", "availability", "backend_for_path", "get", "import_engine", "is_installed",
           "load", "runtime_class"]


def import_engine(name: str) -> ModuleType:
    """Import a backend's engine package (inside the backend, at load time), or raise
    BackendUnavailableError naming the package and the pip extra."""
    cap = get(name)
    try:
        return importlib.import_module(cap.import_name)
    except ImportError as exc:
        raise BackendUnavailableError(name, cap.pip_package, cap.extra, f"import failed: {exc}") from exc


def is_installed(name: str) -> bool:
    """True when the backend's engine package can be found (not imported)."""
    return importlib.util.find_spec(get(name).import_name) is not None


def availability(name: str) -> tuple[bool, str]:
    """(usable, reason) without importing the engine; hardware is checked by the caller."""
    cap = get(name)
    if cap.runtime is None:
        return False, "not implemented in this version of edgebench"
    if not is_installed(name):
        hint = f" (pip install 'edgebench[{cap.extra}]')" if cap.extra else ""
        return False, f"package '{cap.pip_package}' not installed{hint}"
    return True, "ok"


def backend_for_path(path: str | Path) -> str:
    """Infer the backend from an artifact's suffix."""
    cap = for_suffix(Path(path).suffix)
    if cap is None:
        raise ModelLoadError(f"cannot tell the backend for '{path}': unknown suffix '{Path(path).suffix.lower()}'")
    return cap.name


def runtime_class(name: str) -> type[Runtime]:
    """Import and return the Runtime subclass of a backend, with typed errors."""
    cap: Capability = get(name)
    if cap.runtime is None:
        raise BackendNotImplementedError(f"backend '{name}' is not implemented in this version of edgebench")
    if not is_installed(name):
        raise BackendUnavailableError(name, cap.pip_package, cap.extra)
    cls: type[Runtime] = cap.load_runtime_class()
    return cls


def load(path: str | Path, backend: str | None = None, options: RuntimeOptions | None = None,
         **kwargs: Any) -> Runtime:
    """Open an artifact on a backend (inferred from the suffix when not given)."""
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"model not found: {p}")
    name = backend or backend_for_path(p)
    opts = options or RuntimeOptions(**kwargs)
    return runtime_class(name)(p, opts)
