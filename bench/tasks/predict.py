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
from runtimes.errors import ImageReadError, InputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}

#: A frame, or the error that kept an image of a folder from being read (predict goes on past it).
Frame = np.ndarray | ImageReadError


@dataclass
class PredictResult:
    """Detections for one image or video frame and where the drawing went; or, for an image of a
    folder that could not be read, the reason in `error` (no detections)."""

    source: str
    detections: list[dict[str, Any]]
    image_size: tuple[int, int]
    saved_to: str | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"source": self.source, "image_size": list(self.image_size),
               "saved_to": self.saved_to, "detections": self.detections}
        return {**out, "error": self.error} if self.error else out


def iter_frames(source: str | Path, max_frames: int | None = None) -> Iterator[tuple[str, Frame]]:
    """(name, BGR frame) from an image, a folder of images, a video file or a camera index. An image of a
    folder that cannot be read comes as (name, ImageReadError); a single image raises."""
    check_max_frames(max_frames)
    src = str(source)
    if src.isdigit():
        for i, frame in enumerate(stream(int(src), max_frames)):
            yield f"camera{src}_{i:06d}", frame
        return
    path = Path(src)
    if path.is_dir():
        yield from _folder_frames(path, max_frames)
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        for i, frame in enumerate(stream(path, max_frames)):
            yield f"{path.stem}_{i:06d}.jpg", frame
    else:
        yield path.name, read_image(path)


def check_max_frames(max_frames: int | None) -> None:
    """InputError unless `max_frames` is None or an integer >= 1."""
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)
                                   or max_frames < 1):
        raise InputError(f"max_frames must be an integer >= 1, got {max_frames!r}")


def _folder_frames(path: Path, max_frames: int | None) -> Iterator[tuple[str, Frame]]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageReadError(f"no images found in folder: {path}")
    for p in files[:max_frames]:
        try:
            frame: Frame = read_image(p)
        except ImageReadError as exc:
            frame = exc
        yield p.name, frame


def predict(model: str | Path, source: str | Path, out_dir: str | Path | None = None,
            backend: str | None = None, conf: float = 0.25, iou: float = 0.7, max_det: int = 300,
            threads: int | None = None, max_frames: int | None = None,
            on_result: Callable[[PredictResult], None] | None = None) -> list[PredictResult]:
    """Detect objects in every frame of `source`; draw boxes into `out_dir` when given. Images of a
    folder that cannot be read are results with `error` set; the others go on."""
    check_max_frames(max_frames)
    out = Path(out_dir) if out_dir else None
    results = []
    with Detector(model, backend=backend, conf=conf, iou=iou, max_det=max_det, threads=threads) as det:
        for name, frame in iter_frames(source, max_frames):
            res = _one(det, name, frame, out)
            results.append(res)
            if on_result:
                on_result(res)
    return results


def _one(det: Detector, name: str, frame: Frame, out: Path | None) -> PredictResult:
    """The result of one frame: detections (drawn into `out` when given), or the read error."""
    if isinstance(frame, ImageReadError):
        return PredictResult(name, [], (0, 0), None, error=str(frame))
    dets = det(frame)
    saved = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        target = out / (Path(name).stem + ".jpg")
        cv2.imwrite(str(target), draw_detections(frame, dets))
        saved = str(target)
    return PredictResult(name, dets.to_list(), (int(frame.shape[0]), int(frame.shape[1])), saved)
