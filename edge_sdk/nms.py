"""Greedy class-aware non-maximum suppression in numpy."""
from __future__ import annotations

import numpy as np


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


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_det: int = 300) -> np.ndarray:
    """Indices kept by greedy NMS (highest score first; ties keep the lower index)."""
    order = np.argsort(-scores, kind="stable")
    boxes = boxes[order]
    alive = np.ones(len(order), bool)
    keep: list[int] = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(i)
        if len(keep) >= max_det:
            break
        rest = np.nonzero(alive[i + 1:])[0] + i + 1
        if len(rest):
            alive[rest[box_iou_one(boxes[i], boxes[rest]) > iou_threshold]] = False
    return order[np.asarray(keep, dtype=np.int64)]


def batched_nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float,
                max_det: int = 300, agnostic: bool = False) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other."""
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    if agnostic:
        return nms(boxes, scores, iou_threshold, max_det)
    # Shift each class into its own region so one NMS pass handles all classes.
    span = float(np.abs(boxes).max()) * 2 + 1.0
    shifted = boxes + (class_ids.astype(boxes.dtype) * span)[:, None]
    return nms(shifted, scores, iou_threshold, max_det)
