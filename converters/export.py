"""ONNX -> every other target: artifact + sidecar with the parity check against the ONNX reference.

Checkpoints are turned into ONNX first by the caller (bench.export), so converters never needs the trainer.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from edge_sdk.atomic import write_json_atomic
from converters.onnx_info import PRECISIONS
from converters.parity import ParityResult, check_parity
from converters.rewrites import RewriteResult, parse_names, rewritten_onnx
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
    rewrites: list[RewriteResult] = field(default_factory=list)


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
           parity_images: int = 4, threads: int | None = None,
           rewrites: str | Iterable[str] | None = None) -> ExportResult:
    """Convert an ONNX `model` to `target` at `out`; check parity against the ONNX (fp32 on ONNX Runtime)
    and store it in the artifact's sidecar JSON. Named `rewrites` (converters.rewrites) are applied to
    a temporary copy of the ONNX before conversion; parity still compares against the original."""
    src, dst, target = Path(model), Path(out), target.lower()
    names = parse_names(rewrites)
    _check(src, target, precision)
    if not names:
        return _convert(src, src, target, dst, precision, parity, parity_images, threads)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".rewrite.", dir=dst.parent) as tmp:
        source, results = rewritten_onnx(src, names, tmp)
        result = _convert(source, src, target, dst, precision, parity, parity_images, threads)
    result.rewrites = results
    _record(result.path, "rewrites", [r.to_dict() for r in results])
    return result


def _convert(source: Path, reference: Path, target: str, out: Path, precision: str, parity: bool, images: int,
             threads: int | None) -> ExportResult:
    if target == "openvino":
        from converters.openvino import to_openvino

        path = to_openvino(source, out, precision)
    elif target == "ncnn":
        from converters.ncnn import to_ncnn

        path = to_ncnn(source, out, precision)
    elif target == "tflite":
        from converters.tflite import to_tflite

        path = to_tflite(source, out, precision)
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
    return _record(artifact, "parity", result.to_dict())


def _record(artifact: Path, key: str, value: Any) -> Path:
    side = sidecar_path(artifact)
    data: dict[str, Any] = json.loads(side.read_text(encoding="utf-8")) if side.is_file() else {}
    data[key] = value
    return write_json_atomic(side, data)
