"""Which artifact serves a (backend, precision) configuration, or why none can yet."""
from __future__ import annotations

from pathlib import Path

from runtimes.registry import backend_for_path


class ConfigSkipped(Exception):
    """A configuration that cannot run on this host or with this model; the row says why."""


def resolve_artifact(model: Path, backend: str, precision: str, model_precision: str = "fp32") -> Path:
    """The artifact to load for `backend` at `precision`; raise ConfigSkipped with the reason otherwise.

    Today this is the model itself when its format and precision already fit; conversions
    (ONNX -> other engines, fp16, INT8 calibration) come from `converters/` and `calibration/`.
    """
    native = backend_for_path(model)
    if native != backend:
        raise ConfigSkipped(f"model is a {native} artifact; converting it to {backend} needs converters/ "
                            "(not in this version)")
    if precision != model_precision:
        what = "INT8 calibration (calibration/)" if precision == "int8" else f"a {precision} conversion"
        raise ConfigSkipped(f"{backend} {precision} needs {what}, not in this version; "
                            f"the model is {model_precision}")
    return model
