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

from bench.sweep.defaults import default_data, default_model
from bench.sweep.inputs import is_bundled_model
from bench.sweep.int8 import calib_source
from converters.export import ExportResult, check_target, export
from converters.int8 import Int8Options
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
    calib_method: str = "minmax"
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
    int8 = Int8Options(calib=source, method=opts.calib_method, exclude=opts.exclude, int8_io=opts.int8_io,
                       calib_images=opts.calib_images, eval_images=evals, allow_overlap=opts.allow_calib_overlap)
    say(f"quantizing {model.name} for {opts.backend} ({opts.calib_method}, calibration: {source})")
    result = export(model, opts.backend, opts.out, "int8", parity=opts.parity, threads=opts.threads, int8=int8)
    outcome = QuantizeOutcome(result, notes=[note] if note else [])
    if data is None or dataset is None or not dataset.labelled:
        outcome.notes.append("no labelled data (--data): the int8 model is not scored against fp32")
        return outcome
    say(f"scoring fp32 and int8 on {min(len(dataset), opts.max_images or len(dataset))} images of {data}")
    fp32 = _score(model, data, "onnxruntime", opts)
    outcome.scores = Scores(fp32["images"], fp32, _score(Path(result.path), data, opts.backend, opts))
    if _over_budget(outcome.scores, opts):
        _search(model, data, int8, opts, outcome, outcome.scores, say)
    return outcome


def _meta(model: Path) -> dict[str, Any] | None:
    if model.suffix.lower() != ".onnx":
        raise ModelLoadError(f"{model}: quantization starts from a float ONNX model (.onnx)")
    import dataclasses

    import onnx

    props = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    return dataclasses.asdict(ModelMeta.from_props(props))


def _score(artifact: Path, data: str, backend: str, opts: QuantizeOptions) -> dict[str, Any]:
    from trainer.val import validate

    r = validate(artifact, data, backend=backend, limit=opts.max_images)
    return {"AP50-95": float(r.stats["AP"]), "AP50": float(r.stats["AP50"]), "images": int(r.num_images),
            "detections": int(r.num_detections)}


def _over_budget(scores: Scores, opts: QuantizeOptions) -> bool:
    return opts.max_map_drop is not None and scores.drop > opts.max_map_drop


def _search(model: Path, data: str, int8: Int8Options, opts: QuantizeOptions, outcome: QuantizeOutcome,
            first: Scores, say: Progress) -> None:
    """Keep the most sensitive layers in float, one more at a time, until the drop fits the budget."""
    if opts.exclude != "auto":
        outcome.notes.append(f"AP50-95 drop {first.drop:.1%} > {opts.max_map_drop:.1%}, but --exclude is "
                             "explicit: no layers were added (use --exclude auto for the search)")
        return
    from calibration.sensitivity import rank_layers

    say("ranking layers by sensitivity (output SQNR with one layer kept in float)")
    ranked = rank_layers_for(model, int8, rank_layers)
    added: list[str] = []
    for layer in ranked[: opts.max_added]:
        added.append(layer.name)
        trial = replace(int8, extra_exclude=tuple(added))
        say(f"  + {layer.name}: re-quantizing")
        result = export(model, opts.backend, opts.out, "int8", parity=opts.parity, threads=opts.threads, int8=trial)
        scores = Scores(first.images, first.fp32, _score(Path(result.path), data, opts.backend, opts))
        outcome.search.append({"added": list(added), "AP50-95": scores.int8["AP50-95"], "drop": scores.drop})
        outcome.export, outcome.scores = result, scores
        if not _over_budget(scores, opts):
            return
    outcome.notes.append(f"the drop is still over {opts.max_map_drop:.1%} after keeping {len(added)} more "
                         "layer(s) in float; consider QAT (edgebench qat) or another method")


def rank_layers_for(model: Path, int8: Int8Options, rank: Callable[..., Any]) -> list[Any]:
    """The sensitivity ranking on ONNX Runtime of `model` (float32), with the automatic exclusions as base."""
    import tempfile

    import onnx

    from calibration.exclusions import decode_tail
    from calibration.onnx_prep import float32_onnx
    from converters.int8 import calibration_set

    with tempfile.TemporaryDirectory(prefix="edgebench-sens-") as tmp:
        source = float32_onnx(model, Path(tmp) / "model.onnx")
        calib = calibration_set(source, int8)
        return list(rank(source, calib, int8.method, decode_tail(onnx.load(str(source)))))
