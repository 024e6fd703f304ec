"""ONNX -> every other target: artifact + sidecar with the parity check against the ONNX reference.

Checkpoints are turned into ONNX first by the caller (bench.tasks.export), so converters never needs the trainer.
"""
from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calibration.request import Quantizer
from converters.int8 import Int8Options, quantize_to
from converters.parity import ParityResult, check_parity
from converters.rewrite_auto import Trial, choose_rewrites
from converters.rewrites import RewriteResult, parse_names, rewritten_onnx
from edge_sdk.atomic import write_json_atomic
from runtimes.base import RuntimeOptions, sidecar_path
from runtimes.capabilities import converter_targets, quantizer_targets
from runtimes.capabilities import get as capability
from runtimes.errors import BackendNotImplementedError, CalibrationError, EdgebenchError, ModelLoadError
from runtimes.precision import Precision, PrecisionUnsupportedError


@dataclass
class ExportResult:
    """The artifact written, how, and its parity against the ONNX reference (None when not checked)."""

    path: Path
    target: str
    precision: str
    parity: ParityResult | None = None
    rewrites: list[RewriteResult] = field(default_factory=list)
    rewrite_trials: list[Trial] = field(default_factory=list)  # what `--rewrite auto` measured
    quantization: dict[str, Any] | None = None  # int8: calibration provenance, method, exclusions (converters.int8)


#: parity frames of an int8 export, at least (4 frames give ~7 detections: one flipped class fails the check)
INT8_PARITY_IMAGES = 16


def targets() -> tuple[str, ...]:
    """What `export --to` takes: onnx (from a checkpoint) and every backend with a converter or an INT8
    quantizer (runtimes.capabilities)."""
    return tuple(dict.fromkeys(("onnx", *converter_targets(), *quantizer_targets())))


def check_target(target: str, precision: str) -> None:
    """One-line errors for an unknown target, an unknown precision, or one the target's converter does not
    write (before any work is done)."""
    if target not in targets():
        raise BackendNotImplementedError(
            f"export target '{target}' is not implemented (available: {', '.join(targets())})")
    asked = Precision.parse(precision)
    writes = (Precision.FP32,) if target == "onnx" else capability(target).writes + capability(target).quantized
    if asked not in writes:
        raise PrecisionUnsupportedError(f"the {target} converter writes {', '.join(writes)}, not {asked}")


def _check(model: Path, target: str, precision: str) -> None:
    check_target(target, precision)
    if not model.exists():
        raise ModelLoadError(f"model not found: {model}")
    if target == "onnx":
        raise EdgebenchError("the model is already ONNX; export to onnx takes a training checkpoint")
    if model.suffix.lower() != ".onnx":
        raise ModelLoadError(f"{model}: conversion starts from an ONNX model (.onnx)")
    if capability(target).converter is None:
        raise EdgebenchError(f"{target} runs the ONNX model as it is; --to {target} makes its INT8 model "
                             "(--precision int8 --calib IMAGES)")


def export(model: str | Path, target: str, out: str | Path, precision: str = "fp32", parity: bool = True,
           parity_images: int = 4, threads: int | None = None,
           rewrites: str | Iterable[str] | None = None, int8: Int8Options | None = None,
           quantizer: Quantizer | None = None) -> ExportResult:
    """Convert an ONNX `model` to `target` at `out`; check parity against the ONNX (fp32 on ONNX Runtime)
    and store it in the artifact's sidecar JSON. Named `rewrites` (converters.rewrites) are applied to
    a temporary copy of the ONNX before conversion; parity still compares against the original.
    `rewrites="auto"` keeps each exact rewrite only when it measurably helps the target
    (converters.rewrite_auto: delegated ops and interleaved latency, with and without it)."""
    src, dst, target = Path(model), Path(out), target.lower()
    if Precision.parse(precision) is Precision.INT8:
        return _export_int8(src, target, dst, int8, parity, parity_images, threads, rewrites, quantizer)
    auto = _is_auto(rewrites)
    names = [] if auto else parse_names(rewrites)
    _check(src, target, precision)
    trials: list[Trial] = []
    if auto:
        trials = choose_rewrites(src, target, lambda s, o: convert_file(s, target, o, precision), threads or 1)
        names = [t.name for t in trials if t.applied]
    if not names:
        result = _convert(src, src, target, dst, precision, parity, parity_images, threads)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".rewrite.", dir=dst.parent) as tmp:
            source, results = rewritten_onnx(src, names, tmp)
            result = _convert(source, src, target, dst, precision, parity, parity_images, threads)
        result.rewrites = results
        record_sidecar(result.path, "rewrites", [r.to_dict() for r in results])
    if auto:
        result.rewrite_trials = trials
        record_sidecar(result.path, "rewrite_trials", [t.to_dict() for t in trials])
    return result


def _export_int8(src: Path, target: str, dst: Path, int8: Int8Options | None, parity: bool, images: int,
                 threads: int | None, rewrites: str | Iterable[str] | None,
                 quantizer: Quantizer | None = None) -> ExportResult:
    """converters.int8 on `src` (no rewrites: exclusions name the model's own nodes), then parity;
    `quantizer` replaces the backend's own (converters.int8.quantize_to)."""
    check_target(target, "int8")
    if int8 is None:
        raise CalibrationError("INT8 needs calibration images (--calib DIR|data.yaml|list.txt)")
    if parse_names(None if _is_auto(rewrites) else rewrites):
        raise EdgebenchError("--rewrite is not applied to INT8 exports in this version (the exclusion set names "
                             "the model's own nodes); export without it")
    made = quantize_to(src, target, dst, int8, threads, quantizer=quantizer)
    result = ExportResult(made.path, target, "int8", quantization=made.provenance())
    if parity:  # int8 flips a few near-tied classes: judge agreement over enough detections to mean something
        result.parity = _parity(src, made.path, target, "int8", threads, max(images, INT8_PARITY_IMAGES))
        record_parity(made.path, result.parity)
    return result


def rewrite_names(rewrites: str | Iterable[str] | None) -> list[str]:
    """Checked rewrite names, or ["auto"]; RewriteError for an unknown name."""
    return ["auto"] if _is_auto(rewrites) else parse_names(rewrites)


def _is_auto(rewrites: str | Iterable[str] | None) -> bool:
    items = [rewrites] if isinstance(rewrites, str) else list(rewrites or [])
    return [str(i).strip().lower() for i in items] == ["auto"]


def convert_file(source: Path, target: str, out: Path, precision: str) -> Path:
    """ONNX `source` -> the `target` artifact at `out` (no parity check), by the converter entry point the
    capability table names."""
    if target not in converter_targets():
        raise BackendNotImplementedError(f"export target '{target}' is not implemented")
    return capability(target).load_converter()(source, out, Precision.parse(precision))


def _convert(source: Path, reference: Path, target: str, out: Path, precision: str, parity: bool, images: int,
             threads: int | None) -> ExportResult:
    path = convert_file(source, target, out, precision)
    result = ExportResult(path, target, precision)
    if parity:
        result.parity = _parity(reference, path, target, precision, threads, images)
        record_parity(path, result.parity)
    return result


def _parity(reference: Path, path: Path, target: str, precision: str, threads: int | None,
            images: int) -> ParityResult:
    """Parity with the candidate run at the exported precision; where this host cannot run that precision
    (runtimes.precision's rule), run it as the engine can and say so in the result's note. The verdict
    uses the precision the candidate actually ran at."""
    try:
        return check_parity(reference, path, backend=target, images=images,
                            options=RuntimeOptions(threads=threads, precision=Precision.parse(precision)))
    except PrecisionUnsupportedError as exc:
        result = check_parity(reference, path, backend=target, images=images, options=RuntimeOptions(threads=threads))
        result.note = f"checked at {result.precision_used}: {exc}"
        return result


def record_parity(artifact: Path, result: ParityResult) -> Path:
    """Add the parity result to the artifact's sidecar JSON (created when missing)."""
    return record_sidecar(artifact, "parity", result.to_dict())


def record_sidecar(artifact: Path, key: str, value: Any) -> Path:
    """Set `key` in the artifact's sidecar JSON (created when missing)."""
    side = sidecar_path(artifact)
    data: dict[str, Any] = json.loads(side.read_text(encoding="utf-8")) if side.is_file() else {}
    data[key] = value
    return write_json_atomic(side, data)
