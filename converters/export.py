"""ONNX -> every other target: artifact + sidecar with the parity check against the ONNX reference.

Checkpoints are turned into ONNX first by the caller (bench.export), so converters never needs the trainer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_sdk.atomic import write_json_atomic
from converters.onnx_info import PRECISIONS
from converters.parity import ParityResult, check_parity
from edge_sdk.errors import BackendNotImplementedError, EdgebenchError, ModelLoadError
from runtimes.base import RuntimeOptions, sidecar_path

TARGETS = ("onnx", "openvino", "ncnn", "tflite")


@dataclass
class ExportResult:
    """The artifact written, how, and its parity against the ONNX reference (None when not checked)."""

    path: Path
    target: str
    precision: str
    parity: ParityResult | None = None


def check_target(target: str, precision: str) -> None:
    """One-line errors for an unknown target or precision (before any work is done)."""
    if target not in TARGETS:
        raise BackendNotImplementedError(
            f"export target '{target}' is not implemented (available: {', '.join(TARGETS)})")
    if precision not in PRECISIONS:
        raise EdgebenchError(f"export precision must be one of {PRECISIONS}, got '{precision}'")


def _check(model: Path, target: str, precision: str) -> None:
    check_target(target, precision)
    if not model.exists():
        raise ModelLoadError(f"model not found: {model}")
    if target == "onnx":
        raise EdgebenchError("the model is already ONNX; export to onnx takes a training checkpoint")
    if model.suffix.lower() != ".onnx":
        raise ModelLoadError(f"{model}: conversion starts from an ONNX model (.onnx)")


def export(model: str | Path, target: str, out: str | Path, precision: str = "fp32", parity: bool = True,
           parity_images: int = 4, threads: int | None = None) -> ExportResult:
    """Convert an ONNX `model` to `target` at `out`; check parity against the ONNX (fp32 on ONNX Runtime)
    and store it in the artifact's sidecar JSON."""
    src, dst, target = Path(model), Path(out), target.lower()
    _check(src, target, precision)
    return _convert(src, target, dst, precision, parity, parity_images, threads)


def _convert(reference: Path, target: str, out: Path, precision: str, parity: bool, images: int,
             threads: int | None) -> ExportResult:
    if target == "openvino":
        from converters.openvino import to_openvino

        path = to_openvino(reference, out, precision)
    elif target == "ncnn":
        from converters.ncnn import to_ncnn

        path = to_ncnn(reference, out, precision)
    elif target == "tflite":
        from converters.tflite import to_tflite

        path = to_tflite(reference, out, precision)
    else:  # guarded by _check; new targets add a branch here
        raise BackendNotImplementedError(f"export target '{target}' is not implemented")
    result = ExportResult(path, target, precision)
    if parity:
        # the candidate runs at the exported precision; the verdict uses the precision it actually ran at
        opts = RuntimeOptions(threads=threads, precision=precision)
        result.parity = check_parity(reference, path, backend=target, options=opts, images=images)
        record_parity(path, result.parity)
    return result


def record_parity(artifact: Path, result: ParityResult) -> Path:
    """Add the parity result to the artifact's sidecar JSON (created when missing)."""
    side = sidecar_path(artifact)
    data: dict[str, Any] = json.loads(side.read_text(encoding="utf-8")) if side.is_file() else {}
    data["parity"] = result.to_dict()
    return write_json_atomic(side, data)
