"""Greedy class-aware non-maximum suppression in numpy.

IoU is computed in float64 on the unshifted boxes, per class: no coordinate offsets per class
(which cost float32 precision), so decisions at the IoU threshold are exact.
"""
from __future__ import annotations

import numpy as np

#: Up to this many boxes (per class when there are more), NMS computes the IoU of every
#: same-class pair in one vectorised step (at most n^2/2 pairs); above it, a loop per kept box.
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
    return inter / np.maximum(area + areas - inter, 1e-12)


def _same_group_pairs(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs (k, i), k < i, with groups[k] == groups[i]; within a group ordered by i."""
    n = len(groups)
    perm = np.lexsort((np.arange(n), groups))  # by group, each group in index order
    g = groups[perm]
    starts = np.r_[0, np.nonzero(g[1:] != g[:-1])[0] + 1]
    start_of = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.arange(n) - start_of  # position inside its group = number of partners before it
    i_sorted = np.repeat(np.arange(n), rank)
    k_sorted = start_of[i_sorted] + np.arange(len(i_sorted)) - np.repeat(np.cumsum(rank) - rank, rank)
    return perm[k_sorted], perm[i_sorted]


def _overlapping_pairs(boxes: np.ndarray, k: np.ndarray, i: np.ndarray,
                       iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (k, i) whose IoU exceeds the threshold (pairs that do not intersect are dropped first)."""
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[:, j]) for j in range(4))
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


def _greedy_sorted(boxes: np.ndarray, iou_threshold: float, groups: np.ndarray | None = None) -> np.ndarray:
    """Keep mask for boxes already sorted by score: a box is dropped when a kept earlier box of
    the same group overlaps it by IoU > threshold."""
    n = len(boxes)
    keep = np.ones(n, bool)
    if n <= PAIRWISE_MAX:
        # Same-group pairs (k, i), k < i, ordered by i in each group: keep[k] is final before it is read.
        k, i = _same_group_pairs(np.zeros(n, np.int64) if groups is None else groups)
        k, i = _overlapping_pairs(boxes, k, i, iou_threshold)
        kept = keep.tolist()
        for a, b in zip(k.tolist(), i.tolist()):
            if kept[a]:
                kept[b] = False
        return np.array(kept, bool)
    for i in range(n):
        if keep[i]:
            rest = np.nonzero(keep[i + 1:])[0] + i + 1
            same = rest if groups is None else rest[groups[rest] == groups[i]]
            keep[same[box_iou_one(boxes[i], boxes[same]) > iou_threshold]] = False
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
    sorted_boxes = np.asarray(boxes, np.float64)[order]
    groups = None if agnostic else np.asarray(class_ids)[order]
    if len(order) <= PAIRWISE_MAX or groups is None:
        keep = _greedy_sorted(sorted_boxes, iou_threshold, groups)
    else:  # many candidates (low conf): per class, each class's boxes stay in score order
        keep = np.zeros(len(order), bool)
        for c in np.unique(groups):
            idx = np.nonzero(groups == c)[0]
            keep[idx] = _greedy_sorted(sorted_boxes[idx], iou_threshold)
    return order[np.nonzero(keep)[0][:max_det]].astype(np.int64)
