"""Clutter that is not a class: lines, scribbles, irregular blobs, arcs, noise patches, glyphs.

Each maker returns a `Layer`: a uint8 alpha patch, its top-left corner in the image (may lie
outside), and its colours (a patch-sized texture or one colour that broadcasts).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from edge_sdk.synth.shapes import DISTRACTOR_GLYPHS, glyph_mask, make_sprite


@dataclass
class Layer:
    """Something to paint: alpha (uint8 h x w), corner (x0, y0) and colours (float32)."""

    alpha: np.ndarray
    x0: int
    y0: int
    colours: np.ndarray


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, (1, 1, 3)).astype(np.float32)


def _stroke(rng: np.random.Generator, pts: np.ndarray, thickness: int, closed: bool) -> Layer:
    lo = np.floor(pts.min(axis=0)).astype(int) - thickness - 1
    hi = np.ceil(pts.max(axis=0)).astype(int) + thickness + 2
    alpha = np.zeros((hi[1] - lo[1], hi[0] - lo[0]), np.uint8)
    local = np.round((pts - lo) * 16).astype(np.int32)
    cv2.polylines(alpha, [local], closed, 255, thickness, cv2.LINE_AA, shift=4)
    return Layer(alpha, int(lo[0]), int(lo[1]), _colour(rng))


def line(rng: np.random.Generator, w: int, h: int) -> Layer:
    p = rng.uniform(0, 1, (2, 2)) * [w, h]
    return _stroke(rng, p, int(rng.integers(1, 4)), False)


def scribble(rng: np.random.Generator, w: int, h: int) -> Layer:
    centre = rng.uniform(0, 1, 2) * [w, h]
    pts = centre + rng.normal(0, rng.uniform(0.03, 0.12) * min(w, h), (int(rng.integers(3, 7)), 2))
    return _stroke(rng, pts, int(rng.integers(1, 4)), False)


def arc(rng: np.random.Generator, w: int, h: int) -> Layer:
    r = rng.uniform(0.03, 0.15) * min(w, h)
    start = rng.uniform(0, 2 * math.pi)
    t = start + np.linspace(0, rng.uniform(0.6, 1.4) * math.pi, 24)
    pts = rng.uniform(0, 1, 2) * [w, h] + r * np.stack([np.cos(t), np.sin(t)], axis=1)
    return _stroke(rng, pts, int(rng.integers(1, 4)), False)


def _blob_alpha(rng: np.random.Generator, r: float) -> np.ndarray:
    """A soft, smooth irregular blob of radius about r (no corners, no spikes)."""
    n = int(rng.integers(10, 17))
    t = np.sort(rng.uniform(0, 2 * math.pi, n))
    wobble = rng.uniform(0, 1, n)
    wobble = (wobble + np.roll(wobble, 1) + np.roll(wobble, -1)) / 3
    pts = np.stack([np.cos(t), np.sin(t)], axis=1) * (r * (0.55 + 0.45 * wobble))[:, None]
    size = int(math.ceil(2 * r)) + 6
    alpha = np.zeros((size, size), np.uint8)
    cv2.fillPoly(alpha, [np.round((pts + size / 2) * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    return cv2.GaussianBlur(alpha, (0, 0), max(0.6, r * 0.1))


def _centred(rng: np.random.Generator, alpha: np.ndarray, w: int, h: int) -> tuple[int, int]:
    x0, y0 = rng.uniform(0, 1, 2) * [w, h] - np.array(alpha.shape[::-1]) / 2
    return math.floor(x0), math.floor(y0)


def blob(rng: np.random.Generator, w: int, h: int) -> Layer:
    alpha = _blob_alpha(rng, rng.uniform(0.02, 0.12) * min(w, h))
    return Layer(alpha, *_centred(rng, alpha, w, h), _colour(rng))


def noise_patch(rng: np.random.Generator, w: int, h: int) -> Layer:
    """A blob filled with strong colour noise (not rectangular: squares are a class)."""
    alpha = _blob_alpha(rng, rng.uniform(0.02, 0.1) * min(w, h))
    base = rng.uniform(0, 255, 3).astype(np.float32)
    noise = rng.standard_normal(alpha.shape + (3,), dtype=np.float32)
    return Layer(alpha, *_centred(rng, alpha, w, h), base + noise * rng.uniform(20, 60))


def glyph(rng: np.random.Generator, w: int, h: int) -> Layer:
    size = rng.uniform(0.03, 0.2) * min(w, h)
    char = DISTRACTOR_GLYPHS[int(rng.integers(len(DISTRACTOR_GLYPHS)))]
    canon = glyph_mask(char, rng, int(np.clip(2 * size, 24, 160)))
    alpha = make_sprite(canon, size, rng.uniform(0.8, 1.25), rng.uniform(-30, 30))
    return Layer(alpha, *_centred(rng, alpha, w, h), _colour(rng))


KINDS: tuple[Callable[[np.random.Generator, int, int], Layer], ...] = (
    line, line, scribble, arc, blob, blob, noise_patch, glyph, glyph,
)


def make_distractor(rng: np.random.Generator, w: int, h: int) -> Layer:
    """One random piece of clutter for a w x h image."""
    return KINDS[int(rng.integers(len(KINDS)))](rng, w, h)
