"""`edgebench run`: measure a model on a device profile at each of its runnable precisions."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure.environment import environment
from bench.measure.memory import file_size_mb
from bench.measure.runner import MeasureSpec, measure
from bench.measure.sustained import skipped_section, sustained_section
from bench.options import requested_precisions, validate_run_options
from bench.report.html import write_html_report
from bench.report.rows import Accuracy, DataInfo, ModelInfo, Report, ResultRow, Settings
from bench.report.sustained_rows import SustainedSection
from bench.report.writer import new_report, new_result, write_report
from bench.sweep.agreement import DEFAULT_REFERENCE_CONF, Reference, reference_gt, resolve_reference
from bench.sweep.artifacts import ConfigJob, ConfigSkipped, Planned, plan_artifact, run_config
from bench.sweep.class_map import ClassMap, check_class_map_options, parse_class_map, resolve_class_map
from bench.sweep.defaults import default_model
from bench.sweep.finish import finish_report as finish_report
from bench.sweep.finish import terminal_notes as terminal_notes
from bench.sweep.gates import gate_row
from bench.sweep.hardware import mark_verified, missing_line, not_measurable, profile_backends
from bench.sweep.inputs import artifact_sha256, check_classes, data_for, data_sha256
from bench.sweep.int8 import int8_options
from bench.sweep.isolate import ChildOutcome, run_isolated
from bench.sweep.outdir import out_folder
from bench.sweep.qualify import default_threads, qualify, sustained_duration, thread_notes
from bench.sweep.quant_route import mark_route
from bench.sweep.sizes import checkpoint_onnx, is_checkpoint
from converters.int8 import Int8Options
from edge_sdk.coco_eval import evaluate, restrict_to_images
from edge_sdk.datasets import Dataset, Sample, load_dataset
from edge_sdk.detector import Detector
from edge_sdk.host import host_facts, host_matches, match_host_profile
from edge_sdk.profiles import DeviceProfile, load_profile
from runtimes.capabilities import get as capability
from runtimes.errors import InputError
from runtimes.precision import Precision, parse_precisions
from runtimes.registry import availability, backend_for_path
from runtimes.threads import resolve_threads


@dataclass
class RunOptions:
    """What `edgebench run` was asked; None means 'from the profile' or 'the bundled default'."""

    profile: str | None = None
    model: str | None = None
    data: str | None = None
    out_dir: str | None = None  # the folder itself; None = a new runs/<stamp>-<profile>/ (bench.sweep.outdir)
    overwrite: bool = False  # write into an out_dir that already holds a report.json
    backends: tuple[str, ...] | None = None  # None = the profile's (or the model's own format's)
    precisions: tuple[str, ...] | None = None
    threads: int | None = None
    warmup: int | None = None
    min_iterations: int | None = None
    min_duration_s: float | None = None
    accuracy: bool = True
    max_eval_images: int | None = None
    strict_labels: bool = False
    timeout_s: float = 1800.0
    command: list[str] = field(default_factory=list)
    allow_class_mismatch: bool = False  # score a data set whose classes differ from the model's, by index
    class_map: str | None = None  # --class-map: MODEL=DATA pairs or a YAML file (bench.sweep.class_map)
    reference: str | None = None  # "fp32" / "BACKEND:PRECISION": agreement mAP vs its detections
    reference_conf: float = DEFAULT_REFERENCE_CONF
    duration_s: float | None = None  # sustained run seconds; None = the profile's, 0 = none
    window_s: float | None = None  # sustained window seconds; None = duration / 20 (0.5..10 s)
    rewrites: str | None = None  # ONNX rewrites for converted backends ("auto", names; converters.rewrites)
    calib: str | None = None  # int8 calibration images (folder, data.yaml[:split], .txt); None = bundled model's own
    calib_method: str = "auto"  # calibration.methods: a Method name, or auto (each engine's default)
    calib_images: int = 300
    exclude: str = "auto"  # what int8 keeps in float: auto (head outputs + decode tail), none, names
    allow_calib_overlap: bool = False  # calibrate on images that are also evaluated (recorded in the rows)
    int8_io: bool = False  # full-integer I/O where the engine has it (TFLite)


@dataclass
class RunContext:
    """Resolved inputs of a run, validated before anything is written."""

    profile: DeviceProfile
    model: Path
    dataset: Dataset
    model_meta: dict[str, Any]
    engine_versions: dict[str, str]
    notes: list[str]
    backend: str = ""  # what the run measures on: the profile's, or the model's own format
    reference: Reference | None = None
    reference_gt: dict[str, Any] | None = None  # COCO GT from the reference's detections
    model_precision: str = "fp32"  # what the model file computes in (the engine's precision_used)
    class_map: ClassMap | None = None  # --class-map, resolved: detections are re-labelled before scoring
    int8: Int8Options | None = None  # how int8 rows quantize (None: no int8 row, or no calibration images)
    backends: tuple[str, ...] = ()  # measured without --backend: the profile's, and its host proxy where needed
    exported: dict[str, str] = field(default_factory=dict)  # a checkpoint's ONNX export (bench.sweep.sizes)


def prepare(opts: RunOptions) -> RunContext:
    """Resolve and validate profile, model and data; raises typed errors, writes nothing."""
    validate_run_options(opts)  # every number in range, before anything loads (bench.options)
    parse_precisions(opts.precisions or ())  # an unknown name fails before anything runs
    check_class_map_options(opts.class_map, opts.allow_class_mismatch)  # its syntax, before anything loads
    if opts.rewrites:  # a typo fails before anything runs
        from converters.export import rewrite_names

        rewrite_names(opts.rewrites)
    profile = load_profile(opts.profile or match_host_profile())
    model = Path(opts.model) if opts.model else default_model()
    backend, backend_note = run_backend(model, profile)
    backend_note = None if opts.backends else backend_note
    backends: tuple[str, ...] = ()  # listed backends are checked per row (a skipped row says why)
    hardware_notes: list[str] = []
    if not opts.backends and backend == profile.backend:
        backends, hardware_notes = profile_backends(profile)  # refused here when nothing can stand in
    with Detector(model, threads=1) as det:  # on the backend of its own format
        meta = dataclasses.asdict(det.meta)
        versions = det.runtime.engine_versions()
        model_hw = det.input_size
        model_precision = Precision(det.precision_used).value  # from the graph, not the metadata
    data, data_note = data_for(opts.data, model, meta, bool(opts.reference))
    dataset = load_dataset(data, "val", strict=opts.strict_labels, allow_unlabelled=True)
    dataset.labelled = dataset.labelled and data_note is None  # bundled labels score only the bundled model
    class_map = _class_map(dataset, meta, opts)
    notes = class_map.notes() if class_map else []
    if opts.accuracy and not class_map:
        notes = check_classes(dataset, meta, opts.allow_class_mismatch)
    label_notes = _label_notes(dataset, meta, opts)  # an unlabelled set takes the model's names
    notes += [data_note] if data_note else label_notes
    notes += [backend_note] if backend_note else []
    notes += hardware_notes
    reference = (resolve_reference(opts.reference, opts.reference_conf, model, backend, model_precision)
                 if opts.reference else None)
    notes += thread_notes(opts.threads, profile)
    int8, int8_notes = int8_options(opts, model, meta, dataset, requested_precisions(opts.precisions)
                                    or profile.precisions)
    notes += int8_notes
    if tuple(model_hw) != tuple(profile.imgsz):
        notes.append(f"profile input size {profile.imgsz[0]}x{profile.imgsz[1]} not used: "
                     f"the model is fixed at {model_hw[0]}x{model_hw[1]}")
    return RunContext(profile, model, dataset, meta, versions, notes, backend, reference,
                      model_precision=model_precision, class_map=class_map, int8=int8, backends=backends)


def _class_map(dataset: Dataset, meta: dict[str, Any], opts: RunOptions) -> ClassMap | None:
    """The resolved --class-map (None without one, or with --no-accuracy); InputError when the data set
    has no labels to map onto, or a class of the map does not exist on its side."""
    if not opts.class_map or not opts.accuracy:
        return None
    if not dataset.labelled:
        raise InputError(f"--class-map: {dataset.source} has no labels to map the model's classes onto")
    model_names = {int(k): str(v) for k, v in (meta.get("names") or {}).items()}
    return resolve_class_map(parse_class_map(opts.class_map), model_names, dataset.names)


def run_backend(model: Path, profile: DeviceProfile) -> tuple[str, str | None]:
    """The backend a run measures: the profile's, unless the model is already another engine's
    artifact (e.g. an OpenVINO .xml under the x86-cpu profile), which runs as it is, with a note. A training
    checkpoint reaches the profile's backend through its ONNX export."""
    native = backend_for_path(model)
    if native == profile.backend or native == "onnxruntime" or is_checkpoint(str(model)):
        return profile.backend, None
    return native, (f"profile {profile.name} measures {profile.backend}; {model.name} is a model for "
                    f"{native}, so this run measures {native}")


def _label_notes(dataset: Dataset, meta: dict[str, Any], opts: RunOptions) -> list[str]:
    """An unlabelled data set takes the model's class names; without --reference its accuracy
    is skipped (a note, not an error)."""
    if dataset.labelled:
        return []
    dataset.names = {int(k): str(v) for k, v in (meta.get("names") or {}).items()}
    dataset.category_ids = {k: k for k in dataset.names}
    if opts.accuracy and not opts.reference:
        return [f"accuracy skipped: {dataset.source} has no labels; pass --reference fp32 to "
                "score each configuration against the fp32 model's detections (agreement mAP)"]
    return []


def run(opts: RunOptions, on_row: Callable[[ResultRow], None] | None = None) -> tuple[Report, Path, Path]:
    """Measure each backend (`opts.backends`, else the profile's) at each precision (`opts.precisions`,
    else the profile's); write report.json, .md and .html into the out folder (bench.sweep.outdir);
    return the report and the first two paths."""
    validate_run_options(opts)
    out = out_folder(opts.out_dir, opts.profile, opts.overwrite)  # refused before anything loads
    ctx = prepare(opts)
    profile = ctx.profile
    report, matches = start_report(ctx, opts)
    for backend in opts.backends or ctx.backends or (ctx.backend,):
        for precision in requested_precisions(opts.precisions) or profile.precisions:  # canonical, once each
            row = mark_route(mark_verified(_run_one(ctx, opts, backend, precision, out), profile), ctx)
            report.results.append(row)
            if on_row:
                on_row(row)
    duration = sustained_duration(opts.duration_s, profile, report, matches)  # none by default on a proxy host
    if duration:
        report.sustained = _sustained(ctx, opts, report.results, duration)
    finish_report(report, ctx, matches)
    json_path, md_path = write_report(report, out)
    write_html_report(report, out)
    return report, json_path, md_path


def _sustained(ctx: RunContext, opts: RunOptions, rows: list[ResultRow], duration: float) -> SustainedSection:
    """The sustained run of the first precision that measured ok (see bench.measure.sustained)."""
    row = next((r for r in rows if r.ok and r.artifact), None)
    if row is None or row.artifact is None:
        return skipped_section(duration, "no precision measured ok, so there is nothing to sustain")
    spec = measure_spec(ctx, opts, Path(row.artifact), row.precision, row.backend)
    return sustained_section(spec, duration, opts.window_s, opts.timeout_s)


def start_report(ctx: RunContext, opts: RunOptions) -> tuple[Report, bool]:
    """A new "partial" report for a run or sweep of `ctx`, and whether this host matches the profile."""
    profile = ctx.profile
    matches, why = host_matches(profile)
    cpu = host_facts().get("cpu_model") or "this host"
    host_note = None if matches else f"measured on {cpu}, not on {profile.device} ({why})"
    report = new_report(
        command=opts.command, profile=profile.to_dict(), host_matches_profile=matches, host_note=host_note,
        environment=environment(resolve_threads(_threads(opts, profile)), ctx.engine_versions, ctx.model),
        model=ModelInfo(path=str(ctx.model), sha256=artifact_sha256(ctx.model), size_mb=file_size_mb(ctx.model),
                        meta=ctx.model_meta),
        data=_data_info(ctx, opts),
        settings=_settings(opts, profile), notes=list(ctx.notes),
    )
    if ctx.reference and opts.accuracy:
        ctx.reference_gt = _reference_gt(ctx, ctx.reference, opts)
        report.settings.reference = {**ctx.reference.to_dict(), "boxes": len(ctx.reference_gt["annotations"])}
    if ctx.class_map:
        report.settings.class_map = ctx.class_map.to_dict()
    return report, matches


def _data_info(ctx: RunContext, opts: RunOptions) -> DataInfo:
    """The data set, with the number of images scored and the content hash of those images and
    their labels (0 and no hash when nothing is scored)."""
    dataset = ctx.dataset
    scored = _eval_samples(ctx, opts) if opts.accuracy and (dataset.labelled or ctx.reference) else []
    return DataInfo(path=str(dataset.source), images=len(dataset), label_issues=[str(i) for i in dataset.issues],
                    scored_images=len(scored), sha256=data_sha256(scored, dataset.labelled) if scored else None)


def _eval_samples(ctx: RunContext, opts: RunOptions) -> list[Sample]:
    samples = ctx.dataset.samples
    return samples[: opts.max_eval_images] if opts.max_eval_images else samples


def _reference_gt(ctx: RunContext, ref: Reference, opts: RunOptions) -> dict[str, Any]:
    """Run the reference configuration `ref` (detections only, one timed frame) in its own child and
    turn its detections into COCO ground truth."""
    spec = measure_spec(ctx, opts, Path(ref.artifact), ref.precision, ref.backend)
    spec = dataclasses.replace(spec, warmup=0, min_iterations=1, min_duration_s=0.0,
                               timing_images=spec.timing_images[:1], label=f"reference {ref.label}")
    outcome = run_isolated(measure, spec, timeout_s=opts.timeout_s)
    if outcome.status != "ok":
        raise InputError(f"reference {ref.label} failed: {outcome.status}: {outcome.error}")
    scored = {image_id for image_id, _ in spec.eval_images}
    return reference_gt(ctx.dataset, mapped(ctx, outcome.value["detections"]) or [], ref.conf, scored)


def _threads(opts: RunOptions, profile: DeviceProfile) -> int | None:
    return opts.threads if opts.threads is not None else default_threads(profile)  # capped at the host's cores


def _settings(opts: RunOptions, profile: DeviceProfile) -> Settings:
    b = profile.bench
    return Settings(
        warmup=opts.warmup if opts.warmup is not None else b.warmup,
        min_iterations=opts.min_iterations or b.min_iterations,
        min_duration_s=opts.min_duration_s if opts.min_duration_s is not None else b.min_duration_s,
        percentile_method="linear",
        deploy=dataclasses.asdict(profile.deploy),
        accuracy=dataclasses.asdict(profile.accuracy) if opts.accuracy else None,
        max_eval_images=opts.max_eval_images,
    )


def _run_one(ctx: RunContext, opts: RunOptions, backend: str, precision: str, out: Path) -> ResultRow:
    """One result row: skipped (with the reason), failed (with the error) or measured. An ONNX
    model is converted to `backend` first (in the child, parity into the row)."""
    model, failed = _model_for(ctx, backend, out, opts.timeout_s)
    if failed:
        return new_result(backend, precision, status="failed", error=failed)
    try:
        plan = plan_config(ctx, model, backend, precision, out)
    except ConfigSkipped as exc:
        return new_result(backend, precision, status="skipped", error=str(exc))
    spec = measure_spec(ctx, opts, plan.artifact, precision, backend)
    job = config_job(ctx, opts, spec, plan, precision)
    outcome, made = run_config(job, opts.timeout_s)
    source = plan.source or (ctx.model if model != ctx.model else None)  # a checkpoint's export: the checkpoint
    return row_from_outcome(ctx, spec, outcome, artifact=str(plan.artifact), **made,
                            source=str(source) if source else None)


def _model_for(ctx: RunContext, backend: str, out: Path, timeout_s: float) -> tuple[Path, str | None]:
    """(the model `backend` starts from, None), or (the model, why it cannot be made): a training checkpoint
    is run by torch itself and reaches every other backend through its ONNX export (made once)."""
    if not is_checkpoint(str(ctx.model)) or backend_for_path(ctx.model) == backend:
        return ctx.model, None
    onnx, error = checkpoint_onnx(ctx.model, out, timeout_s, ctx.exported)
    return (onnx, None) if onnx else (ctx.model, error)


def config_job(ctx: RunContext, opts: RunOptions, spec: MeasureSpec, plan: Planned, precision: str) -> ConfigJob:
    """The child's job: measure `spec`, converting (or quantizing, for int8) `plan.source` first when planned."""
    return ConfigJob(spec, source=str(plan.source) if plan.source else None, target=plan.target,
                     rewrites=opts.rewrites, int8=ctx.int8 if precision == "int8" and not plan.as_stored else None,
                     as_stored=plan.as_stored, unmeasurable=plan.unmeasurable)


def plan_config(ctx: RunContext, model: Path, backend: str, precision: str, out: Path) -> Planned:
    """The artifact of (backend, precision) from `model` (converted into out/artifacts/ when needed);
    ConfigSkipped when the engine is not installed (with what else this host lacks), does not run `precision`,
    or has no artifact. On a host without the backend's hardware the plan is to check the artifact (`unmeasurable`:
    why), where the backend has an inspector, else ConfigSkipped saying so."""
    ok, why = availability(backend)
    if not ok:
        raise ConfigSkipped(missing_line(backend) or f"{backend}: {why}")
    if precision not in capability(backend).runs:
        raise ConfigSkipped(f"{backend} does not run {precision}")
    plan = plan_artifact(model, backend, precision, ctx.model_precision, out, ctx.int8)
    unmeasurable = not_measurable(backend)
    if unmeasurable is None:
        return plan
    if capability(backend).inspector is None:
        raise ConfigSkipped(f"{backend} {precision}: {unmeasurable}")
    return dataclasses.replace(plan, unmeasurable=unmeasurable)


def row_from_outcome(ctx: RunContext, spec: MeasureSpec, outcome: ChildOutcome, source: str | None = None,
                     **extra: Any) -> ResultRow:
    """The typed row of `spec` from its child's outcome (`measure`'s plain dict): failed with
    `status: error`, or measured with accuracy scored here (against the ground truth of the
    evaluated images only), the artifact's hash (and that of the `source` it was converted from),
    and the sanity gates applied (bench.sweep.gates)."""
    backend, precision = spec.backend, spec.precision
    if outcome.status == "skipped":  # the configuration asks what this host cannot run (runtimes.precision)
        return new_result(backend, precision, status="skipped", error=outcome.error, **extra)
    if outcome.status != "ok":
        return new_result(backend, precision, status="failed", error=f"{outcome.status}: {outcome.error}", **extra)
    fields = dict(outcome.value)
    detections = mapped(ctx, fields.pop("detections"))
    row = new_result(backend, precision, **{**extra, **fields})
    row.artifact_sha256 = artifact_sha256(spec.model)
    row.source_sha256 = artifact_sha256(source) if source else None
    qualify(row, ctx.profile)  # "noisy" and "proxy" flags (bench.sweep.qualify)
    if detections is None:
        return row
    scored = {image_id for image_id, _ in spec.eval_images}
    row.accuracy = _accuracy(ctx, detections, scored) if ctx.dataset.labelled else None
    if ctx.reference_gt is not None and ctx.reference is not None:
        row.agreement = dataclasses.replace(_accuracy(ctx, detections, scored, ctx.reference_gt),
                                            kind="agreement", reference=ctx.reference.label)
    gate_row(row, len(detections), *_boxes_to_find(ctx, scored))
    return row


def mapped(ctx: RunContext, detections: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """`detections` (category ids = model classes under a --class-map) re-labelled with the data set's
    category ids, dropping the classes the map leaves out; as they are without a map."""
    if ctx.class_map is None or detections is None:
        return detections
    return ctx.class_map.apply(detections, ctx.dataset.category_ids)


def _boxes_to_find(ctx: RunContext, scored: set[int]) -> tuple[int, int]:
    """(labelled boxes, reference boxes) on the scored images."""
    labelled = sum(len(s) for s in ctx.dataset.samples if s.image_id in scored) if ctx.dataset.labelled else 0
    ref = sum(1 for a in (ctx.reference_gt or {}).get("annotations", ()) if a["image_id"] in scored)
    return labelled, ref


def measure_spec(ctx: RunContext, opts: RunOptions, artifact: Path, precision: str,
                 backend: str | None = None) -> MeasureSpec:
    """The MeasureSpec of one configuration (backend defaults to the run's)."""
    backend = backend or ctx.backend or ctx.profile.backend
    settings = _settings(opts, ctx.profile)
    samples, evals = ctx.dataset.samples, _eval_samples(ctx, opts)
    return MeasureSpec(
        model=str(artifact), backend=backend, precision=precision,
        threads=_threads(opts, ctx.profile), warmup=settings.warmup or 0,
        min_iterations=settings.min_iterations or 0, min_duration_s=settings.min_duration_s or 0.0,
        deploy=settings.deploy,
        accuracy=settings.accuracy if ctx.dataset.labelled or ctx.reference else None,
        timing_images=[str(s.image_path) for s in samples[:16]],
        eval_images=[(s.image_id, str(s.image_path)) for s in evals],
        category_ids=_child_category_ids(ctx), label=f"{backend}/{precision}",
    )


def _child_category_ids(ctx: RunContext) -> dict[int, int]:
    """The category ids the measuring child gives detections: the data set's, or under a --class-map
    the model's class indices (the parent re-labels them, see `mapped`)."""
    if ctx.class_map is None:
        return dict(ctx.dataset.category_ids)
    return {k: k for k in ctx.class_map.model_names}


def _accuracy(ctx: RunContext, detections: list[dict[str, Any]], image_ids: set[int],
              gt: dict[str, Any] | None = None) -> Accuracy:
    """COCO stats of `detections` against the labels (or against `gt`, e.g. a reference's)."""
    gt = gt if gt is not None else restrict_to_images(ctx.dataset.to_coco(), image_ids)
    names = {ctx.dataset.category_ids[k]: v for k, v in ctx.dataset.names.items()}
    result = evaluate(gt, detections, deploy_conf=ctx.profile.deploy.conf, names=names)
    return Accuracy.from_dict({
        **result.stats, "precision": result.precision, "recall": result.recall, "f1": result.f1,
        "conf": result.deploy_conf, "per_class_ap": result.per_class_ap, "engine": result.engine,
        "num_detections": result.num_detections, "num_images": result.num_images,
        **result.views()})
