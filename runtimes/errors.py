"""Typed errors, in the bottom layer (runtimes); edge_sdk re-exports them for apps. The CLI turns every
EdgebenchError into one line and exit code 2."""
from __future__ import annotations


class EdgebenchError(Exception):
    """Base class for errors a user can fix (bad input, missing package, ...)."""


class ModelLoadError(EdgebenchError):
    """A model file is missing, truncated, corrupt or not a format we read."""


class ConversionError(ModelLoadError):
    """A model cannot be converted to a target (an op or attribute the converter does not support)."""


class BackendUnavailableError(EdgebenchError):
    """A backend's Python package (or its hardware) is not present on this host."""

    def __init__(self, backend: str, package: str, extra: str | None, reason: str = "") -> None:
        self.backend, self.package, self.extra = backend, package, extra
        hint = f"; install it with: pip install 'edgebench[{extra}]'" if extra else ""
        why = f" ({reason})" if reason else ""
        super().__init__(f"backend '{backend}' needs the Python package '{package}'{why}{hint}")


class HardwareUnavailableError(EdgebenchError):
    """The backend is installed but the device it drives (GPU, NPU, ...) is absent."""


class BackendNotImplementedError(EdgebenchError):
    """The backend is known but this version of edgebench does not implement it yet."""


class InputError(EdgebenchError):
    """An input tensor or frame has the wrong rank, shape or dtype."""


class ImageReadError(EdgebenchError):
    """An image file cannot be read or decoded."""


class DatasetError(EdgebenchError):
    """A data set description or its labels are malformed."""


class ProfileError(EdgebenchError):
    """A device profile is unknown or does not follow the schema."""


class LayoutError(EdgebenchError):
    """A model's output does not match any detection head layout we decode."""


class ReportError(EdgebenchError):
    """A report or detections file cannot be read or written."""


class RewriteError(EdgebenchError):
    """An ONNX graph rewrite is unknown, or left a graph that does not check."""


class CalibrationError(EdgebenchError):
    """INT8 calibration cannot be done as asked (no images, images that overlap the evaluation set, ...)."""
