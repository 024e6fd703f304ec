"""Decode the three detection head layouts people ship into candidate boxes, then NMS."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_sdk.nms import batched_nms
from runtimes.errors import InputError, LayoutError

#: One image's decoded detections: (xyxy boxes [n, 4] float32, scores [n] float32, class ids [n] int64).
Decoded = tuple[np.ndarray, np.ndarray, np.ndarray]

#: Before NMS, keep at most this many highest-scoring candidates (bounds NMS time at conf=0.001).
MAX_CANDIDATES = 30000


@dataclass(frozen=True)
class DecodeConfig:
    """Thresholds for decoding: confidence, NMS IoU, detections kept, multi-label."""

    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    multi_label: bool = False
    agnostic: bool = False

    def __post_init__(self) -> None:
        """InputError for thresholds that make no sense (an IoU above 1 would silently turn NMS off)."""
        if not 0.0 <= self.conf <= 1.0:
            raise InputError(f"conf must be between 0 and 1, got {self.conf:g}")
        if not 0.0 < self.iou <= 1.0:
            raise InputError(f"iou must be above 0 and at most 1, got {self.iou:g}")
        if isinstance(self.max_det, bool) or int(self.max_det) < 0:
            raise InputError(f"max_det must be a non-negative integer, got {self.max_det}")


def infer_layout(shape: tuple[int, ...], nc: int | None = None) -> str:
    """'yolov8' ([B, 4+nc, N]), 'yolov5' ([B, N, 5+nc]) or 'end2end' ([B, K, 6]) from an output shape."""
    if len(shape) != 3:
        raise LayoutError(f"detection output must have rank 3 [B, ., .], got shape {tuple(shape)}")
    _, a, b = shape
    if nc is not None:
        v8, v5 = a == 4 + nc, b == 5 + nc
        if v8 and v5:  # e.g. [1, 7, 8] with 3 classes: boxes outnumber channels in real heads
            return "yolov8" if a < b else "yolov5"
        if v8:
            return "yolov8"
        if v5 and not (b == 6 and a <= 1000):
            return "yolov5"
        if b == 6:
            return "end2end"
        raise LayoutError(f"output shape {tuple(shape)} does not fit {nc} classes in any known layout")
    if b == 6 and a <= 1000:
        return "end2end"
    if a < b:
        if a < 5:
            raise LayoutError(f"output shape {tuple(shape)} has too few channels for [B, 4+nc, N]")
        return "yolov8"
    if b < 6:
        raise LayoutError(f"output shape {tuple(shape)} has too few channels for [B, N, 5+nc]")
    return "yolov5"


def _select(boxes_cxcywh: np.ndarray, cls_scores: np.ndarray,
            cfg: DecodeConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pick (box, score, class) candidates above conf: best class, or every class if multi-label."""
    if cfg.multi_label:
        rows, cols = np.nonzero(cls_scores > cfg.conf)
        scores = cls_scores[rows, cols]
    else:
        cols = cls_scores.argmax(1)
        scores = cls_scores[np.arange(len(cols)), cols]
        rows = np.nonzero(scores > cfg.conf)[0]
        cols, scores = cols[rows], scores[rows]
    if len(scores) > MAX_CANDIDATES:
        top = np.argpartition(-scores, MAX_CANDIDATES)[:MAX_CANDIDATES]
        rows, cols, scores = rows[top], cols[top], scores[top]
    return cxcywh_to_xyxy(boxes_cxcywh[rows]), scores, cols


def cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    """Centre-size boxes to corner boxes."""
    out = np.empty_like(b)
    half_w, half_h = b[:, 2] / 2, b[:, 3] / 2
    out[:, 0], out[:, 1] = b[:, 0] - half_w, b[:, 1] - half_h
    out[:, 2], out[:, 3] = b[:, 0] + half_w, b[:, 1] + half_h
    return out


def decode_yolov8(out: np.ndarray, cfg: DecodeConfig) -> Decoded:
    """One image's [4+nc, N] output -> (xyxy, scores, class_ids) after NMS, in input pixels."""
    cls = out[4:]
    best = cls.max(0)
    keep = np.nonzero(best > cfg.conf)[0]  # cheap prefilter before transposing
    if cfg.multi_label:
        boxes, scores, cols = _select(out[:4, keep].T, cls[:, keep].T, cfg)
        return _nms(boxes, scores, cols, cfg)
    # single label: the best score is already known; take its class on the kept columns only
    if len(keep) > MAX_CANDIDATES:
        keep = keep[np.argpartition(-best[keep], MAX_CANDIDATES)[:MAX_CANDIDATES]]
    cx, cy, w, h = out[:4, keep]
    half_w, half_h = w / 2, h / 2
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    return _nms(boxes, best[keep], cls[:, keep].argmax(0), cfg)


def decode_yolov5(out: np.ndarray, cfg: DecodeConfig) -> Decoded:
    """One image's [N, 5+nc] output (objectness x class score) -> (xyxy, scores, class_ids) after NMS."""
    obj = out[:, 4]
    keep = np.nonzero(obj > cfg.conf)[0]
    x = out[keep]
    cls = x[:, 5:] * x[:, 4:5]
    boxes, scores, cols = _select(x[:, :4], cls, cfg)
    return _nms(boxes, scores, cols, cfg)


def decode_end2end(out: np.ndarray, cfg: DecodeConfig) -> Decoded:
    """One image's [K, 6] output (x1, y1, x2, y2, score, class), NMS already applied in the graph."""
    keep = np.nonzero(out[:, 4] > cfg.conf)[0]
    x = out[keep]
    x = x[np.argsort(-x[:, 4], kind="stable")][: cfg.max_det]
    return x[:, :4].astype(np.float32), x[:, 4].astype(np.float32), x[:, 5].astype(np.int64)


def _nms(boxes: np.ndarray, scores: np.ndarray, cols: np.ndarray, cfg: DecodeConfig) -> Decoded:
    idx = batched_nms(boxes, scores, cols, cfg.iou, cfg.max_det, cfg.agnostic)
    return boxes[idx].astype(np.float32), scores[idx].astype(np.float32), cols[idx].astype(np.int64)


DECODERS = {"yolov8": decode_yolov8, "yolov5": decode_yolov5, "end2end": decode_end2end}


def decode(output: np.ndarray, layout: str, cfg: DecodeConfig) -> list[Decoded]:
    """Decode a batched output [B, ., .]: one (xyxy, scores, class_ids) per image."""
    try:
        fn = DECODERS[layout]
    except KeyError:
        raise LayoutError(f"unknown layout '{layout}' (known: {', '.join(DECODERS)})") from None
    arr = np.asarray(output)
    if arr.ndim != 3:
        raise LayoutError(f"detection output must have rank 3, got shape {tuple(arr.shape)}")
    return [fn(arr[i].astype(np.float32, copy=False), cfg) for i in range(arr.shape[0])]


#: ModelMeta.extra["boxes"] of a model whose box rows are divided by the input size (full-integer int8
#: outputs: converters.rewrites_outputs.normalize_boxes); decoding multiplies them back first
NORMALIZED_BOXES = "normalized"


def pixel_boxes(output: np.ndarray, layout: str, extra: dict[str, object], input_hw: tuple[int, int]) -> np.ndarray:
    """`output` with its box rows in input pixels: multiplied by (W, H, W, H) when the model's metadata says
    its boxes are normalised (YOLOv8 layout [B, 4+nc, N] only); `output` itself otherwise."""
    if extra.get("boxes") != NORMALIZED_BOXES or layout != "yolov8":
        return output
    h, w = input_hw
    scaled = np.array(output, dtype=np.float32, copy=True)
    scaled[:, :4, :] *= np.array([w, h, w, h], np.float32).reshape(1, 4, 1)
    return scaled
