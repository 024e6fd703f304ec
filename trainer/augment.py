"""Training augmentations on numpy images (HxWx3 BGR uint8) and xyxy pixel boxes.

Every function takes and returns (image, boxes [n, 4] float32, classes [n] int64) and moves the
boxes with the pixels, so labels stay on their objects.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

PAD = 114
Labelled = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths and probabilities."""

    mosaic: float = 1.0
    mixup: float = 0.0
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    fliplr: float = 0.5
    degrees: float = 0.0
    translate: float = 0.1
    scale: float = 0.5
    min_box_px: float = 2.0


def resize_long_side(image: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize so the longer side equals `size`, keeping the aspect ratio."""
    h, w = image.shape[:2]
    r = size / max(h, w)
    if r == 1:
        return image, boxes
    interp = cv2.INTER_LINEAR if r > 1 else cv2.INTER_AREA
    image = cv2.resize(image, (max(1, round(w * r)), max(1, round(h * r))), interpolation=interp)
    return image, boxes * np.float32(r)


def letterbox(image: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad a (long side = size) image to size x size, centred, and shift the boxes."""
    h, w = image.shape[:2]
    top, left = (size - h) // 2, (size - w) // 2
    out = cv2.copyMakeBorder(image, top, size - h - top, left, size - w - left, cv2.BORDER_CONSTANT,
                             value=(PAD, PAD, PAD))
    return out, boxes + np.array([left, top, left, top], np.float32)


def mosaic4(parts: list[Labelled], size: int, rng: np.random.Generator) -> Labelled:
    """Place four (long side = size) images around a random centre of a 2size x 2size canvas."""
    canvas = np.full((2 * size, 2 * size, 3), PAD, np.uint8)
    xc, yc = (int(rng.uniform(size * 0.5, size * 1.5)) for _ in range(2))
    all_boxes, all_cls = [], []
    for i, (img, boxes, cls) in enumerate(parts):
        h, w = img.shape[:2]
        x0 = xc - w if i in (0, 2) else xc  # top-left, top-right, bottom-left, bottom-right
        y0 = yc - h if i in (0, 1) else yc
        cx1, cy1 = max(x0, 0), max(y0, 0)
        cx2, cy2 = min(x0 + w, 2 * size), min(y0 + h, 2 * size)
        canvas[cy1:cy2, cx1:cx2] = img[cy1 - y0:cy2 - y0, cx1 - x0:cx2 - x0]
        all_boxes.append(boxes + np.array([x0, y0, x0, y0], np.float32))
        all_cls.append(cls)
    boxes = np.concatenate(all_boxes).reshape(-1, 4)
    np.clip(boxes, 0, 2 * size, out=boxes)
    return canvas, boxes, np.concatenate(all_cls).astype(np.int64)


def affine_matrix(in_size: tuple[int, int], out_size: tuple[int, int], cfg: AugmentConfig,
                  rng: np.random.Generator) -> np.ndarray:
    """2x3 matrix: centre the input, rotate/scale about it, then move to a random spot in the output."""
    h_in, w_in = in_size
    h_out, w_out = out_size
    centre = np.array([[1, 0, -w_in / 2], [0, 1, -h_in / 2], [0, 0, 1]], np.float64)
    angle = rng.uniform(-cfg.degrees, cfg.degrees)
    s = rng.uniform(1 - cfg.scale, 1 + cfg.scale)
    rot = np.eye(3)
    rot[:2] = cv2.getRotationMatrix2D((0, 0), angle, s)
    move = np.eye(3)
    move[0, 2] = rng.uniform(0.5 - cfg.translate, 0.5 + cfg.translate) * w_out
    move[1, 2] = rng.uniform(0.5 - cfg.translate, 0.5 + cfg.translate) * h_out
    return (move @ rot @ centre)[:2]


def transform_boxes(boxes: np.ndarray, m: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """Map box corners through a 2x3 matrix; the new box encloses the four mapped corners, clipped."""
    if len(boxes) == 0:
        return boxes.reshape(0, 4)
    corners = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 2)
    pts = corners @ m[:, :2].T.astype(np.float32) + m[:, 2].astype(np.float32)
    pts = pts.reshape(-1, 4, 2)
    out = np.concatenate((pts.min(1), pts.max(1)), 1)
    h, w = out_size
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out.astype(np.float32)


def keep_boxes(before: np.ndarray, after: np.ndarray, scale: float, min_px: float) -> np.ndarray:
    """Boxes that stay big enough and keep at least 10% of their scaled area (not cut away)."""
    w, h = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    area0 = (before[:, 2] - before[:, 0]) * (before[:, 3] - before[:, 1]) * scale**2
    ratio = np.maximum(w / (h + 1e-9), h / (w + 1e-9))
    return (w > min_px) & (h > min_px) & (w * h / (area0 + 1e-9) > 0.1) & (ratio < 100)


def random_affine(sample: Labelled, out_size: int, cfg: AugmentConfig, rng: np.random.Generator) -> Labelled:
    """Random scale/translate (and rotation if configured) into an out_size x out_size image."""
    img, boxes, cls = sample
    m = affine_matrix(img.shape[:2], (out_size, out_size), cfg, rng)
    out = cv2.warpAffine(img, m, (out_size, out_size), flags=cv2.INTER_LINEAR, borderValue=(PAD, PAD, PAD))
    new = transform_boxes(boxes, m, (out_size, out_size))
    keep = keep_boxes(boxes, new, math.sqrt(abs(np.linalg.det(m[:, :2]))), cfg.min_box_px)
    return out, new[keep], cls[keep]


def mixup(a: Labelled, b: Labelled, rng: np.random.Generator) -> Labelled:
    """Blend two same-size images (ratio ~ Beta(32, 32)) and keep both label sets."""
    r = rng.beta(32.0, 32.0)
    img = (a[0].astype(np.float32) * r + b[0].astype(np.float32) * (1 - r)).astype(np.uint8)
    return img, np.concatenate((a[1], b[1])), np.concatenate((a[2], b[2]))


def hsv(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Random hue, saturation and value gains through lookup tables."""
    if not (cfg.hsv_h or cfg.hsv_s or cfg.hsv_v):
        return image
    gains = rng.uniform(-1, 1, 3) * (cfg.hsv_h, cfg.hsv_s, cfg.hsv_v) + 1
    h, s, v = cv2.split(cv2.cvtColor(image, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * gains[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    merged = cv2.merge((cv2.LUT(h, lut_h), cv2.LUT(s, lut_s), cv2.LUT(v, lut_v)))
    return cv2.cvtColor(merged, cv2.COLOR_HSV2BGR)


def hflip(sample: Labelled) -> Labelled:
    """Mirror the image left-right and the boxes with it."""
    img, boxes, cls = sample
    w = img.shape[1]
    flipped = boxes.copy()
    flipped[:, 0], flipped[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
    return np.ascontiguousarray(img[:, ::-1]), flipped, cls
