"""Iterate frames from a video file, an image folder entry or a camera index with cv2.VideoCapture."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from runtimes.errors import ImageReadError, InputError


def stream(source: str | int | Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield BGR frames from a video path/URL or a camera index ("0" counts as camera 0)."""
    if max_frames is not None and (isinstance(max_frames, bool) or int(max_frames) < 1):
        raise InputError(f"max_frames must be an integer >= 1, got {max_frames!r}")
    src: str | int | Path = int(source) if isinstance(source, str) and source.isdigit() else source
    if isinstance(src, Path):
        src = str(src)
    if isinstance(src, str) and "://" not in src and not Path(src).exists():
        raise ImageReadError(f"video source not found: {src}")
    cap = cv2.VideoCapture(src)
    if not cap.isOpened():
        raise ImageReadError(f"cannot open video source: {source}")
    try:
        count = 0
        while max_frames is None or count < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            count += 1
            yield frame
    finally:
        cap.release()


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as BGR uint8, with a typed error when missing or undecodable."""
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(f"image not found: {p}")
    data = np.fromfile(str(p), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise ImageReadError(f"cannot decode image: {p}")
    return img
