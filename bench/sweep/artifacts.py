"""Which artifact serves a (backend, precision) configuration, or why none can yet.

An ONNX model is converted (converters.export, parity included) to the backends that have a
converter in the capability table (runtimes.capabilities), in a child process of its own
(`convert_job`), so a converter that crashes or hangs is that configuration's failed row, not the
run's; the measurement then runs in a second, fresh child (`run_job`), so the converter's memory
(torch, jax, ...) never counts in the row's peak RSS. On a host that converts to a backend but cannot run it
(Core ML off macOS), the artifact is converted and checked by the backend's inspector (capability `inspector`)
instead of measured: the row is skipped with "not measurable on this host" and carries what was checked.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure.runner import MeasureSpec, measure
from bench.report.rows import ArtifactCheck
from bench.sweep.inputs import artifact_sha256
from bench.sweep.isolate import ChildOutcome, run_isolated
from calibration.methods import resolve_method
from runtimes.capabilities import get as capability
from runtimes.precision import Precision, satisfies
from runtimes.registry import backend_for_path


class ConfigSkipped(Exception):
    """A configuration that cannot run on this host or with this model; the row says why."""


@dataclass(frozen=True)
class Planned:
    """The artifact a configuration loads, and the ONNX to convert it from (None: it exists)."""

    artifact: Path
    source: Path | None = None
    target: str | None = None
    as_stored: bool = False  # convert the (already quantized) source as it is, without quantizing again
    unmeasurable: str | None = None  # why this host cannot run it: convert (when planned) and check it, not measure


@dataclass
class ConfigJob:
    """What one child does: convert `source` to `spec.model` when `target` is set, then measure."""

    spec: MeasureSpec
    source: str | None = None
    target: str | None = None
    rewrites: str | None = None  # converters.rewrites names or "auto", applied before converting
    int8: Any = None  # converters.int8.Int8Options of an int8 configuration (calibration images, method, ...)
    as_stored: bool = False  # the source is already quantized: convert its Q/DQ graph as it is (OpenVINO)
    unmeasurable: str | None = None  # this host cannot run it: check the artifact (capability inspector) instead


def plan_artifact(model: Path, backend: str, precision: str, model_precision: str, out_dir: Path,
                  int8: Any = None) -> Planned:
    """Where the artifact of (backend, precision) comes from; ConfigSkipped with the reason otherwise.
    `model_precision` is what the model computes in (the engine's `precision_used`, not its metadata):
    a pre-quantized ONNX serves its own precision as it is and is never converted. An int8 row of a float
    ONNX is quantized by the backend's own quantizer when `int8` (converters.int8.Int8Options) is given."""
    cap = capability(backend)
    if _quantized(model_precision):
        if backend_for_path(model) == backend:
            return Planned(resolve_artifact(model, backend, precision, model_precision))
        if backend in QDQ_READERS and model.suffix.lower() == ".onnx" and precision in ("int8", "mixed"):
            name = f"{model.stem}-{backend}-{precision}{cap.suffix}"
            return Planned(out_dir / "artifacts" / name, model, backend, as_stored=True)
        raise ConfigSkipped(f"{model.name} is already quantized ({model_precision}); converting a quantized "
                            f"model to {backend} is not in this version (it runs as it is on "
                            f"{backend_for_path(model)}" + (", and on openvino at int8" if
                                                            model.suffix.lower() == ".onnx" else "") + ")")
    if precision == "int8" and model.suffix.lower() == ".onnx":
        return _plan_int8(model, backend, out_dir, int8)
    if cap.converter and model.suffix.lower() == ".onnx":
        if precision not in cap.writes:
            raise ConfigSkipped(f"{backend} {precision} needs a precision the {backend} converter does not "
                                f"write ({', '.join(cap.writes)})")
        name = f"{model.stem}-{backend}-{precision}{cap.suffix}"
        return Planned(out_dir / "artifacts" / name, model, backend)
    return Planned(resolve_artifact(model, backend, precision, model_precision))


def resolve_artifact(model: Path, backend: str, precision: str, model_precision: str = "fp32") -> Path:
    """The model itself when its format and precision already fit `backend` at `precision`;
    raise ConfigSkipped with the reason otherwise."""
    native = backend_for_path(model)
    if native != backend:
        cap = capability(backend)
        if cap.converter is None:  # e.g. torch: it runs its own files only
            raise ConfigSkipped(f"{backend} runs its own files ({', '.join(cap.suffixes)}) as they are, with no "
                                f"converter from other formats: {model.name} is not one" + _ROUTES.get(backend, ""))
        raise ConfigSkipped(f"model is a {native} artifact; {backend} is reached by converting an ONNX model "
                            f"(edgebench export --to {backend})")
    hinted = capability(backend).hints
    fits = satisfies(Precision.parse(model_precision), Precision.parse(precision))
    if not fits and not (precision in hinted and model_precision in hinted):
        if _quantized(model_precision):
            raise ConfigSkipped(f"{backend} {precision}: {model.name} is already quantized ({model_precision}: "
                                f"Q/DQ or integer ops); {precision} needs the float model it was made from")
        what = "an ONNX model to quantize" if precision == "int8" else f"a {precision} conversion"
        raise ConfigSkipped(f"{backend} {precision} needs {what}; the model is a {model_precision} "
                            f"{model.suffix} file")
    return model


#: what to pass instead, for backends without a converter
_ROUTES = {"torch": " (pass the training checkpoint, --model M.ckpt: the torch row is the reference that the ONNX "
                    "and its conversions are checked against; a module rebuilt from the ONNX would not be)"}
#: backends whose converter keeps an ONNX Q/DQ graph quantized (OpenVINO turns Q/DQ into FakeQuantize)
QDQ_READERS = ("openvino",)


def _plan_int8(model: Path, backend: str, out_dir: Path, int8: Any) -> Planned:
    """The int8 artifact quantized from the float ONNX `model` by `backend`'s own quantizer."""
    cap = capability(backend)
    missing = cap.quantizer_missing()
    if missing:
        raise ConfigSkipped(f"{backend} int8: {missing}")
    if int8 is None:
        raise ConfigSkipped(f"{backend} int8 needs calibration images: pass --calib DIR|data.yaml|list.txt")
    name = f"{model.stem}-{backend}-int8-{resolve_method(int8.method, backend)}{cap.suffix}"
    return Planned(out_dir / "artifacts" / name, model, backend)


def _quantized(model_precision: str) -> bool:
    return model_precision in (Precision.INT8.value, Precision.MIXED.value)


def convert_job(job: ConfigJob) -> dict[str, Any]:
    """Child side: convert (or quantize) `job.source` to `job.target` at `job.spec.model`; returns
    {"parity": dict or None, "quantization": dict or None}, and for an artifact this host cannot run, its
    inspector's facts ("inspected", in the same child: the converter's imports are already paid for)."""
    from converters.export import export

    if job.source is None or job.target is None:  # run_config converts only planned jobs
        raise ValueError(f"nothing to convert for {job.spec.model}: the job has no source and target")
    precision = "fp32" if job.as_stored else job.spec.precision  # as stored: the converter keeps the Q/DQ
    result = export(job.source, job.target, job.spec.model, precision=precision, parity=not job.unmeasurable,
                    threads=job.spec.threads, rewrites=None if job.int8 else job.rewrites, int8=job.int8)
    made = {"parity": result.parity.to_dict() if result.parity else None, "quantization": result.quantization}
    return {**made, "inspected": inspect_job(job)} if job.unmeasurable else made


def inspect_job(job: ConfigJob) -> dict[str, Any]:
    """Child side: the backend's inspector on the artifact (what can be known of it without running it)."""
    facts: dict[str, Any] = capability(job.spec.backend).load_inspector()(Path(job.spec.model))
    return facts


def run_job(job: ConfigJob) -> dict[str, Any]:
    """Child side: measure the configuration (its artifact already exists); the row's fields."""
    return measure(job.spec)


def run_config(job: ConfigJob, timeout_s: float | None, measure_fn: Callable[[ConfigJob], dict[str, Any]] = run_job
               ) -> tuple[ChildOutcome, dict[str, Any]]:
    """Convert (when planned) in one child, then measure in another; (outcome, {"parity": ...,
    "quantization": ...} of the conversion, empty without one). A conversion that fails, crashes or hangs
    is the outcome, prefixed with what was being done."""
    made: dict[str, Any] = {}
    if job.target:
        conv = run_isolated(convert_job, job, timeout_s=timeout_s)
        if conv.status != "ok":
            doing = "quantizing for" if job.int8 else "converting to"
            return ChildOutcome(conv.status, None, f"{doing} {job.target}: {conv.error}"), {}
        made = {k: v for k, v in (conv.value or {}).items() if v is not None}
    if job.unmeasurable:
        return check_unmeasurable(job, timeout_s, made)
    return run_isolated(measure_fn, job, timeout_s=timeout_s), made


def check_unmeasurable(job: ConfigJob, timeout_s: float | None, made: dict[str, Any]
                       ) -> tuple[ChildOutcome, dict[str, Any]]:
    """A converted (or given) artifact this host cannot run: its inspector's facts in `made` ("artifact_check",
    and the model size), and a skipped outcome saying why latency and accuracy are not measured. An artifact
    that fails the check is a failed outcome."""
    made = dict(made)
    facts = made.pop("inspected", None)
    if facts is None:  # not converted here: check the given artifact in a child of its own
        checked = run_isolated(inspect_job, job, timeout_s=timeout_s)
        if checked.status != "ok":
            why = f"checking the {job.spec.backend} artifact: {checked.error}"
            return ChildOutcome(checked.status, None, why), made
        facts = checked.value or {}
    check = ArtifactCheck.of(facts)
    made = {**made, "artifact_check": check.to_dict(), "artifact_sha256": artifact_sha256(job.spec.model),
            "source_sha256": artifact_sha256(job.source) if job.source else None,
            "precision_used": check.compute_precision}  # from the artifact's own compute ops
    if check.size_bytes is not None:
        made["memory"] = {"model_size_mb": check.size_bytes / 2**20}
    shape = (check.inputs or [{}])[0].get("shape") or []
    if len(shape) == 4:
        made["imgsz"] = [int(shape[2]), int(shape[3])]
    what = "converted and checked" if job.target else "checked"
    return ChildOutcome("skipped", None, f"{job.unmeasurable}; the {job.spec.precision} artifact was {what} "
                                         "without running it (see its artifact check)"), made
