"""The typed errors, re-exported for apps (they live in runtimes.errors, the bottom layer)."""
from runtimes.errors import (
    BackendNotImplementedError,
    BackendUnavailableError,
    CalibrationError,
    ConversionError,
    DatasetError,
    EdgebenchError,
    HardwareUnavailableError,
    ImageReadError,
    InputError,
    LayoutError,
    ModelLoadError,
    ProfileError,
    ReportError,
    RewriteError,
)

__all__ = [
    "BackendNotImplementedError",
    "BackendUnavailableError",
    "CalibrationError",
    "ConversionError",
    "DatasetError",
    "EdgebenchError",
    "HardwareUnavailableError",
    "ImageReadError",
    "InputError",
    "LayoutError",
    "ModelLoadError",
    "ProfileError",
    "ReportError",
    "RewriteError",
]
