"""OpenVINO INT8 under an accuracy budget: NNCF's accuracy-controlled quantization.

NNCF quantizes as `calibration.openvino.quantize` does, scores the float and the quantized model with
the caller's metric, and while the drop exceeds `max_drop` ranks the quantizer groups by how much each
costs on the validation items (the metric per item) and returns the worst ones to float. The metric is
the caller's (`Metric`: raw-output inference function and items -> a number, higher is better);
`detection_map` builds one from a labelled data set with edge_sdk's decode and COCO evaluation.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from calibration.openvino import PRESET, engines, quantize_with
from calibration.request import QuantizeRequest, QuantizeResult
from runtimes.errors import CalibrationError

#: an input tensor (1,3,H,W float32) -> the model's raw outputs
Infer = Callable[[np.ndarray], list[np.ndarray]]
#: (inference function, validation items) -> the metric (higher is better), e.g. AP50-95
Metric = Callable[[Infer, Sequence[Any]], float]


@dataclass(frozen=True)
class AccuracyControl:
    """The budget: `metric` over `items` may drop by at most `max_drop` (absolute, in the metric's units:
    0.005 is half an AP point). `tag` names the metric and items in the cache key (its hash, say); no tag:
    the result is not cached, since nothing would tell two metrics apart."""

    metric: Metric
    items: Sequence[Any]
    max_drop: float
    max_iterations: int = 30
    tag: str = ""
    scores: list[float] = field(default_factory=list, compare=False)  # every whole-set metric value, in order


def quantize_with_accuracy_control(req: QuantizeRequest, control: AccuracyControl) -> QuantizeResult:
    """NNCF accuracy-controlled PTQ of the float IR `req.artifact` into a quantized IR at `req.out`.
    The result's `float_ops` lists the layers NNCF returned to float; `extra` holds the metric of the
    float model, of the first quantized one and of the last one NNCF evaluated on the whole set, and
    how many whole-set evaluations it took (ranking the layers is most of them)."""
    eng = engines()
    nncf = eng.nncf

    def run(model: Any, scope: Any, advanced: Any) -> Any:
        from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

        return nncf.quantize_with_accuracy_control(
            model, nncf.Dataset(req.calib.with_layout("nchw").arrays()), nncf.Dataset(list(control.items)),
            _validation_fn(control), max_drop=control.max_drop, drop_type=nncf.DropType.ABSOLUTE,
            preset=getattr(nncf.QuantizationPreset, PRESET), subset_size=len(req.calib), ignored_scope=scope,
            advanced_quantization_parameters=advanced,
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                max_num_iterations=control.max_iterations))

    settings = {"accuracy_control": {"max_drop": control.max_drop, "max_iterations": control.max_iterations,
                                     "metric": control.tag, "items": len(control.items)}}
    cached = req if control.tag else _uncached(req)
    result = quantize_with(cached, eng, run, settings,
                           () if control.tag else ("accuracy-controlled result not cached: no metric tag",))
    if control.scores:  # not on a cache hit
        result.extra.update(metric_float=control.scores[0], metric_quantized=control.scores[1],
                            metric_final=control.scores[-1], metric_evaluations=len(control.scores))
    return result


def _uncached(req: QuantizeRequest) -> QuantizeRequest:
    from dataclasses import replace

    return replace(req, cache=None)


def _validation_fn(control: AccuracyControl) -> Callable[[Any, Any], tuple[float, None]]:
    """NNCF's validation function: run the compiled model over the items and score them; NNCF calls it on
    the whole set and, to rank layers, on one item at a time."""

    def validate(compiled: Any, items: Any) -> tuple[float, None]:
        request = compiled.create_infer_request()
        ports = list(compiled.outputs)

        def infer(tensor: np.ndarray) -> list[np.ndarray]:
            out = request.infer({0: np.ascontiguousarray(tensor)}, share_outputs=False)
            return [np.asarray(out[p]) for p in ports]

        chosen = list(items)
        value = float(control.metric(infer, chosen))
        if len(chosen) == len(control.items):
            if not control.scores and value <= 0:  # NNCF divides by the float model's score
                raise CalibrationError(f"accuracy control: the float model scores {value} on the "
                                       f"{len(chosen)} validation items; it needs a positive score to keep")
            control.scores.append(value)
        return value, None

    return validate


def detection_map(data: str | Path, imgsz: tuple[int, int], split: str = "val", limit: int | None = None,
                  stat: str = "AP") -> tuple[Metric, list[Any]]:
    """A COCO metric (`stat` of edge_sdk.coco_eval.STAT_KEYS: "AP" is AP50-95) on a labelled split, and its
    items (the split's first `limit` samples). Detections are decoded as mAP validation does (conf 0.001,
    IoU 0.7, multi-label, 300 per image); the model's classes must be the data set's."""
    from edge_sdk.coco_eval import coco_stats, restrict_to_images
    from edge_sdk.datasets import load_dataset
    from edge_sdk.decode import DecodeConfig, decode, infer_layout
    from edge_sdk.detections import Detections
    from edge_sdk.frames import read_image
    from edge_sdk.letterbox import preprocess

    ds = load_dataset(data, split)
    samples = ds.samples[:limit] if limit else list(ds.samples)
    gt = ds.to_coco()
    cfg = DecodeConfig(conf=0.001, iou=0.7, max_det=300, multi_label=True)

    def metric(infer: Infer, items: Sequence[Any]) -> float:
        dets: list[dict[str, Any]] = []
        for sample in items:
            blob, lb = preprocess(read_image(sample.image_path), imgsz)
            out = infer(blob)[0]
            xyxy, scores, cls = decode(out, infer_layout(tuple(out.shape), ds.nc), cfg)[0]
            found = Detections(lb.to_original(xyxy), scores, cls, ds.names, lb.image_size)
            dets.extend(found.to_coco(int(sample.image_id), ds.category_ids))
        stats = coco_stats(restrict_to_images(gt, {int(s.image_id) for s in items}), dets)
        return max(float(stats[stat]), 0.0)  # COCO's -1 (nothing to score) counts as 0

    return metric, samples
