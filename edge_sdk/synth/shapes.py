"""The object classes of the synthetic data set: canonical masks and the placement transform.

A canonical mask is an 8-bit anti-aliased drawing of one object, centred in a square canvas.
`make_sprite` crops it to its content, scales, stretches and rotates it into a tight patch.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

#: class index -> name; the default class list of the synthetic data set
CLASS_NAMES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross",
    "ring", "hexagon", "arrow", "letter_A", "digit_3",
)
#: glyph classes and the character each one draws
GLYPH_CLASSES = {"letter_A": "A", "digit_3": "3"}
#: characters drawn as distractors (not classes; chosen not to look like any class)
DISTRACTOR_GLYPHS = "BCDEGJKLPRSU2469"
#: classes whose rotation is limited to +-30 degrees (text is mostly upright)
UPRIGHT = frozenset(GLYPH_CLASSES)

_SHIFT = 4  # fixed-point fraction bits for polygon vertices
_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX,
)


def _fill(res: int, polys: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """Fill polygons given in unit coordinates ([-1, 1], y down) with values, in order."""
    canvas = np.zeros((res, res), np.uint8)
    scale = (1 << _SHIFT) * 0.46 * res
    for pts, value in polys:
        fixed = np.round(pts * scale + (1 << _SHIFT) * (res - 1) / 2).astype(np.int32)
        cv2.fillPoly(canvas, [fixed], value, cv2.LINE_AA, shift=_SHIFT)
    return canvas


def _regular(n: int, radius: float = 1.0, phase: float = -math.pi / 2) -> np.ndarray:
    angles = phase + 2 * math.pi * np.arange(n) / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _circle(rng: np.random.Generator, res: int) -> np.ndarray:
    return _fill(res, [(_regular(64), 255)])


def _square(rng: np.random.Generator, res: int) -> np.ndarray:
    return _fill(res, [(np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float), 255)])


def _triangle(rng: np.random.Generator, res: int) -> np.ndarray:
    apex = rng.uniform(-0.35, 0.35)
    return _fill(res, [(np.array([[apex, -1], [1, 0.75], [-1, 0.75]]), 255)])


def _star(rng: np.random.Generator, res: int) -> np.ndarray:
    n = int(rng.choice([5, 6]))
    outer, inner = _regular(n), _regular(n, rng.uniform(0.38, 0.52), -math.pi / 2 + math.pi / n)
    pts = np.empty((2 * n, 2))
    pts[0::2], pts[1::2] = outer, inner
    return _fill(res, [(pts, 255)])


def _cross(rng: np.random.Generator, res: int) -> np.ndarray:
    t = rng.uniform(0.22, 0.36)
    pts = np.array([
        [-t, -1], [t, -1], [t, -t], [1, -t], [1, t], [t, t],
        [t, 1], [-t, 1], [-t, t], [-1, t], [-1, -t], [-t, -t],
    ])
    return _fill(res, [(pts, 255)])


def _ring(rng: np.random.Generator, res: int) -> np.ndarray:
    return _fill(res, [(_regular(64), 255), (_regular(64, rng.uniform(0.45, 0.7)), 0)])


def _hexagon(rng: np.random.Generator, res: int) -> np.ndarray:
    return _fill(res, [(_regular(6, 1.0, 0.0), 255)])


def _arrow(rng: np.random.Generator, res: int) -> np.ndarray:
    st, hw, hl = rng.uniform(0.13, 0.24), rng.uniform(0.45, 0.7), rng.uniform(0.55, 0.9)
    neck = 1 - hl
    pts = np.array([
        [-1, -st], [neck, -st], [neck, -hw], [1, 0], [neck, hw], [neck, st], [-1, st],
    ])
    return _fill(res, [(pts, 255)])


def glyph_mask(char: str, rng: np.random.Generator, res: int) -> np.ndarray:
    """Draw one character with a random Hershey font and stroke width."""
    font = _FONTS[int(rng.integers(len(_FONTS)))]
    scale = res / 26.0
    thickness = max(1, int(round(res * rng.uniform(0.05, 0.11))))
    (tw, th), base = cv2.getTextSize(char, font, scale, thickness)
    canvas = np.zeros((th + base + 2 * thickness + 4, tw + 2 * thickness + 4), np.uint8)
    origin = (thickness + 2, th + thickness + 2)
    cv2.putText(canvas, char, origin, font, scale, 255, thickness, cv2.LINE_AA)
    return canvas


_RENDERERS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "circle": _circle, "square": _square, "triangle": _triangle, "star": _star,
    "cross": _cross, "ring": _ring, "hexagon": _hexagon, "arrow": _arrow,
}


def canonical_mask(name: str, rng: np.random.Generator, res: int) -> np.ndarray:
    """An anti-aliased uint8 mask of class `name`, drawn about `res` pixels wide."""
    if name in GLYPH_CLASSES:
        return glyph_mask(GLYPH_CLASSES[name], rng, res)
    return _RENDERERS[name](rng, res)


def make_sprite(canon: np.ndarray, size: float, aspect: float, angle_deg: float) -> np.ndarray:
    """Crop `canon` to its content, scale its longer side to `size` px, stretch, rotate.

    `aspect` > 1 widens the object; the result is a tight uint8 alpha patch with a 1 px margin.
    """
    rows, cols = np.flatnonzero(canon.any(axis=1)), np.flatnonzero(canon.any(axis=0))
    crop = canon[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h0, w0 = crop.shape
    s = size / max(h0, w0)
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    lin = rot @ np.diag([s * math.sqrt(aspect), s / math.sqrt(aspect)])
    half = np.array([w0 / 2, h0 / 2])
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half @ lin.T
    pw, ph = (np.ceil(np.ptp(corners, axis=0)).astype(int) + 3).tolist()
    shift = np.array([(pw - 1) / 2, (ph - 1) / 2]) - lin @ np.array([(w0 - 1) / 2, (h0 - 1) / 2])
    matrix = np.hstack([lin, shift[:, None]])
    return cv2.warpAffine(crop, matrix, (pw, ph), flags=cv2.INTER_LINEAR, borderValue=0)
