"""`edgebench quantize`: a float ONNX -> one backend's INT8 artifact, scored against fp32 on labelled data.

The artifact comes from converters.int8 (the engine's own quantizer, the exclusion set, the parity check).
With labelled data, the fp32 model (ONNX Runtime) and the int8 artifact (its own backend) are scored on the
same images; when the relative AP50-95 drop exceeds `max_map_drop` and the exclusions are automatic,
layers ranked by per-layer sensitivity are kept in float one at a time until it fits (or `max_added`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.report.qat_advice import qat_advice
from bench.sweep.defaults import default_data, default_model
from bench.sweep.inputs import is_bundled_model
from bench.sweep.int8 import calib_source, int8_from_flags
from converters.export import ExportResult, check_target, export, record_sidecar
from converters.int8 import Int8Options, int8_runtime
from edge_sdk.datasets import load_dataset
from edge_sdk.meta import ModelMeta
from runtimes.errors import ModelLoadError

#: MLPerf's rule: int8 keeps at least 99% of the fp32 accuracy
DEFAULT_MAX_MAP_DROP = 0.01
#: at most this many layers are added to the automatic exclusions by the sensitivity search
DEFAULT_MAX_ADDED = 8

Progress = Callable[[str], None]


@dataclass
class QuantizeOptions:
    """What `edgebench quantize` was asked (None: the bundled model / its data / its calibration split)."""

    out: str
    model: str | None = None
    backend: str = "onnxruntime"
    calib: str | None = None
    calib_method: str = "auto"  # calibration.methods: a Method name, or auto (the engine's default)
    calib_images: int = 300
    exclude: str = "auto"
    allow_calib_overlap: bool = False
    int8_io: bool = False
    data: str | None = None
    max_images: int | None = None
    max_map_drop: float | None = DEFAULT_MAX_MAP_DROP  # relative AP50-95 drop; None: no search
    max_added: int = DEFAULT_MAX_ADDED
    threads: int | None = None
    parity: bool = True


@dataclass
class Scores:
    """AP50-95 / AP50 of the fp32 reference and of the int8 artifact on the same images."""

    images: int
    fp32: dict[str, float]
    int8: dict[str, float]

    @property
    def drop(self) -> float:
        """Relative AP50-95 drop (0.01 = 1%)."""
        base = self.fp32["AP50-95"]
        return (base - self.int8["AP50-95"]) / base if base > 0 else 0.0


@dataclass
class QuantizeOutcome:
    """The artifact, its scores (None without labelled data) and the sensitivity search, if one ran."""

    export: ExportResult
    scores: Scores | None = None
    search: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sensitivity: str | None = None  # the ranked Markdown table (calibration.sensitivity.format_table)

    def to_dict(self) -> dict[str, Any]:
        """What the artifact's sidecar keeps under "quantize": the scores, the search and the ranked table."""
        s = self.scores
        return {"scores": None if s is None else {"images": s.images, "fp32": s.fp32, "int8": s.int8,
                                                  "relative_drop": s.drop},
                "search": self.search, "sensitivity": self.sensitivity, "notes": self.notes}


def quantize(opts: QuantizeOptions, say: Progress | None = None) -> QuantizeOutcome:
    """Quantize, score, and (when over budget) search for the layers to keep in float."""
    say = say or (lambda _: None)
    model = Path(opts.model) if opts.model else default_model()
    check_target(opts.backend, "int8")
    if not model.is_file():
        raise ModelLoadError(f"model not found: {model}")
    meta = _meta(model)
    source, note = calib_source(opts.calib, model, meta)
    data = opts.data or (str(default_data(meta)) if is_bundled_model(model, meta) else None)
    dataset = load_dataset(data, "val", allow_unlabelled=True) if data else None
    evals = tuple(str(s.image_path) for s in dataset.samples) if dataset else ()
    int8 = int8_from_flags(opts, source, evals, progress=True)
    say(f"quantizing {model.name} for {opts.backend} ({opts.calib_method}, calibration: {source})")
    result = export(model, opts.backend, opts.out, "int8", parity=opts.parity, threads=opts.threads, int8=int8)
    outcome = QuantizeOutcome(result, notes=[note] if note else [])
    proxy = int8_runtime(opts.backend)[1]
    if proxy:
        outcome.notes.append(f"{opts.backend} int8: {proxy}")
    if data is None or dataset is None or not dataset.labelled:
        outcome.notes.append("no labelled data (--data): the int8 model is not scored against fp32")
        return outcome
    say(f"scoring fp32 and int8 on {min(len(dataset), opts.max_images or len(dataset))} images of {data}")
    fp32 = _score(model, data, "onnxruntime", opts)
    outcome.scores = Scores(fp32["images"], fp32, _score(Path(result.path), data, opts.backend, opts))
    if _over_budget(outcome.scores, opts):
        if opts.backend == "openvino" and opts.exclude == "auto":
            _accuracy_control(model, data, source, int8, opts, outcome, outcome.scores, say)
        else:
            _search(model, (data, source), int8, opts, outcome, outcome.scores, say)
    if _over_budget(outcome.scores, opts):  # still over after the search: the QAT command, or why not
        outcome.notes.append(f"AP50-95 drop {outcome.scores.drop:.1%} > {opts.max_map_drop:.1%}: "
                             + qat_advice(model, opts.data, opts.backend, meta))
    record_sidecar(Path(outcome.export.path), "quantize", outcome.to_dict())
    return outcome


def _meta(model: Path) -> dict[str, Any] | None:
    if model.suffix.lower() != ".onnx":
        raise ModelLoadError(f"{model}: quantization starts from a float ONNX model (.onnx)")
    import dataclasses

    import onnx

    props = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    return dataclasses.asdict(ModelMeta.from_props(props))


def _score(artifact: Path, data: str, backend: str, opts: QuantizeOptions, split: str = "val",
           limit: int | None = None) -> dict[str, Any]:
    from trainer.val import validate

    backend = int8_runtime(backend)[0]  # an artifact no engine here runs is scored on its proxy (TensorRT: ORT)
    r = validate(artifact, data, split=split, backend=backend, limit=limit or opts.max_images)
    return {"AP50-95": float(r.stats["AP"]), "AP50": float(r.stats["AP50"]), "images": int(r.num_images),
            "detections": int(r.num_detections)}


def _over_budget(scores: Scores, opts: QuantizeOptions) -> bool:
    return opts.max_map_drop is not None and scores.drop > opts.max_map_drop


def _search(model: Path, data_calib: tuple[str, str], int8: Int8Options, opts: QuantizeOptions,
            outcome: QuantizeOutcome, first: Scores, say: Progress) -> None:
    """Keep the most sensitive layers in float, one more at a time, until the drop fits the budget. Each step
    is judged on the labelled calibration split (up to AC_ITEMS images) when there is one, so the evaluation
    images do not choose the layers; the final scores are on the evaluation images."""
    data, calib = data_calib
    if opts.exclude != "auto":
        outcome.notes.append(f"AP50-95 drop {first.drop:.1%} > {opts.max_map_drop:.1%}, but --exclude is "
                             "explicit: no layers were added (use --exclude auto for the search)")
        return
    from calibration.sensitivity import format_table, rank_layers

    say("ranking layers by sensitivity (output SQNR with one layer kept in float)")
    ranked = rank_layers_for(model, int8, rank_layers)
    outcome.sensitivity = format_table(ranked)
    judge, split = _validation_split(calib, data)
    if _is_evaluation(judge, split, data):
        outcome.notes.append("the layers were chosen on the evaluation images (the calibration images have no "
                             "labels): the final int8 score is slightly flattered")
    base = _score(model, judge, "onnxruntime", opts, split, AC_ITEMS)
    added: list[str] = []
    for layer in ranked[: opts.max_added]:
        added.append(layer.node)
        trial = replace(int8, extra_exclude=tuple(added))
        say(f"  + {layer.node}: re-quantizing")
        result = export(model, opts.backend, opts.out, "int8", parity=opts.parity, threads=opts.threads, int8=trial)
        step = Scores(base["images"], base, _score(Path(result.path), judge, opts.backend, opts, split, AC_ITEMS))
        outcome.search.append({"added": list(added), "AP50-95": step.int8["AP50-95"], "drop": step.drop,
                               "on": f"{judge}:{split}"})
        outcome.export = result
        if not _over_budget(step, opts):
            break
    outcome.scores = Scores(first.images, first.fp32, _score(Path(outcome.export.path), data, opts.backend, opts))
    if _over_budget(outcome.scores, opts):
        outcome.notes.append(f"the drop is still over {opts.max_map_drop:.1%} after keeping {len(added)} more "
                             "layer(s) in float; consider QAT or another method")


#: the split of --data that int8 is scored on
EVAL_SPLIT = "val"
#: validation images NNCF's accuracy control scores each candidate on (it evaluates the set many times)
AC_ITEMS = 100


def _accuracy_control(model: Path, data: str, calib: str, int8: Int8Options, opts: QuantizeOptions,
                      outcome: QuantizeOutcome, first: Scores, say: Progress) -> None:
    """OpenVINO's own route for a budget: NNCF's accuracy-controlled quantization, validating on the labelled
    calibration split when there is one (else on the first AC_ITEMS evaluation images, which flatters the
    final score: said in a note)."""
    from functools import partial

    from calibration.openvino_accuracy import AccuracyControl, detection_map, quantize_with_accuracy_control

    items_from, split = _validation_split(calib, data)
    if _is_evaluation(items_from, split, data):
        outcome.notes.append(f"accuracy control validated on the first {AC_ITEMS} evaluation images (the "
                             "calibration images have no labels): the int8 score is slightly flattered")
    hw = tuple(int(v) for v in (_meta(model) or {}).get("imgsz") or ())
    metric, items = detection_map(items_from, (hw[0], hw[1]), split=split, limit=AC_ITEMS)
    control = AccuracyControl(metric, items, max_drop=(opts.max_map_drop or 0.0) * first.fp32["AP50-95"])
    say(f"NNCF accuracy control: max AP50-95 drop {control.max_drop:.4f} on {len(items)} images of {items_from}")
    result = export(model, opts.backend, opts.out, "int8", parity=opts.parity, threads=opts.threads, int8=int8,
                    quantizer=partial(quantize_with_accuracy_control, control=control))
    scores = Scores(first.images, first.fp32, _score(Path(result.path), data, opts.backend, opts))
    kept = (result.quantization or {}).get("float_ops") or []
    outcome.search.append({"added": [f"NNCF returned {len(kept)} layer(s) to float"],
                           "AP50-95": scores.int8["AP50-95"], "drop": scores.drop})
    outcome.export, outcome.scores = result, scores


def _validation_split(calib: str, data: str) -> tuple[str, str]:
    """(data set, split) to validate on: the calibration source when it is a labelled data.yaml, else `data`."""
    from calibration.dataset import DEFAULT_SPLIT, split_source

    path, given = split_source(calib)
    split = given or DEFAULT_SPLIT
    if path.suffix.lower() in (".yaml", ".yml") and path.is_file():
        from edge_sdk.datasets import load_dataset

        if load_dataset(path, split).labelled:
            return str(path), split
    return data, EVAL_SPLIT


def _is_evaluation(source: str, split: str, data: str) -> bool:
    """Whether (source, split) is the evaluation split of `data` (the same data.yaml may hold both)."""
    return split == EVAL_SPLIT and Path(source).resolve() == Path(data).resolve()


def rank_layers_for(model: Path, int8: Int8Options, rank: Callable[..., Any]) -> list[Any]:
    """The sensitivity ranking on ONNX Runtime of `model` (float32), with the automatic exclusions as base."""
    import tempfile

    import onnx

    from calibration.cache import CalibrationCache
    from calibration.exclusions import auto_exclusion
    from calibration.methods import resolve_method
    from calibration.onnx_prep import float32_onnx
    from converters.int8 import calibration_set

    with tempfile.TemporaryDirectory(prefix="edgebench-sens-") as tmp:
        source = float32_onnx(model, Path(tmp) / "model.onnx")
        calib = calibration_set(source, int8)
        cache = CalibrationCache(int8.cache_dir) if int8.cache else None
        base = auto_exclusion(onnx.load(str(source)))
        return list(rank(source, calib, resolve_method(int8.method, "onnxruntime"), base, cache=cache))
