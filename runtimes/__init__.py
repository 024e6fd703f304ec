"""Runtime interface and backends. Importing this package imports no engine."""
from runtimes.base import Runtime, RuntimeOptions, TensorSpec
from runtimes.registry import BACKENDS, BackendSpec, availability, backend_for_path, load

__all__ = [
    "BACKENDS",
    "BackendSpec",
    "Runtime",
    "RuntimeOptions",
    "TensorSpec",
    "availability",
    "backend_for_path",
    "load",
]
