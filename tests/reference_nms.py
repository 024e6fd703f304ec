"""An independent, plain-Python reference for decoding + class-aware NMS + letterbox rescale.

Written from the definitions, not from edge_sdk: loops over Python floats, no numpy. Only
float32 rounding of the two arithmetic steps the model-side code does in float32 (centre-size ->
corners, objectness x class score) is emulated, so threshold decisions are taken on the same
numbers; IoU is computed in double precision.

Rules: a candidate is (box, class, score) with score > conf (strict); single-label keeps the
best class of each box (first on ties), multi-label every class above conf; candidates are
visited by score, high to low, ties by box index then class; a candidate is dropped when it
overlaps (IoU > iou) an already kept box of the same class; at most max_det are kept.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence

Det = tuple[float, float, float, float, float, int]  # x1, y1, x2, y2, score, class


def f32(x: float) -> float:
    """Round a Python float to the nearest float32 value."""
    return struct.unpack("f", struct.pack("f", x))[0]


def corners(cx: float, cy: float, w: float, h: float) -> tuple[float, float, float, float]:
    """Centre-size to corners, each step rounded to float32 like the model-side arithmetic."""
    hw, hh = f32(w / 2), f32(h / 2)
    return f32(cx - hw), f32(cy - hh), f32(cx + hw), f32(cy + hh)


def candidates_yolov8(out: Sequence[Sequence[float]], conf: float, multi_label: bool) -> list[tuple]:
    """[4+nc][N] nested lists -> (score, box index, class, box) candidates."""
    nc, n = len(out) - 4, len(out[0])
    rows = []
    for i in range(n):
        box = corners(out[0][i], out[1][i], out[2][i], out[3][i])
        rows.append((box, [out[4 + c][i] for c in range(nc)]))
    return _pick(rows, conf, multi_label)


def candidates_yolov5(out: Sequence[Sequence[float]], conf: float, multi_label: bool) -> list[tuple]:
    """[N][5+nc] nested lists -> candidates; class score = objectness x class probability."""
    rows = []
    for r in out:
        box = corners(r[0], r[1], r[2], r[3])
        rows.append((box, [f32(r[4] * p) for p in r[5:]]))
    return _pick(rows, conf, multi_label)


def _pick(rows: list[tuple], conf: float, multi_label: bool) -> list[tuple]:
    found = []
    for i, (box, scores) in enumerate(rows):
        if multi_label:
            found += [(s, i, c, box) for c, s in enumerate(scores) if s > conf]
            continue
        best = 0
        for c in range(1, len(scores)):
            if scores[c] > scores[best]:
                best = c
        if scores[best] > conf:
            found.append((scores[best], i, best, box))
    return found


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two corner boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def greedy_nms(cands: list[tuple], iou_thr: float, max_det: int) -> list[Det]:
    """Class-aware greedy NMS over (score, index, class, box) candidates."""
    ordered = sorted(cands, key=lambda t: (-t[0], t[1], t[2]))
    kept: list[tuple] = []
    for cand in ordered:
        if len(kept) >= max_det:
            break
        if all(k[2] != cand[2] or iou(k[3], cand[3]) <= iou_thr for k in kept):
            kept.append(cand)
    return [(*k[3], k[0], k[2]) for k in kept]


def end2end(out: Sequence[Sequence[float]], conf: float, max_det: int) -> list[Det]:
    """[K][6] rows (x1, y1, x2, y2, score, class): filter by conf, order by score, cut at max_det."""
    rows = [(r[4], i, r) for i, r in enumerate(out) if r[4] > conf]
    rows.sort(key=lambda t: (-t[0], t[1]))
    return [(r[0], r[1], r[2], r[3], r[4], int(r[5])) for _, _, r in rows[:max_det]]


def reference_detect(out: Sequence, layout: str, conf: float = 0.25, iou_thr: float = 0.7,
                     max_det: int = 300, multi_label: bool = False) -> list[Det]:
    """Detections in model-input pixels for one image's output (nested lists, batch dim removed)."""
    if layout == "end2end":
        return end2end(out, conf, max_det)
    pick = candidates_yolov8 if layout == "yolov8" else candidates_yolov5
    return greedy_nms(pick(out, conf, multi_label), iou_thr, max_det)


def to_original(dets: list[Det], scale: float, pad_x: float, pad_y: float, width: int, height: int,
                clip: bool = True) -> list[Det]:
    """Undo a letterbox (scale, then padding) and clip to the original image."""
    out = []
    for x1, y1, x2, y2, s, c in dets:
        box = [(x1 - pad_x) / scale, (y1 - pad_y) / scale, (x2 - pad_x) / scale, (y2 - pad_y) / scale]
        if clip:
            box = [min(max(v, 0.0), lim) for v, lim in zip(box, (width, height, width, height), strict=False)]
        out.append((*box, s, c))
    return out
