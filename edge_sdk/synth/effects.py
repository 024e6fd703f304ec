"""Photometric effects applied to a finished scene: lighting, contrast, gamma, blur, noise.

None of them moves pixels by more than a blur radius, so boxes computed before stay valid.
"""
from __future__ import annotations

import math

import cv2
import numpy as np


def _illumination(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth multiplicative light field (linear ramp or vignette), shape h x w x 1."""
    xs = (np.arange(w, dtype=np.float32) / max(w - 1, 1) - 0.5)[None, :]
    ys = (np.arange(h, dtype=np.float32) / max(h - 1, 1) - 0.5)[:, None]
    if rng.random() < 0.5:
        a = rng.uniform(0, 2 * math.pi)
        field = 1 + rng.uniform(0.1, 0.5) * (xs * math.cos(a) + ys * math.sin(a))
    else:
        cx, cy = rng.uniform(-0.3, 0.3, 2)
        field = 1 - rng.uniform(0.2, 0.8) * ((xs - cx) ** 2 + (ys - cy) ** 2)
    return field.astype(np.float32)[..., None]


def _lighting(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    if rng.random() < 0.5:
        img = img * _illumination(rng, h, w)
    gain = rng.uniform(0.65, 1.3) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    contrast = rng.uniform(0.6, 1.3)
    # per channel: (img - 128) * contrast + 128 * gain, in one pass (pixel-wise: a pixel's
    # change never depends on what else is in the image)
    matrix = np.hstack([np.eye(3) * contrast, (128.0 * (gain - contrast))[:, None]])
    return cv2.transform(img, matrix)


def _gamma_lut(rng: np.random.Generator) -> np.ndarray:
    g = rng.uniform(0.7, 1.5) if rng.random() < 0.5 else 1.0
    return np.clip(255.0 * (np.arange(256) / 255.0) ** g + 0.5, 0, 255).astype(np.uint8)


def _blur(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    r = rng.random()
    if r < 0.25:
        return cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.2))
    if r < 0.33:
        n = int(rng.integers(3, 8))
        kernel = np.zeros((n, n), np.float32)
        kernel[n // 2, :] = 1.0 / n
        centre = ((n - 1) / 2, (n - 1) / 2)
        rot = cv2.getRotationMatrix2D(centre, rng.uniform(0, 180), 1.0)
        kernel = np.asarray(cv2.warpAffine(kernel, rot, (n, n)), np.float32)  # already float32: no copy
        return cv2.filter2D(img, -1, kernel / max(float(kernel.sum()), 1e-6))
    return img


def apply_effects(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Finish a float32 scene into a uint8 BGR image with random photometric changes."""
    img = _blur(rng, _lighting(rng, img))
    if rng.random() < 0.6:
        sigma = rng.uniform(1.0, 10.0)
        img = img + rng.standard_normal(img.shape, dtype=np.float32) * sigma
    out = np.clip(img, 0, 255).astype(np.uint8)
    return cv2.LUT(out, _gamma_lut(rng))
