"""Greedy class-aware non-maximum suppression in numpy.

IoU is computed in float64 on the boxes as given (no per-class coordinate offsets, which cost
float32 precision), so decisions at the IoU threshold are exact. Only pairs of the same class
that can overlap by more than the threshold are scored: a sort-and-sweep over x finds them.
"""
from __future__ import annotations

import numpy as np

#: Up to this many boxes (per class when there are more), NMS scores all candidate pairs in
#: one vectorised step (at most n^2/2 pairs); above it, a loop per kept box.
PAIRWISE_MAX = 1024


def box_iou_one(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box against many."""
    ix1 = np.maximum(box[0], boxes[:, 0])
    iy1 = np.maximum(box[1], boxes[:, 1])
    ix2 = np.minimum(box[2], boxes[:, 2])
    iy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou: np.ndarray = inter / np.maximum(area + areas - inter, 1e-12)
    return iou


def _candidate_pairs(x1: np.ndarray, x2: np.ndarray, groups: np.ndarray,
                     iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (k, i), k < i, of the same group that can have IoU > threshold (a sweep over x1).

    Each group is shifted along x by its own offset (exact in float64) and boxes are sorted by
    x1. IoU <= (x-overlap) / (width of either box), so a box's partners are the boxes after it
    that start before its x2 - threshold * width (bound loosened a little to stay conservative).
    """
    n = len(x1)
    shift = groups * (2.0 * max(float(np.abs(x1).max()), float(np.abs(x2).max())) + 1.0)
    starts = x1 + shift
    limits = x2 + shift - max(iou_threshold, 0.0) * (1 - 1e-9) * (x2 - x1) + 1e-6
    by_x = np.argsort(starts, kind="stable")
    stop = np.searchsorted(starts[by_x], limits[by_x], side="left")
    count = np.maximum(stop - np.arange(n) - 1, 0)
    a = np.repeat(np.arange(n), count)
    b = a + 1 + np.arange(len(a)) - np.repeat(np.cumsum(count) - count, count)
    p, q = by_x[a], by_x[b]
    return np.minimum(p, q), np.maximum(p, q)


def _overlapping_pairs(cols: np.ndarray, k: np.ndarray, i: np.ndarray,
                       iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (k, i) whose IoU exceeds the threshold; cols = x1, y1, x2, y2 rows [4, n]."""
    x1, y1, x2, y2 = cols
    iw = np.minimum(x2[k], x2[i]) - np.maximum(x1[k], x1[i])
    hit = np.nonzero(iw > 0)[0]
    k, i, iw = k[hit], i[hit], iw[hit]
    ih = np.minimum(y2[k], y2[i]) - np.maximum(y1[k], y1[i])
    hit = np.nonzero(ih > 0)[0]
    k, i = k[hit], i[hit]
    inter = iw[hit] * ih[hit]
    area = (x2 - x1) * (y2 - y1)
    over = inter / np.maximum(area[k] + area[i] - inter, 1e-12) > iou_threshold
    return k[over], i[over]


def _greedy_sorted(cols: np.ndarray, iou_threshold: float, groups: np.ndarray | None = None) -> np.ndarray:
    """Keep mask for boxes (rows x1, y1, x2, y2 of `cols`, float64) already sorted by score: a box
    is dropped when a kept earlier box of the same group overlaps it by IoU > threshold."""
    n = cols.shape[1]
    if n <= PAIRWISE_MAX:
        g = np.zeros(n) if groups is None else groups.astype(np.float64)
        k, i = _candidate_pairs(cols[0], cols[2], g, iou_threshold)
        k, i = _overlapping_pairs(cols, k, i, iou_threshold)
        by_i = np.lexsort((k, i))  # visit pairs by the suppressed box: keep[k] is final when read
        kept = [True] * n
        for a, b in zip(k[by_i].tolist(), i[by_i].tolist(), strict=False):
            if kept[a]:
                kept[b] = False
        return np.array(kept, bool)
    boxes, keep = cols.T, np.ones(n, bool)
    for j in range(n):  # j, not i: i holds the pair index array in the branch above
        if keep[j]:
            rest = np.nonzero(keep[j + 1:])[0] + j + 1
            same = rest if groups is None else rest[groups[rest] == groups[j]]
            keep[same[box_iou_one(boxes[j], boxes[same]) > iou_threshold]] = False
    return keep


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_det: int = 300) -> np.ndarray:
    """Indices kept by greedy NMS, best first (highest score first; ties keep the lower index)."""
    return batched_nms(boxes, scores, np.zeros(len(boxes), np.int64), iou_threshold, max_det)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float,
                max_det: int = 300, agnostic: bool = False) -> np.ndarray:
    """Class-aware NMS (boxes of different classes never suppress each other); kept indices, best first."""
    if len(boxes) == 0 or max_det <= 0:
        return np.zeros((0,), np.int64)
    order = np.argsort(-np.asarray(scores), kind="stable")
    cols = np.asarray(boxes, np.float64)[order].T.copy()  # x1, y1, x2, y2 rows, score order
    groups = None if agnostic else np.asarray(class_ids)[order]
    if len(order) <= PAIRWISE_MAX or groups is None:
        keep = _greedy_sorted(cols, iou_threshold, groups)
    else:  # many candidates (low conf): per class, each class's boxes stay in score order
        keep = np.zeros(len(order), bool)
        for c in np.unique(groups):
            idx = np.nonzero(groups == c)[0]
            keep[idx] = _greedy_sorted(cols[:, idx], iou_threshold)
    return order[np.nonzero(keep)[0][:max_det]].astype(np.int64)
