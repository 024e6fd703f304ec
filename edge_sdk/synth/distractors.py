"""Clutter that is not a class: lines, scribbles, irregular blobs, arcs, noise patches, glyphs.

Each maker returns a `Layer`: a uint8 alpha patch, its top-left corner in the image (may lie
outside), and its colours (a patch-sized texture or one colour that broadcasts).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

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


def blob(rng: np.random.Generator, w: int, h: int) -> Layer:
    n, r = int(rng.integers(7, 14)), rng.uniform(0.02, 0.12) * min(w, h)
    t = np.sort(rng.uniform(0, 2 * math.pi, n))
    radii = r * rng.uniform(0.35, 1.0, n)
    pts = np.stack([np.cos(t), np.sin(t)], axis=1) * radii[:, None]
    size = int(math.ceil(2 * r)) + 6
    alpha = np.zeros((size, size), np.uint8)
    cv2.fillPoly(alpha, [np.round((pts + size / 2) * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.5, r * 0.08))
    x0, y0 = (rng.uniform(0, 1, 2) * [w, h] - size / 2).astype(int)
    return Layer(alpha, int(x0), int(y0), _colour(rng))


def noise_patch(rng: np.random.Generator, w: int, h: int) -> Layer:
    pw, ph = (rng.uniform(0.02, 0.15, 2) * min(w, h)).astype(int) + 4
    base = rng.uniform(0, 255, 3).astype(np.float32)
    texture = base + rng.standard_normal((ph, pw, 3), dtype=np.float32) * rng.uniform(20, 60)
    x0, y0 = (rng.uniform(0, 1, 2) * [w - pw / 2, h - ph / 2]).astype(int)
    return Layer(np.full((ph, pw), 255, np.uint8), int(x0), int(y0), texture)


def glyph(rng: np.random.Generator, w: int, h: int) -> Layer:
    size = rng.uniform(0.03, 0.2) * min(w, h)
    char = DISTRACTOR_GLYPHS[int(rng.integers(len(DISTRACTOR_GLYPHS)))]
    canon = glyph_mask(char, rng, int(np.clip(2 * size, 24, 160)))
    alpha = make_sprite(canon, size, rng.uniform(0.8, 1.25), rng.uniform(-30, 30))
    x0, y0 = (rng.uniform(0, 1, 2) * [w, h] - np.array(alpha.shape[::-1]) / 2).astype(int)
    return Layer(alpha, int(x0), int(y0), _colour(rng))


KINDS: tuple[Callable[[np.random.Generator, int, int], Layer], ...] = (
    line, line, scribble, arc, blob, blob, noise_patch, glyph, glyph,
)


def make_distractor(rng: np.random.Generator, w: int, h: int) -> Layer:
    """One random piece of clutter for a w x h image."""
    return KINDS[int(rng.integers(len(KINDS)))](rng, w, h)
