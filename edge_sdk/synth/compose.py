"""Scene composition: background, clutter and objects with occlusion, then effects.

Every painted pixel with alpha >= MASK_LEVEL / 255 is owned by the last layer painted there
(an object id, or 0 for background and clutter). An object's box is the tight box of the
pixels it still owns at the end: its visible pixels, clipped to the image. Objects with less
than `MIN_VISIBLE` of their full mask visible (occluded or cut by the border) or under 2 px
wide or high are not labelled. New layers are placed so that no labelled object drops below
`PLACE_VISIBLE`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edge_sdk.synth.backgrounds import make_background
from edge_sdk.synth.distractors import Layer, make_distractor
from edge_sdk.synth.effects import apply_effects
from edge_sdk.synth.shapes import UPRIGHT, canonical_mask, make_sprite

MASK_LEVEL = 64  # alpha (of 255) from which a pixel belongs to a layer: keeps thin tips in boxes
MIN_VISIBLE = 0.4  # drop a label below this visible fraction of the object's mask
PLACE_VISIBLE = 0.55  # retry a placement that would occlude an object below this
EMPTY_FRACTION = 0.05  # images drawn without objects (clutter only)
# scene styles: (probability, object count range, size-bucket probabilities small/medium/large)
_STYLES = (
    (0.27, (1, 3), (0.10, 0.45, 0.45)),
    (0.47, (3, 9), (0.20, 0.60, 0.20)),
    (0.26, (8, 20), (0.35, 0.65, 0.00)),
)
# object size buckets as fractions of the image's shorter side (6-12 px at 320 for "small")
_SIZE_RANGES = ((6 / 320, 12 / 320), (0.04, 0.15), (0.15, 0.40))


@dataclass
class Scene:
    """A rendered image with its labels; boxes are xyxy pixel edges, areas visible pixels."""

    image: np.ndarray
    class_ids: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray
    owner: np.ndarray | None = None


@dataclass
class Canvas:
    """A float32 image being painted plus the per-pixel owner map and object bookkeeping."""

    image: np.ndarray
    owner: np.ndarray = field(init=False)
    areas: list[int] = field(default_factory=lambda: [0])
    visible: list[int] = field(default_factory=lambda: [0])
    classes: list[int] = field(default_factory=lambda: [-1])
    bounds: list[tuple[int, int, int, int]] = field(default_factory=lambda: [(0, 0, 0, 0)])

    def __post_init__(self) -> None:
        self.owner = np.zeros(self.image.shape[:2], np.int16)

    def _clip(self, layer: Layer) -> tuple[slice, slice, slice, slice]:
        h, w = self.owner.shape
        ph, pw = layer.alpha.shape
        x0, y0 = max(layer.x0, 0), max(layer.y0, 0)
        x1, y1 = min(layer.x0 + pw, w), min(layer.y0 + ph, h)
        x1, y1 = max(x1, x0), max(y1, y0)
        img = (slice(y0, y1), slice(x0, x1))
        return img + (slice(y0 - layer.y0, y1 - layer.y0), slice(x0 - layer.x0, x1 - layer.x0))

    def fits(self, layer: Layer, new_object: bool = False) -> bool:
        """Whether painting `layer` keeps every object at least PLACE_VISIBLE visible.

        With `new_object`, the layer itself must also lie at least that much inside the image.
        """
        iy, ix, py, px = self._clip(layer)
        inside = layer.alpha[py, px] >= MASK_LEVEL
        if new_object and inside.sum() < PLACE_VISIBLE * (layer.alpha >= MASK_LEVEL).sum():
            return False
        counts = np.bincount(self.owner[iy, ix][inside], minlength=len(self.areas))
        for oid in np.flatnonzero(counts[1:]) + 1:
            if self.visible[oid] - counts[oid] < PLACE_VISIBLE * self.areas[oid]:
                return False
        return True

    def paint(self, layer: Layer, cls: int | None = None, draw: bool = True) -> None:
        """Blend `layer` in; with `cls`, register it as a new object owning its pixels."""
        iy, ix, py, px = self._clip(layer)
        alpha = layer.alpha[py, px]
        mask = alpha >= MASK_LEVEL
        owner = self.owner[iy, ix]
        counts = np.bincount(owner[mask], minlength=len(self.areas))
        for other in np.flatnonzero(counts[1:]) + 1:
            self.visible[other] -= int(counts[other])
        oid = 0
        if cls is not None:
            oid = len(self.areas)
            self.areas.append(int((layer.alpha >= MASK_LEVEL).sum()))
            self.visible.append(int(mask.sum()))
            self.classes.append(cls)
            self.bounds.append((iy.start, iy.stop, ix.start, ix.stop))
        owner[mask] = oid
        if draw:
            colours = layer.colours
            if colours.shape[0] > 1:
                colours = colours[py, px]
            region = self.image[iy, ix]
            region += (colours - region) * (alpha[..., None] * np.float32(1 / 255))

    def labels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Class ids, xyxy boxes and visible areas of the objects that stay labelled."""
        cls, boxes, areas = [], [], []
        for oid in range(1, len(self.areas)):
            y0, y1, x0, x1 = self.bounds[oid]
            own = self.owner[y0:y1, x0:x1] == oid
            vis = int(own.sum())
            if vis == 0 or vis < MIN_VISIBLE * self.areas[oid]:
                continue
            rows, cols = np.flatnonzero(own.any(axis=1)), np.flatnonzero(own.any(axis=0))
            box = (x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1)
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            cls.append(self.classes[oid])
            boxes.append(box)
            areas.append(vis)
        return (np.array(cls, np.int64), np.array(boxes, np.float64).reshape(-1, 4),
                np.array(areas, np.float64))


def pick_colour(rng: np.random.Generator, under: np.ndarray, tries: int = 6) -> np.ndarray:
    """A random colour far enough from the mean colour of `under` to be seen."""
    ref = under.reshape(-1, 3).mean(axis=0) if under.size else np.full(3, 128.0)
    best, best_d = None, -1.0
    for _ in range(tries):
        c = rng.uniform(0, 255, 3)
        d = float(np.linalg.norm(c - ref))
        if d > best_d:
            best, best_d = c, d
        if d >= 90:
            break
    return np.asarray(best, np.float32)


def shade(rng: np.random.Generator, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Per-pixel object colours: `colour` with a linear light ramp and optional fine texture."""
    ph, pw = alpha.shape
    a = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:ph, 0:pw].astype(np.float32)
    ramp = (xs - pw / 2) * math.cos(a) + (ys - ph / 2) * math.sin(a)
    ramp *= np.float32(rng.uniform(-0.5, 0.5) / max(ph, pw))
    out: np.ndarray = colour * (1 + ramp)[..., None]
    if rng.random() < 0.3:
        out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(rng.uniform(4, 15))
    return out


def object_layer(rng: np.random.Generator, name: str, size: float) -> np.ndarray:
    """The rotated, stretched alpha patch of one object of class `name` (longer side ~size)."""
    canon = canonical_mask(name, rng, int(np.clip(round(2 * size), 24, 192)))
    angle = rng.uniform(-30, 30) if name in UPRIGHT else rng.uniform(0, 360)
    return make_sprite(canon, size, math.exp(rng.uniform(-0.35, 0.35)), angle)


def _object_sizes(rng: np.random.Generator, short: int) -> list[float]:
    if rng.random() < EMPTY_FRACTION:
        return []
    style = _STYLES[int(rng.choice(len(_STYLES), p=[s[0] for s in _STYLES]))]
    n = int(rng.integers(style[1][0], style[1][1] + 1))
    buckets = rng.choice(3, size=n, p=style[2])
    sizes = []
    for b in buckets:
        lo, hi = _SIZE_RANGES[int(b)]
        sizes.append(max(5.0, short * math.exp(rng.uniform(math.log(lo), math.log(hi)))))
    return sorted(sizes, reverse=True)


def _place(rng: np.random.Generator, alpha: np.ndarray, w: int, h: int) -> tuple[int, int]:
    """A random top-left corner that puts the patch centre inside the image."""
    ph, pw = alpha.shape
    return math.floor(rng.uniform(0, w) - pw / 2), math.floor(rng.uniform(0, h) - ph / 2)


def _add_object(rng: np.random.Generator, canvas: Canvas, names: tuple[str, ...],
                size: float, draw: bool) -> None:
    h, w = canvas.owner.shape
    cls = int(rng.integers(len(names)))
    alpha = object_layer(rng, names[cls], size)
    for _ in range(6):
        x0, y0 = _place(rng, alpha, w, h)
        under = canvas.image[max(y0, 0):y0 + alpha.shape[0], max(x0, 0):x0 + alpha.shape[1]]
        layer = Layer(alpha, x0, y0, shade(rng, alpha, pick_colour(rng, under)))
        if canvas.fits(layer, new_object=True):
            canvas.paint(layer, cls, draw)
            return


def compose_scene(rng: np.random.Generator, w: int, h: int, names: tuple[str, ...],
                  draw_objects: bool = True) -> Scene:
    """Render one w x h scene; `draw_objects=False` leaves objects out but draws all else alike."""
    canvas = Canvas(make_background(rng, h, w))
    for _ in range(int(rng.integers(0, 5))):
        canvas.paint(make_distractor(rng, w, h))
    sizes = _object_sizes(rng, min(w, h))
    n_top = int(rng.integers(0, 4))
    slots = set(rng.integers(0, len(sizes) + 1, n_top).tolist())
    for i in range(len(sizes) + 1):
        if i in slots:
            layer = make_distractor(rng, w, h)
            if canvas.fits(layer):
                canvas.paint(layer)
        if i < len(sizes):
            _add_object(rng, canvas, names, sizes[i], draw_objects)
    cls, boxes, areas = canvas.labels()
    return Scene(apply_effects(rng, canvas.image), cls, boxes, areas, canvas.owner)


SPLITS = {"train": 0, "val": 1, "test": 2}


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image `index` of `split`: independent of every other image."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS[split], index]))


def image_size(rng: np.random.Generator, imgsz: int, nonsquare: float) -> tuple[int, int]:
    """(width, height): square, or with probability `nonsquare` 4:3 / 3:4 with long side imgsz."""
    r, landscape = rng.random(), rng.random() < 0.5
    if r >= nonsquare:
        return imgsz, imgsz
    short = int(round(imgsz * 0.75 / 2)) * 2
    return (imgsz, short) if landscape else (short, imgsz)


def render_image(seed: int, split: str, index: int, imgsz: int,
                 names: tuple[str, ...], nonsquare: float = 0.0,
                 draw_objects: bool = True) -> Scene:
    """Regenerate image `index` of `split` alone, exactly as `generate` writes it."""
    rng = image_rng(seed, split, index)
    w, h = image_size(rng, imgsz, nonsquare)
    return compose_scene(rng, w, h, names, draw_objects)
