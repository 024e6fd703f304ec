"""Tiny on-disk YOLO data sets for the trainer tests (filled rectangles and circles), and their checks."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

NAMES = {0: "rect", 1: "disc"}


def draw_objects(rng: np.random.Generator, h: int, w: int, n: int) -> tuple[np.ndarray, list[tuple]]:
    """A noisy background with n filled shapes; returns the image and (cls, x1, y1, x2, y2) pixel boxes."""
    img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    labels = []
    for _ in range(n):
        cls = int(rng.integers(0, 2))
        size = int(rng.integers(max(8, min(h, w) // 6), max(9, min(h, w) // 2)))
        x1, y1 = int(rng.integers(0, w - size)), int(rng.integers(0, h - size))
        colour = tuple(int(c) for c in rng.integers(120, 255, 3))
        if cls == 0:
            cv2.rectangle(img, (x1, y1), (x1 + size - 1, y1 + size - 1), colour, -1)
        else:
            r = size // 2
            cv2.circle(img, (x1 + r, y1 + r), r, colour, -1)
            size = 2 * r + 1
        labels.append((cls, x1, y1, x1 + size, y1 + size))
    return img, labels


def write_split(root: Path, split: str, count: int, size: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    h, w = size
    for i in range(count):
        img, labels = draw_objects(rng, h, w, int(rng.integers(1, 4)))
        cv2.imwrite(str(root / "images" / split / f"{i:04d}.png"), img)
        lines = [f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
                 for c, x1, y1, x2, y2 in labels]
        (root / "labels" / split / f"{i:04d}.txt").write_text("\n".join(lines) + "\n")


def make_yolo_dataset(root: Path, train: int = 8, val: int = 4, size: tuple[int, int] = (96, 128),
                      seed: int = 0, names: dict[int, str] = NAMES) -> Path:
    """Write data.yaml + images/labels for train and val; returns the data.yaml path."""
    write_split(root, "train", train, size, seed)
    write_split(root, "val", val, size, seed + 1)
    listed = "\n".join(f"  {k}: {v}" for k, v in names.items())
    yaml = root / "data.yaml"
    yaml.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n{listed}\n")
    return yaml


def test_fixture_labels_match_drawn_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    img, labels = draw_objects(rng, 96, 128, 1)
    _, x1, y1, x2, y2 = labels[0]
    ys, xs = np.nonzero(img.max(2) >= 120)
    assert xs.min() >= x1 and xs.max() < x2 and ys.min() >= y1 and ys.max() < y2
