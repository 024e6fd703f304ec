"""ONNX -> OpenVINO IR (.xml + .bin) with the model's metadata in the IR's rt_info and a sidecar."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from converters.onnx_info import check_conversion, converted_props, onnx_io
from edge_sdk.atomic import write_json_atomic
from runtimes.base import sidecar_path
from runtimes.errors import BackendUnavailableError, ModelLoadError
from runtimes.openvino_backend import META_SECTION, PRECISION_HINTS
from runtimes.precision import Precision


def _import_openvino() -> Any:
    try:
        import openvino as ov
    except ImportError as exc:
        raise BackendUnavailableError("openvino", "openvino", "openvino", "needed to convert to OpenVINO IR") from exc
    return ov


def onnx_props(onnx_path: str | Path) -> tuple[dict[str, str], list[Any]]:
    """An ONNX file's metadata_props and its first input's shape (ints, or None for dynamic dims)."""
    props, inputs, _ = onnx_io(onnx_path)
    return props, inputs[0] if inputs else []


def to_openvino(onnx_path: str | Path, out_xml: str | Path, precision: str = "fp32") -> Path:
    """Convert an ONNX model to an IR at `out_xml` (+ `.bin`, + `.xml.json` sidecar); returns the .xml path.

    fp16 stores the weights as float16 (compute precision is the runtime's hint); fp32 and bf16
    keep float32 weights, and bf16 is recorded as the inference precision hint to run with.
    """
    src, out = Path(onnx_path), Path(out_xml)
    check_conversion(src, out, precision, "openvino")
    ov = _import_openvino()
    props, shape = onnx_props(src)
    try:
        model = ov.convert_model(str(src))
    except Exception as exc:  # the frontends raise several untyped errors (OpConversionFailure, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"openvino cannot convert '{src}': {first}") from exc
    for key, value in converted_props(props, shape, precision, src.name, "openvino").items():
        model.set_rt_info(value, [META_SECTION, key])
    _save_ir_atomic(ov, model, out, compress=precision == "fp16")
    write_json_atomic(sidecar_path(out), {
        "format": "openvino", "source": src.name, "precision": precision,
        "weights_storage": "fp16" if precision == "fp16" else "fp32",
        "inference_precision_hint": PRECISION_HINTS[Precision.parse(precision)],
        "openvino": ov.get_version(),
    })
    return out


def _save_ir_atomic(ov: Any, model: Any, out: Path, compress: bool) -> None:
    """Save into a temp folder beside `out`, then move the .bin and then the .xml into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.stem}.", dir=out.parent))
    try:
        staged = tmp / out.name
        ov.save_model(model, str(staged), compress_to_fp16=compress)
        os.replace(staged.with_suffix(".bin"), out.with_suffix(".bin"))
        os.replace(staged, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
