"""Accuracy: the 12 COCO bbox stats (pycocotools or faster-coco-eval), per-class AP and
precision / recall / F1 at the deployment confidence.

AP is never computed here: the engines compute it; we only read their results.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.coco_io import engine_api, load_dt, load_gt, make_coco, quiet, resolve_engine, results_coco
from edge_sdk.curves import views as curve_views

STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass(frozen=True)
class AccuracyResult:
    """COCO stats, per-class AP50-95 and P/R/F1 (IoU 0.5, score >= deploy_conf) of one run."""

    stats: dict[str, float]
    per_class_ap: dict[str, float]
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    deploy_conf: float
    num_images: int
    num_detections: int
    engine: str
    # the validation views of edge_sdk.curves.views (None when not computed)
    best_f1_conf: float | None = None
    best_f1: float | None = None
    curves: dict[str, Any] | None = None
    confusion: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    def views(self) -> dict[str, Any]:
        """best_f1_conf, best_f1, curves and confusion (the keys of a report's accuracy record)."""
        return {"best_f1_conf": self.best_f1_conf, "best_f1": self.best_f1, "curves": self.curves,
                "confusion": self.confusion}


def restrict_to_images(gt: dict[str, Any], image_ids: set[int]) -> dict[str, Any]:
    """COCO ground truth limited to `image_ids` (images not scored must not count as misses)."""
    return {**gt, "images": [im for im in gt["images"] if im["id"] in image_ids],
            "annotations": [a for a in gt["annotations"] if a["image_id"] in image_ids]}


def coco_stats(gt: dict[str, Any] | str | Path, dt: list[dict[str, Any]] | str | Path,
               engine: str = "auto") -> dict[str, float]:
    """The 12 standard COCO bbox stats (keys STAT_KEYS, -1 where COCO has nothing to score)."""
    gt_data = load_gt(gt)
    dets = load_dt(dt, {img["id"] for img in gt_data["images"]})
    return _run_coco(gt_data, dets, engine).stats


def evaluate(gt: dict[str, Any] | str | Path, dt: list[dict[str, Any]] | str | Path, deploy_conf: float = 0.25,
             names: dict[int, str] | None = None, engine: str = "auto", views: bool = True) -> AccuracyResult:
    """COCO stats, per-class AP and P/R/F1 at `deploy_conf` for one set of detections.

    - `stats`: the 12 COCO bbox stats from the chosen engine (all detections, COCO's 100 cap).
    - `per_class_ap`: AP50-95 per category that has non-crowd GT, read from the engine's
      precision array (area "all", 100 detections); keyed by `names[category_id]`, else the GT
      category name, else the id as text.
    - P/R/F1: only detections with score >= deploy_conf count. They are matched to GT by
      pycocotools' own per-image evaluator (evalImgs) at IoU 0.5, area "all", without the
      100-per-image cap, so crowd and ignore rules are COCO's. TP = matched, non-ignored
      detections; FP = unmatched, non-ignored detections (a detection matched to a crowd box is
      ignored); FN = non-crowd GT boxes left unmatched. precision = TP / (TP + FP),
      recall = TP / (TP + FN), f1 = their harmonic mean; each is 0 when its denominator is 0.
    - best_f1_conf, best_f1, curves, confusion (when `views`): edge_sdk.curves.views at IoU 0.5 (PR and
      F1-vs-confidence curves per class and pooled, the confusion matrix at `deploy_conf`).
    """
    gt_data = load_gt(gt)
    dets = load_dt(dt, {img["id"] for img in gt_data["images"]})
    run = _run_coco(gt_data, dets, engine)
    tp, fp, fn = match_counts(gt_data, [d for d in dets if d["score"] >= deploy_conf])
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    labels = _labels(gt_data, names)
    extra = curve_views(gt_data, dets, labels, deploy_conf) if views else {}
    return AccuracyResult(
        stats=run.stats, per_class_ap=per_class_ap(run.precision, run.cat_ids, labels),
        precision=precision, recall=recall, f1=_ratio(2 * precision * recall, precision + recall),
        tp=tp, fp=fp, fn=fn, deploy_conf=float(deploy_conf), num_images=len(gt_data["images"]),
        num_detections=len(dets), engine=run.engine, **extra)


@dataclass(frozen=True)
class _CocoRun:
    stats: dict[str, float]
    precision: np.ndarray  # the engine's eval["precision"]: [T, R, K, A, M]
    cat_ids: list[int]
    engine: str


def _run_coco(gt_data: dict[str, Any], dets: list[dict[str, Any]], engine: str) -> _CocoRun:
    """Evaluate, accumulate and summarize with the engine, printing nothing."""
    name = resolve_engine(engine)
    coco_cls, make_eval = engine_api(name)
    gt_coco = make_coco(coco_cls, gt_data)
    dt_coco = results_coco(gt_coco, coco_cls, dets)
    with quiet():
        ev = make_eval(gt_coco, dt_coco)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = {key: float(value) for key, value in zip(STAT_KEYS, ev.stats[: len(STAT_KEYS)], strict=False)}
    cat_ids = [int(c) for c in ev.params.catIds]
    return _CocoRun(stats, np.asarray(ev.eval["precision"]), cat_ids, name)


def per_class_ap(precision: np.ndarray, cat_ids: list[int], labels: dict[int, str]) -> dict[str, float]:
    """AP50-95 per category from a COCO precision array (area "all", largest maxDets).

    Categories whose precision is -1 everywhere (no non-crowd GT) are left out.
    """
    out = {}
    for k, cat in enumerate(cat_ids):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        if p.size:
            out[labels.get(cat, str(cat))] = float(np.mean(p))
    return out


def match_counts(gt_data: dict[str, Any], dets: list[dict[str, Any]]) -> tuple[int, int, int]:
    """(TP, FP, FN) at IoU 0.5, area "all", from pycocotools' evalImgs over all of `dets`."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_coco = make_coco(COCO, gt_data)
    per_image: dict[int, int] = {}
    for d in dets:
        per_image[d["image_id"]] = per_image.get(d["image_id"], 0) + 1
    with quiet():
        ev = COCOeval(gt_coco, results_coco(gt_coco, COCO, dets), iouType="bbox")
        ev.params.iouThrs = np.array([0.5])
        ev.params.areaRng, ev.params.areaRngLbl = [[0.0, 1e5**2]], ["all"]
        ev.params.maxDets = [max(per_image.values(), default=1)]
        ev.evaluate()
    tp = fp = n_gt = 0
    for e in ev.evalImgs:
        if e is None:
            continue
        matched, ignored = np.asarray(e["dtMatches"][0]) > 0, np.asarray(e["dtIgnore"][0], bool)
        tp += int(np.count_nonzero(matched & ~ignored))
        fp += int(np.count_nonzero(~matched & ~ignored))
        n_gt += int(np.count_nonzero(~np.asarray(e["gtIgnore"], bool)))
    return tp, fp, n_gt - tp


def _ratio(num: float, den: float) -> float:
    return float(num) / den if den > 0 else 0.0


def _labels(gt_data: dict[str, Any], names: dict[int, str] | None) -> dict[int, str]:
    """Category id -> unique display label (names, else GT category name, else the id)."""
    raw = {c["id"]: str((names or {}).get(c["id"], c.get("name", c["id"]))) for c in gt_data["categories"]}
    counts: dict[str, int] = {}
    for label in raw.values():
        counts[label] = counts.get(label, 0) + 1
    return {cat: (label if counts[label] == 1 else f"{label} (id {cat})") for cat, label in raw.items()}


def format_accuracy(result: AccuracyResult, per_class: bool = True) -> str:
    """A readable table: the 12 stats, P/R/F1 and (optionally) per-class AP50-95."""
    def num(v: float) -> str:
        return "   n/a" if v < 0 else f"{v:6.4f}"

    lines = [f"COCO bbox metrics ({result.engine}; {result.num_images} images, "
             f"{result.num_detections} detections)"]
    for row in (STAT_KEYS[:6], STAT_KEYS[6:]):
        lines.append("  " + "  ".join(f"{k:>5} {num(result.stats[k])}" for k in row))
    lines.append(f"At conf >= {result.deploy_conf:g}, IoU 0.5: P {result.precision:.4f}  "
                 f"R {result.recall:.4f}  F1 {result.f1:.4f}  (TP {result.tp}, FP {result.fp}, FN {result.fn})")
    if per_class and result.per_class_ap:
        width = max(len(k) for k in result.per_class_ap)
        lines.append("Per-class AP50-95:")
        lines += [f"  {k:<{width}}  {v:.4f}" for k, v in result.per_class_ap.items()]
    return "\n".join(lines)
