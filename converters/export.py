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
from converters.int8 import SIDECAR_KEY as INT8_KEY
from converters.int8 import Int8Options, int8_runtime, int8_suffix, quantize_to
from converters.parity import ParityResult, check_parity
from converters.rewrite_auto import Trial, choose_rewrites
from converters.rewrites import RewriteResult, parse_names, rewritten_onnx
from edge_sdk.atomic import write_json_atomic
from runtimes.base import RuntimeOptions, sidecar_path
from runtimes.capabilities import converter_targets, quantizer_targets
from runtimes.capabilities import get as capability
from runtimes.errors import (
    BackendNotImplementedError,
    CalibrationError,
    EdgebenchError,
    HardwareUnavailableError,
    ModelLoadError,
)
from runtimes.onnx_precision import onnx_precision
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
    notes: list[str] = field(default_factory=list)  # e.g. why parity was not checked on this host


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
           quantizer: Quantizer | None = None, converter_options: dict[str, Any] | None = None) -> ExportResult:
    """Convert an ONNX `model` to `target` at `out`; check parity against the ONNX (fp32 on ONNX Runtime)
    and store it in the artifact's sidecar JSON. Named `rewrites` (converters.rewrites) are applied to
    a temporary copy of the ONNX before conversion; parity still compares against the original.
    `rewrites="auto"` keeps each exact rewrite only when it measurably helps the target
    (converters.rewrite_auto: delegated ops and interleaved latency, with and without it).
    `converter_options` go to the target's converter as keywords (e.g. coreml's `options`)."""
    src, dst, target = Path(model), Path(out), target.lower()
    if Precision.parse(precision) is Precision.INT8:
        if builds_from_qdq(target, dst):  # TensorRT: a Q/DQ ONNX, then the engine built from it
            return _export_int8_built(src, target, dst, int8, parity, parity_images, threads, rewrites, quantizer,
                                      converter_options)
        return _export_int8(src, target, dst, int8, parity, parity_images, threads, rewrites, quantizer)
    auto = _is_auto(rewrites)
    names = [] if auto else parse_names(rewrites)
    _check(src, target, precision)
    trials: list[Trial] = []
    if auto:
        trials = choose_rewrites(src, target, lambda s, o: convert_file(s, target, o, precision, converter_options),
                                 threads or 1)
        names = [t.name for t in trials if t.applied]
    if not names:
        result = _convert(src, src, target, dst, precision, parity, parity_images, threads, converter_options)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".rewrite.", dir=dst.parent) as tmp:
            source, results = rewritten_onnx(src, names, tmp)
            result = _convert(source, src, target, dst, precision, parity, parity_images, threads, converter_options)
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
        runner, proxy = int8_runtime(target)  # TensorRT's Q/DQ ONNX: on ONNX Runtime CPU, said in the note
        result.parity = _parity(src, made.path, runner, "int8", threads, max(images, INT8_PARITY_IMAGES))
        if proxy:
            result.parity.note = "; ".join(n for n in (result.parity.note, proxy) if n)
        record_parity(made.path, result.parity)
    return result


def builds_from_qdq(target: str, out: Path) -> bool:
    """Whether an int8 export to `out` is the target's converter run on a Q/DQ ONNX (TensorRT's engine), not
    the Q/DQ ONNX itself (the target's int8 artifact, converters.int8.int8_suffix)."""
    cap = capability(target)
    return (Precision.INT8 in cap.writes and out.suffix.lower() in cap.suffixes
            and int8_suffix(target) not in cap.suffixes)


def _export_int8_built(src: Path, target: str, dst: Path, int8: Int8Options | None, parity: bool, images: int,
                       threads: int | None, rewrites: str | Iterable[str] | None, quantizer: Quantizer | None,
                       options: dict[str, Any] | None) -> ExportResult:
    """int8 through the target's converter: the Q/DQ ONNX (`src` itself when already quantized, else the
    target's quantizer on it), then the converter at int8; parity against `src`. Whether this host can build
    is checked before calibrating."""
    if not src.is_file() or src.suffix.lower() != ".onnx":
        raise ModelLoadError(f"model not found: {src}" if not src.is_file() else
                             f"{src}: an int8 {target} build starts from an ONNX model (.onnx)")
    if parse_names(None if _is_auto(rewrites) else rewrites):
        raise EdgebenchError("--rewrite is not applied to INT8 exports in this version; export without it")
    _check_builder(target, options)
    quantized = onnx_precision(src) in (Precision.INT8, Precision.MIXED)
    if not quantized and int8 is None:
        raise CalibrationError("INT8 needs calibration images (--calib DIR|data.yaml|list.txt), or a Q/DQ ONNX")
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".int8.", dir=dst.parent) as tmp:
        made = None if quantized or int8 is None else quantize_to(
            src, target, Path(tmp) / f"{dst.stem}{int8_suffix(target)}", int8, threads, quantizer=quantizer)
        path = convert_file(made.path if made else src, target, dst, "int8", options)
    result = ExportResult(path, target, "int8", quantization=made.provenance() if made else None)
    if result.quantization is not None:
        record_sidecar(path, INT8_KEY, result.quantization)
    if parity:
        check_and_record_parity(result, src, threads, max(images, INT8_PARITY_IMAGES))
    return result


def _check_builder(target: str, options: dict[str, Any] | None) -> None:
    """The target's "can this host build?" check (TensorRT: package, CUDA binding, driver, GPU), when it has one."""
    if target == "tensorrt":
        from converters.tensorrt import check_builder

        check_builder((options or {}).get("options"))


def rewrite_names(rewrites: str | Iterable[str] | None) -> list[str]:
    """Checked rewrite names, or ["auto"]; RewriteError for an unknown name."""
    return ["auto"] if _is_auto(rewrites) else parse_names(rewrites)


def _is_auto(rewrites: str | Iterable[str] | None) -> bool:
    items = [rewrites] if isinstance(rewrites, str) else list(rewrites or [])
    return [str(i).strip().lower() for i in items] == ["auto"]


def convert_file(source: Path, target: str, out: Path, precision: str,
                 options: dict[str, Any] | None = None) -> Path:
    """ONNX `source` -> the `target` artifact at `out` (no parity check), by the converter entry point the
    capability table names; `options` are passed to it as keywords."""
    if target not in converter_targets():
        raise BackendNotImplementedError(f"export target '{target}' is not implemented")
    return capability(target).load_converter()(source, out, Precision.parse(precision), **(options or {}))


def _convert(source: Path, reference: Path, target: str, out: Path, precision: str, parity: bool, images: int,
             threads: int | None, options: dict[str, Any] | None = None) -> ExportResult:
    path = convert_file(source, target, out, precision, options)
    result = ExportResult(path, target, precision)
    if parity:
        check_and_record_parity(result, reference, threads, images)
    return result


def check_and_record_parity(result: ExportResult, reference: Path, threads: int | None, images: int) -> ExportResult:
    """Parity of `result.path` against the ONNX `reference`, stored in the sidecar; where this host cannot run
    the artifact (HardwareUnavailableError: Core ML off macOS, a GPU engine without its GPU), the reason goes
    in `result.notes` and the sidecar's "parity_skipped" instead."""
    try:
        result.parity = _parity(reference, result.path, result.target, result.precision, threads, images)
    except HardwareUnavailableError as exc:
        result.notes.append(f"parity not checked: {exc}")
        record_sidecar(result.path, "parity_skipped", str(exc))
        return result
    record_parity(result.path, result.parity)
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
