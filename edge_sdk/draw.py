"""Draw Detections on a BGR frame."""
from __future__ import annotations

import cv2
import numpy as np

from edge_sdk.detections import Detections


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per class id."""
    hue = (class_id * 47) % 180
    hsv = np.array([[[hue, 200, 255]]], np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def draw_detections(frame: np.ndarray, dets: Detections, thickness: int = 2) -> np.ndarray:
    """A copy of the frame with each box, class name and score drawn."""
    out: np.ndarray = frame.copy()
    for box, score, cid, name in zip(dets.xyxy, dets.scores, dets.class_ids, dets.class_names, strict=False):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        colour = class_colour(int(cid))
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        label = f"{name} {score:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = max(y1, th + base)
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw, ty), colour, -1)
        cv2.putText(out, label, (x1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return out
