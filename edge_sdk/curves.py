"""Validation views at IoU 0.5: precision-recall and F1-vs-confidence curves, best-F1 threshold, confusion matrix.

numpy only. Inputs are COCO ground truth (`images`, `annotations`, `categories`) and COCO results
(`{image_id, category_id, bbox: [x, y, w, h], score}`), as `edge_sdk.coco_eval.evaluate` takes them.
These are extra views: the COCO stats (AP, AP50, ...) still come from pycocotools.

Matching, per image and class: detections by descending score each take the unmatched GT box of
their class with the highest IoU >= 0.5; a detection whose best match is a crowd box
is ignored (neither TP nor FP), and crowd boxes are not counted as objects, as in COCO.
Unlike pycocotools there is no 100-detections-per-image cap.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["IOU", "GRID", "ClassMatches", "match_by_class", "pr_curve", "interpolated_precision",
           "conf_curves", "best_f1", "confusion_matrix", "views", "BACKGROUND"]

IOU = 0.5
#: points of the confidence grid (0, 0.01, ..., 1) and of the recall grid of the PR curve
GRID = 101
#: per-class curves keep every CLASS_STEP-th point of the grid
CLASS_STEP = 2
BACKGROUND = "background"
_DIGITS = 3


@dataclass(frozen=True)
class ClassMatches:
    """The scored detections of one class (descending score), which ones are TPs, and its GT count."""

    scores: np.ndarray
    tp: np.ndarray
    n_gt: int

    @staticmethod
    def merge(parts: Sequence[ClassMatches]) -> ClassMatches:
        """All classes pooled (micro average)."""
        if not parts:
            return ClassMatches(np.zeros(0), np.zeros(0, bool), 0)
        scores = np.concatenate([p.scores for p in parts])
        order = np.argsort(-scores, kind="mergesort")
        return ClassMatches(scores[order], np.concatenate([p.tp for p in parts])[order],
                            sum(p.n_gt for p in parts))


# --- boxes and matching ------------------------------------------------------------------------------

def _xyxy(bboxes: Sequence[Sequence[float]]) -> np.ndarray:
    b = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def iou_matrix(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of each detection (rows) with each GT box (xyxy); for crowd GT, intersection / detection area."""
    lt = np.maximum(dt[:, None, :2], gt[None, :, :2])
    rb = np.minimum(dt[:, None, 2:], gt[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_d = np.prod(dt[:, 2:] - dt[:, :2], axis=1)[:, None]
    area_g = np.prod(gt[:, 2:] - gt[:, :2], axis=1)[None, :]
    union = np.where(crowd[None, :], area_d, area_d + area_g - inter)
    out: np.ndarray = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return out


@dataclass(frozen=True)
class _Boxes:
    xyxy: np.ndarray
    crowd: np.ndarray
    cls: np.ndarray


def _gt_by_image(gt: Mapping[str, Any]) -> dict[int, _Boxes]:
    groups: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for a in gt["annotations"]:
        groups[int(a["image_id"])].append(a)
    return {img: _Boxes(_xyxy([a["bbox"] for a in anns]),
                        np.array([bool(a.get("iscrowd", 0)) for a in anns], bool),
                        np.array([int(a["category_id"]) for a in anns]))
            for img, anns in groups.items()}


def _greedy(ious: np.ndarray, crowd: np.ndarray, taken: np.ndarray, iou: float) -> np.ndarray:
    """Match rows (detections, by descending score) to columns: the matched GT index, -1 unmatched, -2 ignored.
    `taken` (GT already matched) is updated in place."""
    out = np.full(ious.shape[0], -1)
    for d in range(ious.shape[0]):
        free = np.where(taken | crowd, -1.0, ious[d])
        g = int(np.argmax(free)) if free.size else -1
        if g >= 0 and free[g] >= iou:
            out[d], taken[g] = g, True
        elif crowd.any() and float(np.max(np.where(crowd, ious[d], -1.0))) >= iou:
            out[d] = -2
    return out


def _match_one(dets: list[Mapping[str, Any]], boxes: _Boxes | None, cat: int, iou: float) -> tuple[np.ndarray, ...]:
    """(scores, tp, ignored) of one image's detections of class `cat` (descending score)."""
    scores = np.array([float(d["score"]) for d in dets])
    order = np.argsort(-scores, kind="mergesort")
    scores = scores[order]
    if boxes is None or not np.any(boxes.cls == cat):
        return scores, np.zeros(len(dets), bool), np.zeros(len(dets), bool)
    sel = boxes.cls == cat
    ious = iou_matrix(_xyxy([dets[i]["bbox"] for i in order]), boxes.xyxy[sel], boxes.crowd[sel])
    m = _greedy(ious, boxes.crowd[sel], np.zeros(int(sel.sum()), bool), iou)
    return scores, m >= 0, m == -2


def match_by_class(gt: Mapping[str, Any], dets: Sequence[Mapping[str, Any]],
                   iou: float = IOU) -> dict[int, ClassMatches]:
    """ClassMatches of every GT category id (categories without GT boxes or detections included)."""
    by_image = _gt_by_image(gt)
    groups: dict[tuple[int, int], list[Mapping[str, Any]]] = defaultdict(list)
    for d in dets:
        groups[(int(d["image_id"]), int(d["category_id"]))].append(d)
    scores: dict[int, list[np.ndarray]] = defaultdict(list)
    tps: dict[int, list[np.ndarray]] = defaultdict(list)
    for (img, cat), group in groups.items():
        s, tp, ignored = _match_one(group, by_image.get(img), cat, iou)
        scores[cat].append(s[~ignored])
        tps[cat].append(tp[~ignored])
    n_gt: dict[int, int] = defaultdict(int)
    for boxes in by_image.values():
        for cat in boxes.cls[~boxes.crowd]:
            n_gt[int(cat)] += 1
    out = {}
    for cat in [int(c["id"]) for c in gt["categories"]]:
        parts = [ClassMatches(s, t, 0) for s, t in zip(scores.get(cat, []), tps.get(cat, []), strict=True)]
        merged = ClassMatches.merge(parts)
        out[cat] = ClassMatches(merged.scores, merged.tp, n_gt.get(cat, 0))
    return out


def _grid(points: int) -> np.ndarray:
    """0..1 in `points` steps, each exactly i / (points - 1) (0.7 is 0.7, not 0.7000000000000001)."""
    return np.arange(points) / max(points - 1, 1)


# --- curves ------------------------------------------------------------------------------------------

def pr_curve(m: ClassMatches) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) after each detection in descending-score order (recall is 0 without GT)."""
    tp = np.cumsum(m.tp)
    precision = tp / np.arange(1, len(tp) + 1)
    recall = tp / m.n_gt if m.n_gt else np.zeros(len(tp))
    return precision, recall


def interpolated_precision(precision: np.ndarray, recall: np.ndarray, points: int = GRID) -> np.ndarray:
    """COCO's interpolated precision at `points` recall levels 0..1 (the highest precision at any recall >= r;
    0 where the recall is never reached). Its mean is the 101-point AP."""
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    idx = np.searchsorted(recall, _grid(points), side="left")
    out = np.zeros(points)
    ok = idx < len(envelope)
    out[ok] = envelope[idx[ok]]
    return out


def conf_curves(m: ClassMatches, points: int = GRID) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, F1) counting detections with score >= each of `points` thresholds 0..1.
    Precision is NaN at a threshold that keeps no detection."""
    grid = _grid(points)
    asc = m.scores[::-1]
    kept = len(asc) - np.searchsorted(asc, grid, side="left")
    tp_cum = np.concatenate([[0], np.cumsum(m.tp)])
    tp = tp_cum[kept]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(kept > 0, tp / np.maximum(kept, 1), np.nan)
    recall = tp / m.n_gt if m.n_gt else np.zeros(points)
    p0 = np.nan_to_num(precision)
    f1 = np.divide(2 * p0 * recall, p0 + recall, out=np.zeros(points), where=(p0 + recall) > 0)
    return precision, recall, f1


def best_f1(f1: np.ndarray) -> tuple[float, float]:
    """(confidence, F1) of the best F1 on the 0..1 grid: the middle of the first run of grid points at the
    maximum, so a plateau's threshold is not its edge."""
    grid = _grid(len(f1))
    top = float(np.max(f1)) if len(f1) else 0.0
    at = np.flatnonzero(f1 >= top - 1e-9)
    run_end = at[0]
    while run_end + 1 < len(f1) and f1[run_end + 1] >= top - 1e-9:
        run_end += 1
    return float(grid[(at[0] + run_end) // 2]), top


# --- confusion matrix --------------------------------------------------------------------------------

def confusion_matrix(gt: Mapping[str, Any], dets: Sequence[Mapping[str, Any]], conf: float,
                     iou: float = IOU) -> np.ndarray:
    """(nc+1) x (nc+1) counts, rows = predicted class, columns = true class, in GT category order; the last
    row and column are background: a missed object counts in the background row, a false detection in the
    background column. Detections with score >= conf; same-class matches first, then the remaining
    detections take any remaining GT box (IoU >= iou, descending score); crowd matches are left out."""
    cats = [int(c["id"]) for c in gt["categories"]]
    index = {c: i for i, c in enumerate(cats)}
    nc = len(cats)
    out = np.zeros((nc + 1, nc + 1), dtype=np.int64)
    by_image = _gt_by_image(gt)
    per_image: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for d in dets:
        if float(d["score"]) >= conf and int(d["category_id"]) in index:
            per_image[int(d["image_id"])].append(d)
    for img in set(by_image) | set(per_image):
        _confuse(out, by_image.get(img), per_image.get(img, []), index, iou)
    return out


def _confuse(out: np.ndarray, boxes: _Boxes | None, dets: list[Mapping[str, Any]], index: Mapping[int, int],
             iou: float) -> None:
    nc = len(index)
    dets = sorted(dets, key=lambda d: -float(d["score"]))
    dcls = np.array([index[int(d["category_id"])] for d in dets], dtype=np.int64)
    if boxes is None:
        np.add.at(out, (dcls, np.full(len(dets), nc)), 1)
        return
    gcls = np.array([index.get(int(c), -1) for c in boxes.cls], dtype=np.int64)
    ious = iou_matrix(_xyxy([d["bbox"] for d in dets]), boxes.xyxy, boxes.crowd)
    taken = gcls < 0  # a box of a category the GT does not list is never matched
    match = np.full(len(dets), -1)
    for k in range(nc):  # same class first
        rows, cols = np.flatnonzero(dcls == k), np.flatnonzero(gcls == k)
        if len(rows) and len(cols):
            sub_taken = taken[cols]
            m = _greedy(ious[np.ix_(rows, cols)], boxes.crowd[cols], sub_taken, iou)
            taken[cols] = sub_taken
            match[rows] = np.where(m >= 0, cols[np.maximum(m, 0)], m)
    rest = np.flatnonzero(match == -1)
    if len(rest):  # then across classes (non-crowd boxes only)
        m = _greedy(ious[rest], boxes.crowd, taken, iou)
        match[rest] = m
    for d, g in enumerate(match):
        if g >= 0:
            out[dcls[d], gcls[g]] += 1
        elif g == -1:
            out[dcls[d], nc] += 1
    missed = ~taken & ~boxes.crowd & (gcls >= 0)
    np.add.at(out, (np.full(int(missed.sum()), nc), gcls[missed]), 1)


# --- the compact, JSON-ready views -------------------------------------------------------------------

def _round(values: np.ndarray) -> list[float | None]:
    return [None if v != v else round(float(v), _DIGITS) for v in values]


def _class_view(m: ClassMatches, overall: bool = False) -> dict[str, Any]:
    """The JSON view of one class (p/r/f1 every CLASS_STEP-th grid point) or of all (every point, and pr)."""
    precision, recall, f1 = conf_curves(m)
    pr = interpolated_precision(*pr_curve(m))
    conf, best = best_f1(f1)
    step = 1 if overall else CLASS_STEP
    out = {"gt": m.n_gt, "detections": len(m.scores), "ap50": round(float(pr.mean()), 4),
           "best_f1": round(best, 4), "best_f1_conf": conf,
           "p": _round(precision[::step]), "r": _round(recall[::step]), "f1": _round(f1[::step])}
    return {**out, "pr": _round(pr)} if overall else out


def views(gt: Mapping[str, Any], dets: Sequence[Mapping[str, Any]], labels: Mapping[int, str],
          deploy_conf: float, iou: float = IOU) -> dict[str, Any]:
    """best_f1_conf, best_f1, curves and confusion of a set of detections, as plain JSON data.

    curves: `all` (every class pooled: micro average) with `p`, `r`, `f1` per confidence of `conf` (0..1 in
    0.01 steps) and `pr` (COCO-interpolated precision per level of `recall`, 0..1 in 0.01 steps); `classes`
    (each category with GT boxes, by label) with `p`, `r`, `f1` per confidence of `class_conf` (0.02 steps,
    to keep report.json small with many classes). Each also has `ap50` (101-point, from its full PR curve;
    `all`'s is the micro AP50), `best_f1` and `best_f1_conf` (on the 0.01 grid), `gt` and `detections`.
    `map50` is the mean of the classes' ap50 (COCO's AP50 up to the 100-detections cap and score ties).
    Precision is None where no detection is kept. confusion: `labels` (the classes, then background),
    `matrix` (rows predicted, columns true), `conf` and `iou`.
    """
    per = match_by_class(gt, dets, iou)
    classes = {labels.get(cat, str(cat)): _class_view(m) for cat, m in per.items() if m.n_gt}
    overall = _class_view(ClassMatches.merge(list(per.values())), overall=True)
    grid = [round(float(v), 2) for v in _grid(GRID)]
    aps = [c["ap50"] for c in classes.values()]
    curves = {"iou": iou, "conf": grid, "recall": grid, "class_conf": grid[::CLASS_STEP],
              "map50": round(float(np.mean(aps)), 4) if aps else None, "all": overall, "classes": classes}
    cats = [int(c["id"]) for c in gt["categories"]]
    matrix = confusion_matrix(gt, dets, deploy_conf, iou)
    confusion = {"labels": [labels.get(c, str(c)) for c in cats] + [BACKGROUND], "rows": "predicted",
                 "columns": "true", "conf": float(deploy_conf), "iou": iou, "matrix": matrix.tolist()}
    return {"best_f1_conf": overall["best_f1_conf"], "best_f1": overall["best_f1"], "curves": curves,
            "confusion": confusion}
