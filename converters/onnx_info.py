"""Shared by the converters: reading an ONNX file, checking conversion arguments, the converted model's metadata."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from edge_sdk.meta import ModelMeta
from runtimes.capabilities import BACKENDS, files_beside
from runtimes.capabilities import get as capability
from runtimes.errors import EdgebenchError, ModelLoadError
from runtimes.precision import Precision, PrecisionUnsupportedError


def dims(value_info: Any) -> list[Any]:
    """A tensor's shape: ints, or None for dynamic dims."""
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in value_info.type.tensor_type.shape.dim]


def onnx_io(onnx_path: str | Path) -> tuple[dict[str, str], list[list[Any]], list[list[Any]]]:
    """(metadata_props, the shapes of the real inputs (initializers excluded), the output shapes)."""
    try:
        proto = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for corrupt files
        raise ModelLoadError(f"cannot read ONNX model '{onnx_path}': {exc}") from exc
    weights = {init.name for init in proto.graph.initializer}
    inputs = [dims(i) for i in proto.graph.input if i.name not in weights]
    return {p.key: p.value for p in proto.metadata_props}, inputs, [dims(o) for o in proto.graph.output]


def check_conversion(src: Path, out: Path, precision: str, backend: str, note: str = "") -> None:
    """One-line errors for a missing or non-ONNX source, a wrong output suffix, or a precision the backend's
    converter does not write (runtimes.capabilities)."""
    cap = capability(backend)
    target, suffix = backend, cap.suffix
    if not src.is_file():
        raise ModelLoadError(f"model not found: {src}")
    if src.suffix.lower() != ".onnx":
        raise ModelLoadError(f"{target} conversion takes an .onnx file, got '{src.name}'")
    if out.suffix.lower() != suffix:
        raise EdgebenchError(f"{target} output must be a {suffix} path{note}, got '{out}'")
    asked = Precision.parse(precision)
    if asked not in cap.writes:
        raise PrecisionUnsupportedError(f"the {backend} converter writes {', '.join(cap.writes)}, not {asked}")
    _check_weights_owner(out)


def _check_weights_owner(out: Path) -> None:
    """Refuse an output whose `.bin` would overwrite the weights of another format's model beside it."""
    for weights in files_beside(out):
        if not weights.exists():
            continue
        for cap in BACKENDS.values():
            other = out.with_suffix(cap.suffix)
            if weights.suffix in cap.beside and cap.suffix != out.suffix.lower() and other.is_file():
                raise EdgebenchError(f"{weights} holds the weights of the {cap.name} model {other.name}; "
                                     f"writing {out.name} would overwrite them: choose another name")


def converted_props(props: dict[str, str], input_shape: list[Any], precision: str, source: str,
                    target: str) -> dict[str, str]:
    """The source's props plus ours (ModelMeta JSON and Ultralytics-style keys) for the converted model."""
    meta = ModelMeta.from_props(props, input_shape)
    meta.precision = precision
    meta.extra = {**meta.extra, "converted_from": source, "target": target,
                  "weights_storage": "fp16" if precision == "fp16" else "fp32"}
    ours = {k: v for k, v in meta.to_props().items() if v}
    return {**props, **ours}
