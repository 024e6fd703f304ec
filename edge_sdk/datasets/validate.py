"""Label checks (YOLO lines, COCO annotations, images) and the strict / lenient outcome."""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeGuard

import cv2
import numpy as np

from edge_sdk.datasets.types import LabelIssue
from runtimes.errors import DatasetError

log = logging.getLogger("edgebench.data")

NORM_TOL = 1e-3  # slack for normalised YOLO coordinates
PIXEL_TOL = 1.0  # slack, in pixels, for COCO boxes at the image border

Box = tuple[int, tuple[float, float, float, float]]  # class id, normalised xyxy


def image_size(path: Path) -> tuple[int, int] | str:
    """(h, w) of a readable image, else a message saying why it cannot be read."""
    if not path.is_file():
        return "image not found"
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        return f"cannot read image ({exc.strerror or exc})"
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        return "cannot decode image (empty, corrupt or not an image)"
    return int(img.shape[0]), int(img.shape[1])


def image_sizes(paths: list[Path]) -> list[tuple[int, int] | str]:
    """image_size of each path, decoded on a few threads (cv2 releases the GIL)."""
    if len(paths) < 8:
        return [image_size(p) for p in paths]
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(image_size, paths, chunksize=16))


def parse_yolo_line(text: str, names: Mapping[int, str]) -> Box | str:
    """One label line -> (class id, clipped normalised xyxy), or the problem as a message.

    Accepts 'cls cx cy w h' and polygon lines 'cls x1 y1 x2 y2 x3 y3 ...' (box = their extent).
    """
    tokens = text.split()
    if len(tokens) != 5 and (len(tokens) < 7 or len(tokens) % 2 == 0):
        return f"malformed line: expected 5 columns (class cx cy w h), got {len(tokens)}"
    values = _numbers(tokens)
    if isinstance(values, str):
        return values
    cls_value = values[0]
    if cls_value != int(cls_value):
        return f"malformed line: class id '{tokens[0]}' is not an integer"
    cls = int(cls_value)
    if cls not in names:
        return f"unknown class id {cls} (data set has {len(names)} classes)"
    if len(values) > 5:
        return _polygon_box(cls, values[1:])
    return _xywh_box(cls, *values[1:])


def _numbers(tokens: list[str]) -> list[float] | str:
    out = []
    for tok in tokens:
        try:
            value = float(tok)
        except ValueError:
            return f"malformed line: '{tok}' is not a number"
        if not math.isfinite(value):
            return f"malformed line: '{tok}' is not a finite number"
        out.append(value)
    return out


def _xywh_box(cls: int, cx: float, cy: float, w: float, h: float) -> Box | str:
    if w <= 0 or h <= 0:
        return f"zero or negative box size (w={w:g}, h={h:g})"
    for key, value in (("cx", cx), ("cy", cy), ("w", w), ("h", h)):
        if not -NORM_TOL <= value <= 1 + NORM_TOL:
            return f"coordinate out of range [0, 1]: {key}={value:g}"
    return _inside(cls, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def _polygon_box(cls: int, coords: list[float]) -> Box | str:
    xs, ys = coords[0::2], coords[1::2]
    for value in coords:
        if not -NORM_TOL <= value <= 1 + NORM_TOL:
            return f"coordinate out of range [0, 1]: {value:g}"
    x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
    if x2 <= x1 or y2 <= y1:
        return f"zero or negative box size (w={x2 - x1:g}, h={y2 - y1:g})"
    return _inside(cls, x1, y1, x2, y2)


def _inside(cls: int, x1: float, y1: float, x2: float, y2: float) -> Box | str:
    for key, value in (("x1", x1), ("y1", y1), ("x2", x2), ("y2", y2)):
        if not -NORM_TOL <= value <= 1 + NORM_TOL:
            return f"box extends outside the image: {key}={value:g}"
    return cls, (_clip01(x1), _clip01(y1), _clip01(x2), _clip01(y2))


def _clip01(value: float) -> float:
    return min(max(value, 0.0), 1.0)


def parse_yolo_labels(path: Path, names: Mapping[int, str]) -> tuple[list[Box], list[LabelIssue]]:
    """Every valid box of a label file and an issue per bad line; a missing file is no objects."""
    if not path.exists():
        return [], []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [LabelIssue(path, None, f"cannot read label file ({exc})")]
    boxes, issues = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        result = parse_yolo_line(line, names)
        if isinstance(result, str):
            issues.append(LabelIssue(path, number, result))
        else:
            boxes.append(result)
    return boxes, issues


def check_coco_annotation(ann: Any, sizes: Mapping[int, tuple[int, int]],
                          categories: Mapping[int, int]) -> str | None:
    """The problem with one COCO annotation (naming its id), or None when it is usable."""
    if not isinstance(ann, dict):
        return f"annotation is not an object: {str(ann)[:40]}"
    who = f"annotation id {ann.get('id', '?')}"
    if not is_int(ann.get("image_id")) or ann["image_id"] not in sizes:
        return f"{who}: unknown image id {ann.get('image_id')!r}"
    if not is_int(ann.get("category_id")) or ann["category_id"] not in categories:
        return f"{who}: unknown category id {ann.get('category_id')!r}"
    bbox = ann.get("bbox")
    if not _is_box(bbox):
        return f"{who}: malformed bbox {bbox!r} (expected 4 finite numbers x, y, w, h)"
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        return f"{who}: zero or negative box size (w={w:g}, h={h:g})"
    img_h, img_w = sizes[ann["image_id"]]
    if x < -PIXEL_TOL or y < -PIXEL_TOL or x + w > img_w + PIXEL_TOL or y + h > img_h + PIXEL_TOL:
        return f"{who}: box [{x:g}, {y:g}, {w:g}, {h:g}] extends outside the {img_w}x{img_h} image"
    return None


def is_int(value: Any) -> TypeGuard[int]:
    """True for a real int (not a bool, not a float)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_box(bbox: Any) -> TypeGuard[Sequence[float]]:
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return False
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               for v in bbox)


def settle(issues: Iterable[LabelIssue], strict: bool, source: Path | str) -> list[LabelIssue]:
    """Raise on the first issue when strict, else log a one-line summary and return them all."""
    issues = list(issues)
    if not issues:
        return issues
    more = f" (and {len(issues) - 1} more issue{'s' if len(issues) > 2 else ''})" \
        if len(issues) > 1 else ""
    if strict:
        raise DatasetError(f"{issues[0]}{more}")
    log.warning("%s: skipped %d bad label(s)/image(s); first: %s", source, len(issues), issues[0])
    for issue in issues:
        log.debug("%s", issue)
    return issues
