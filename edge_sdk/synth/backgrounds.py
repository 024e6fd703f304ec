"""Textured backgrounds: gradients, smooth noise, stripes, checkers and blurred blobs."""
from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np


def _two_colours(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Map a [0, 1] field to a blend of two random colours (float32 BGR, 0..255)."""
    c1 = rng.uniform(0, 255, 3).astype(np.float32)
    c2 = np.clip(c1 + rng.uniform(-140, 140, 3), 0, 255).astype(np.float32)
    matrix = np.stack([c2 - c1, c1], axis=1)  # per channel: c1 + t * (c2 - c1)
    return cv2.transform(np.ascontiguousarray(t, np.float32)[..., None], matrix)


def _coords(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Pixel positions projected on a random direction (float32, shape h x w)."""
    a = rng.uniform(0, 2 * math.pi)
    xs = np.arange(w, dtype=np.float32) * np.float32(math.cos(a))
    ys = np.arange(h, dtype=np.float32) * np.float32(math.sin(a))
    proj: np.ndarray = ys[:, None] + xs[None, :]
    return proj


def gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    u = _coords(rng, h, w)
    return _two_colours(rng, (u - u.min()) / max(float(np.ptp(u)), 1.0))


def smooth_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    cells = int(rng.integers(3, 14))
    gh, gw = max(2, cells * h // max(h, w)), max(2, cells * w // max(h, w))
    grid = rng.random((gh, gw, 3), dtype=np.float32) * rng.uniform(60, 220)
    base = rng.uniform(0, 255 - 60, 3).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC) + base


def stripes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    period = rng.uniform(6, 60)
    t = 0.5 + 0.5 * np.sin(_coords(rng, h, w) * (2 * math.pi / period) + rng.uniform(0, 6.3))
    if rng.random() < 0.5:
        t = (t > 0.5).astype(np.float32)
    return _two_colours(rng, t * rng.uniform(0.2, 0.7))


def checker(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    cell = rng.uniform(12, 70)
    u, v = _coords(rng, h, w), _coords(rng, h, w)
    t = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
    return _two_colours(rng, cv2.GaussianBlur(t, (0, 0), 1.0) * rng.uniform(0.15, 0.5))


def blobs(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Big soft colour blobs, drawn and blurred at quarter resolution, then upsampled."""
    sh, sw = max(h // 4, 2), max(w // 4, 2)
    canvas = np.empty((sh, sw, 3), np.float32)
    canvas[:] = rng.uniform(0, 255, 3)
    for _ in range(int(rng.integers(4, 16))):
        centre = (int(rng.integers(0, sw)), int(rng.integers(0, sh)))
        radius = int(rng.uniform(0.05, 0.3) * max(sh, sw))
        cv2.circle(canvas, centre, radius, rng.uniform(0, 255, 3).tolist(), -1)
    sigma = rng.uniform(0.04, 0.12) * max(sh, sw)
    small = cv2.GaussianBlur(canvas, (0, 0), sigma)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


KINDS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "gradient": gradient, "smooth_noise": smooth_noise, "stripes": stripes,
    "checker": checker, "blobs": blobs,
}
_NAMES = tuple(KINDS)


def make_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random textured background (float32 BGR in about 0..255), sometimes two mixed."""
    bg = KINDS[_NAMES[int(rng.integers(len(_NAMES)))]](rng, h, w)
    if rng.random() < 0.5:
        other = KINDS[_NAMES[int(rng.integers(len(_NAMES)))]](rng, h, w)
        k = float(rng.uniform(0.2, 0.5))
        bg = cv2.addWeighted(bg, 1.0 - k, other, k, 0.0)
    if rng.random() < 0.6:
        grain = rng.standard_normal((h, w, 1), dtype=np.float32) * rng.uniform(2, 10)
        bg = bg + grain
    out: np.ndarray = np.clip(bg, 0, 255).astype(np.float32)
    return out
