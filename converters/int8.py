"""ONNX -> an INT8 artifact for one backend, through that engine's own quantizer (calibration/).

The float32 ONNX (fp16-stored weights folded) is the source: its node names are what the exclusion set
names. ONNX Runtime quantizes it directly; OpenVINO, LiteRT and ncnn first get their float artifact from
the ordinary converter, and their quantizer (NNCF, ai-edge-quantizer, our ncnn table writer) makes the
int8 one from it. The artifact's sidecar records the calibration provenance, the method, what was kept
in float and the quantizer; the parity check against the ONNX's fp32 outputs follows, as for any export.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import onnx

from calibration.cache import CacheWarning, CalibrationCache
from calibration.dataset import DEFAULT_IMAGES, CalibrationSet, Progress, build_calibration_set
from calibration.exclusions import Exclusion, resolve_exclusion
from calibration.methods import AUTO, Method, resolve_method
from calibration.modelopt import PROXY_NOTE as MODELOPT_PROXY_NOTE
from calibration.onnx_prep import fold_weight_casts
from calibration.request import Quantizer, QuantizeRequest, QuantizeResult
from converters.onnx_info import onnx_io
from converters.quiet import quiet_output
from edge_sdk.atomic import write_json_atomic
from runtimes.base import sidecar_path
from runtimes.capabilities import files_beside, quantizer_targets
from runtimes.capabilities import get as capability
from runtimes.errors import BackendNotImplementedError, CalibrationError, ModelLoadError
from runtimes.onnx_precision import onnx_precision
from runtimes.precision import Precision

#: the sidecar key an int8 artifact's provenance is stored under
SIDECAR_KEY = "int8"
#: int8 artifacts that are not the backend's own format: TensorRT's is the Q/DQ ONNX its engine builder consumes
INT8_SUFFIXES = {"tensorrt": ".onnx"}
#: backends whose int8 artifact is checked (parity, scores) on another runtime here, and the note saying so
PROXY_RUNTIMES = {"tensorrt": ("onnxruntime", MODELOPT_PROXY_NOTE)}


@dataclass(frozen=True)
class Int8Options:
    """How to quantize: the calibration images (a folder, data.yaml[:split], .txt list, list of paths or a
    ready CalibrationSet), the method, what stays float ("auto", "none" or node names), full-integer I/O,
    and the evaluation images calibration must not overlap (by content) unless allowed."""

    calib: str | Path | Sequence[str | Path] | CalibrationSet
    method: Method | str = AUTO  # a Method, or "auto": the engine's default (calibration.methods)
    exclude: str | Sequence[str] | None = "auto"
    int8_io: bool = False
    calib_images: int = DEFAULT_IMAGES
    eval_images: tuple[str, ...] = ()
    allow_overlap: bool = False
    cache: bool = True
    cache_dir: str | None = None  # None: <edgebench cache>/calibration
    extra_exclude: tuple[str, ...] = ()  # nodes a sensitivity search adds to the auto set
    progress: bool = False  # draw "calibrating i/N" on the terminal (when it is one)


@dataclass
class Int8Artifact:
    """The int8 artifact and how it was made (also in its sidecar under SIDECAR_KEY)."""

    path: Path
    target: str
    result: QuantizeResult
    calibration: dict[str, Any]
    exclusion: Exclusion
    method: Method
    int8_io: bool

    def provenance(self) -> dict[str, Any]:
        """The row's `quantization` record (bench.report.rows.Quantization) and the sidecar's int8 key."""
        r = self.result
        return {"method": str(self.method), "calibration": self.calibration, "exclusion": self.exclusion.to_dict(),
                "quantizer": r.quantizer, "scheme": r.scheme, "excluded": list(r.excluded),
                "float_ops": list(r.float_ops), "int8_io": self.int8_io, "cache_hit": r.cache_hit,
                "notes": list(r.notes)}


def check_quantizable(model: Path, target: str) -> None:
    """One-line errors before any work: no quantizer for `target`, not an ONNX, or already quantized."""
    if target not in quantizer_targets():
        raise BackendNotImplementedError(f"INT8 for '{target}' is not in this version (quantizers: "
                                         f"{', '.join(quantizer_targets())})")
    if not model.is_file():
        raise ModelLoadError(f"model not found: {model}")
    if model.suffix.lower() != ".onnx":
        raise ModelLoadError(f"{model}: quantization starts from a float ONNX model (.onnx)")
    used = onnx_precision(model)
    if used in (Precision.INT8, Precision.MIXED):
        raise CalibrationError(f"{model.name} is already quantized ({used}); quantize the float model it came from")


def calibration_set(model: Path, opts: Int8Options, progress: Progress | None = None) -> CalibrationSet:
    """The calibration images of `opts`, at the model's input size, checked against the evaluation images."""
    if isinstance(opts.calib, CalibrationSet):
        return opts.calib
    _, inputs, _ = onnx_io(model)
    shape = inputs[0] if len(inputs) == 1 else None
    dims = shape[2:] if shape and len(shape) == 4 else []
    if len(dims) != 2 or not all(isinstance(d, int) and d > 0 for d in dims):
        raise ModelLoadError(f"{model.name}: calibration needs one input with a fixed NCHW size, got {inputs}")
    size = (int(dims[0]), int(dims[1]))
    return build_calibration_set(opts.calib, size, limit=opts.calib_images, eval_images=opts.eval_images,
                                 allow_overlap=opts.allow_overlap, progress=progress)


def quantize_to(model: str | Path, target: str, out: str | Path, opts: Int8Options, threads: int | None = None,
                progress: Progress | None = None, quantizer: Quantizer | None = None) -> Int8Artifact:
    """Quantize the float ONNX `model` for `target` into `out` (+ files beside it, + sidecar); the parity
    check is the caller's (converters.export). `quantizer` replaces the backend's own entry point (e.g.
    OpenVINO's accuracy-controlled route)."""
    src, dst, target = Path(model), Path(out), target.lower()
    check_quantizable(src, target)
    if dst.suffix.lower() != int8_suffix(target):
        raise ModelLoadError(f"{dst.name}: a {target} int8 artifact ends in {int8_suffix(target)}")
    method = resolve_method(opts.method, target)
    calib = calibration_set(src, opts, progress)
    cache = CalibrationCache(opts.cache_dir) if opts.cache else None
    folded = fold_weight_casts(onnx.load(str(src)))
    exclusion = _exclusion(opts, folded)  # a bad --exclude fails before anything is written
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".int8.", dir=dst.parent) as tmp:
        source = Path(tmp) / f"{src.stem}.onnx"
        onnx.save(folded, str(source))
        notes = _normalize_for_int8_io(source, target, opts)
        artifact = _float_artifact(source, target, Path(tmp))
        staged = Path(tmp) / "out" / dst.name
        staged.parent.mkdir()
        req = QuantizeRequest(source, artifact, staged, calib, method, exclusion.all_nodes, opts.int8_io, cache,
                              threads)
        result = _run_quantizer(quantizer or capability(target).load_quantizer(), req, opts.progress)
        result.notes = (*notes, *result.notes)
        _carry_metadata(artifact, staged)
        done = Int8Artifact(dst, target, result, calib.provenance(), exclusion, method, opts.int8_io)
        _record(staged, done.provenance())
        _move(staged, dst)
    result.path = dst
    return done


def int8_suffix(target: str) -> str:
    """The suffix of `target`'s int8 artifact (its own, except INT8_SUFFIXES)."""
    return INT8_SUFFIXES.get(target, capability(target).suffix)


def int8_runtime(target: str) -> tuple[str, str | None]:
    """(the backend that runs `target`'s int8 artifact here, the proxy note or None when it is `target` itself)."""
    runtime, note = PROXY_RUNTIMES.get(target, (target, None))
    return runtime, note


def _run_quantizer(quantizer: Quantizer, req: QuantizeRequest, show: bool = False) -> QuantizeResult:
    """The engine's quantizer with its chatter (NNCF's logs and progress bars, ...) kept off the terminal
    (with `show`, our own "calibrating i/N" line still reaches it); a cache entry it could not trust is
    still said: a warning here and a note in the provenance."""
    with quiet_output() as captured, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CacheWarning)
        fd = captured.terminal_fd if show and captured.terminal_fd is not None and os.isatty(captured.terminal_fd) \
            else None
        if fd is not None:
            req = replace(req, calib=req.calib.with_progress(_line_to(fd)))
        result: QuantizeResult = quantizer(req)
        if fd is not None:
            os.write(fd, b"\n")
    for w in caught:
        if issubclass(w.category, CacheWarning):
            warnings.warn(str(w.message), CacheWarning, stacklevel=3)
            result.notes = (*result.notes, str(w.message))
    return result


def _normalize_for_int8_io(source: Path, target: str, opts: Int8Options) -> tuple[str, ...]:
    """Full-integer I/O with the decode tail quantized too (`--int8-io --exclude none`): one int8 output scale
    would cover boxes (0..imgsz px) and scores (0..1) and crush the scores, so the box rows are divided by
    the input size first (converters.rewrites_outputs; the decoder multiplies them back). In place."""
    if not opts.int8_io or target != "tflite" or opts.exclude not in ("none", ["none"], ("none",)):
        return ()
    from converters.rewrites_outputs import normalize_boxes

    model, sites = normalize_boxes(onnx.load(str(source)))
    if not sites:
        return ("--int8-io: no [B, 4+nc, N] box/score concat found to normalise; the output scale is shared",)
    onnx.save(model, str(source))
    return ("--int8-io: boxes divided by the input size before the output concat (decoded back to pixels)",)


def _line_to(fd: int) -> Progress:
    """A progress callback redrawing one "calibrating done/total" line on the terminal `fd`."""
    def show(done: int, total: int) -> None:
        os.write(fd, f"\r  calibrating {done}/{total} images".encode())

    return show


def _exclusion(opts: Int8Options, model: onnx.ModelProto) -> Exclusion:
    chosen = resolve_exclusion(opts.exclude, model)
    if opts.extra_exclude:
        return Exclusion(chosen.mode, chosen.nodes, tuple(n for n in opts.extra_exclude if n not in chosen.nodes))
    return chosen


def _float_artifact(source: Path, target: str, folder: Path) -> Path:
    """The engine's float32 artifact the quantizer starts from (the ONNX itself for ONNX Runtime, and for
    TensorRT, whose int8 artifact is a Q/DQ ONNX that its engine builder takes)."""
    cap = capability(target)
    if cap.converter is None or int8_suffix(target) != cap.suffix:
        return source
    return cap.load_converter()(source, folder / "float" / f"{source.stem}{cap.suffix}", Precision.FP32)


def _carry_metadata(float_artifact: Path, staged: Path) -> None:
    """The float artifact's metadata (class names, input size, ... that the runtime reads) on the int8
    artifact: its sidecar, unless the quantizer wrote one; an ONNX's metadata_props, when dropped."""
    src, dst = sidecar_path(float_artifact), sidecar_path(staged)
    if src.is_file() and not dst.is_file() and src != dst:
        shutil.copyfile(src, dst)
    if staged.suffix.lower() == ".onnx" and float_artifact.suffix.lower() == ".onnx":
        _carry_onnx_props(float_artifact, staged)


def _carry_onnx_props(source: Path, staged: Path) -> None:
    props = {p.key: p.value for p in onnx.load(str(source), load_external_data=False).metadata_props}
    model = onnx.load(str(staged))
    have = {p.key for p in model.metadata_props}
    missing = {k: v for k, v in props.items() if k not in have}
    if missing:
        onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, **missing})
        onnx.save(model, str(staged))


def _record(artifact: Path, provenance: dict[str, Any]) -> None:
    side = sidecar_path(artifact)
    data: dict[str, Any] = json.loads(side.read_text(encoding="utf-8")) if side.is_file() else {}
    data[SIDECAR_KEY] = provenance
    data["precision"] = "int8"
    write_json_atomic(side, data)


def _move(staged: Path, dst: Path) -> None:
    """Move the artifact, the files beside it and its sidecar into place (each replaced atomically)."""
    for src in [staged, *files_beside(staged), sidecar_path(staged)]:
        if src.is_file():
            target = dst.parent / src.name.replace(staged.stem, dst.stem, 1)
            src.replace(target)


def read_provenance(artifact: str | Path) -> dict[str, Any] | None:
    """The int8 provenance an artifact's sidecar holds, or None."""
    side = sidecar_path(artifact)
    if not side.is_file():
        return None
    value = json.loads(side.read_text(encoding="utf-8")).get(SIDECAR_KEY)
    return value if isinstance(value, dict) else None
