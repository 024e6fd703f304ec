"""Run a Detector over images or a video and save annotated frames (library side of `edgebench predict`)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_sdk.detector import Detector
from edge_sdk.draw import draw_detections
from edge_sdk.frames import read_image, stream
from runtimes.errors import ImageReadError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


@dataclass
class PredictResult:
    """Detections for one image or video frame, and where the drawing went."""

    source: str
    detections: list[dict[str, Any]]
    image_size: tuple[int, int]
    saved_to: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "image_size": list(self.image_size),
                "saved_to": self.saved_to, "detections": self.detections}


def iter_frames(source: str | Path, max_frames: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """(name, BGR frame) from an image, a folder of images, a video file or a camera index."""
    src = str(source)
    if src.isdigit():
        for i, frame in enumerate(stream(int(src), max_frames)):
            yield f"camera{src}_{i:06d}", frame
        return
    path = Path(src)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ImageReadError(f"no images found in folder: {path}")
        for p in files[:max_frames]:
            yield p.name, read_image(p)
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        for i, frame in enumerate(stream(path, max_frames)):
            yield f"{path.stem}_{i:06d}.jpg", frame
    else:
        yield path.name, read_image(path)


def predict(model: str | Path, source: str | Path, out_dir: str | Path | None = None,
            backend: str | None = None, conf: float = 0.25, iou: float = 0.7, max_det: int = 300,
            threads: int | None = None, max_frames: int | None = None,
            on_result: Callable[[PredictResult], None] | None = None) -> list[PredictResult]:
    """Detect objects in every frame of `source`; draw boxes into `out_dir` when given."""
    out = Path(out_dir) if out_dir else None
    results = []
    with Detector(model, backend=backend, conf=conf, iou=iou, max_det=max_det, threads=threads) as det:
        for name, frame in iter_frames(source, max_frames):
            dets = det(frame)
            saved = None
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                target = out / (Path(name).stem + ".jpg")
                cv2.imwrite(str(target), draw_detections(frame, dets))
                saved = str(target)
            res = PredictResult(name, dets.to_list(), tuple(frame.shape[:2]), saved)
            results.append(res)
            if on_result:
                on_result(res)
    return results
