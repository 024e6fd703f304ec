"""Runtime interface, capability table and backends. Importing this package imports no engine."""
from runtimes.base import Runtime, RuntimeOptions, TensorSpec
from runtimes.capabilities import BACKENDS, Capability
from runtimes.precision import Precision
from runtimes.registry import availability, backend_for_path, load

__all__ = [
    "BACKENDS",
    "Capability",
    "Precision",
    "Runtime",
    "RuntimeOptions",
    "TensorSpec",
    "availability",
    "backend_for_path",
    "load",
]
