"""Calibration images: chosen from a folder, a data.yaml split or a list, preprocessed exactly as
inference does (edge_sdk.letterbox), hashed by content, and never the evaluation images unless asked.
"""
from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.datasets.yolo import IMAGE_SUFFIXES, list_split, read_data_yaml
from edge_sdk.frames import read_image
from edge_sdk.hashing import sha256_of
from edge_sdk.letterbox import input_hw, preprocess
from runtimes.errors import CalibrationError, DatasetError

#: How many images a calibration set takes by default (ORT/NNCF/TensorRT guides use 100-1000).
DEFAULT_IMAGES = 300
#: The split of a data.yaml a calibration set is taken from by default (never the evaluation split).
DEFAULT_SPLIT = "train"
#: What inference does to a frame before the model sees it (recorded with every int8 artifact).
PREPROCESSING = "letterbox (pad 114, centred), BGR->RGB, /255, float32"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class CalibrationSet:
    """The images a quantizer calibrates on, and how they are fed to the model."""

    files: tuple[Path, ...]
    sha256: str  # over the images' content hashes (sorted) and the preprocessing
    input_hw: tuple[int, int]
    layout: str = "nchw"  # "nchw" (1,3,H,W) or "nhwc" (1,H,W,3)
    source: str = ""  # what was asked for: a folder, "data.yaml:train", a list file
    overlap_allowed: bool = False
    overlap: int = 0  # images also in the evaluation set (only non-zero when allowed)
    progress: Progress | None = field(default=None, compare=False)  # called (done, total) as images are read

    def __len__(self) -> int:
        return len(self.files)

    def arrays(self, limit: int | None = None) -> Iterator[np.ndarray]:
        """The preprocessed input tensors, one image each (float32, batch 1), in file order."""
        files = self.files[:limit]
        for done, path in enumerate(files, start=1):
            blob, _ = preprocess(read_image(path), self.input_hw, layout=self.layout)
            yield blob
            if self.progress is not None:
                self.progress(done, len(files))

    def with_progress(self, progress: Progress | None) -> CalibrationSet:
        """The same set, calling `progress(done, total)` after each image `arrays()` yields."""
        return replace(self, progress=progress)

    def with_layout(self, layout: str) -> CalibrationSet:
        """The same images fed as `layout` ("nchw" or "nhwc"); the content hash is unchanged."""
        return replace(self, layout=layout)

    def provenance(self) -> dict[str, Any]:
        """What every int8 artifact and row records about its calibration."""
        return {"source": self.source, "images": len(self), "sha256": self.sha256,
                "input_hw": list(self.input_hw), "preprocessing": PREPROCESSING,
                "overlap_allowed": self.overlap_allowed, "overlap_with_eval": self.overlap}


def build_calibration_set(source: str | Path | Sequence[str | Path], size: int | tuple[int, int], *,
                          layout: str = "nchw", limit: int = DEFAULT_IMAGES,
                          eval_images: Sequence[str | Path] = (), allow_overlap: bool = False,
                          progress: Progress | None = None, seed: int = 0) -> CalibrationSet:
    """Choose up to `limit` images from `source` (a folder, a data.yaml or a folder with one — its
    train split —, "data.yaml:split", a .txt list of paths, or a list of paths), hash them, and refuse
    (CalibrationError) any that are also among `eval_images` (by content), unless `allow_overlap`.
    More images than `limit`: a seeded sample, the same every time. `progress(done, total)` is called
    while hashing."""
    if limit < 1:
        raise CalibrationError(f"calibration needs at least 1 image, got a limit of {limit}")
    files, label = _files(source)
    if not files:
        raise CalibrationError(f"no calibration images in {label}")
    if len(files) > limit:
        files = sorted(random.Random(seed).sample(files, limit))
    hashes = _hashes(files, progress)
    overlap = _overlap(hashes, eval_images, label, allow_overlap)
    hw = input_hw(size)
    digest = hashlib.sha256(f"{PREPROCESSING}|{hw}\n".encode())
    for h in sorted(hashes):
        digest.update(f"{h}\n".encode())
    return CalibrationSet(tuple(files), digest.hexdigest(), hw, layout, label, allow_overlap, overlap)


def _files(source: str | Path | Sequence[str | Path]) -> tuple[list[Path], str]:
    """The candidate image files and a label naming where they came from."""
    if not isinstance(source, (str, Path)):
        files = [Path(p) for p in source]
        _check_exist(files, "the calibration list")
        return files, f"a list of {len(files)} image(s)"
    text = str(source)
    path, split = split_source(text)
    if path.is_dir() and not any((path / n).is_file() for n in ("data.yaml", "data.yml")):
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), str(path)
    if path.is_dir():
        path = next(path / n for n in ("data.yaml", "data.yml") if (path / n).is_file())
    if path.suffix.lower() in (".yaml", ".yml"):
        return _split_files(path, split or DEFAULT_SPLIT), f"{path}:{split or DEFAULT_SPLIT}"
    if path.suffix.lower() == ".txt" and path.is_file():
        files = [Path(line.strip()) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        files = [f if f.is_absolute() else path.parent / f for f in files]
        _check_exist(files, str(path))
        return files, str(path)
    raise CalibrationError(f"calibration source not found or not understood: {text} (give a folder of images, "
                           "a data.yaml, data.yaml:SPLIT or a .txt list of image paths)")


def split_source(text: str) -> tuple[Path, str | None]:
    """A calibration source as (path, split): 'data.yaml:val' -> (data.yaml, 'val'); anything else -> (path,
    None)."""
    head, sep, tail = text.rpartition(":")
    if sep and head.lower().endswith((".yaml", ".yml")) and tail and "/" not in tail:
        return Path(head), tail
    return Path(text), None


def _split_files(yaml_path: Path, split: str) -> list[Path]:
    config = read_data_yaml(yaml_path)
    from edge_sdk.datasets.yolo import dataset_root

    try:
        images, _ = list_split(config, split, dataset_root(config, yaml_path), yaml_path)
    except DatasetError as exc:
        raise CalibrationError(f"calibration images: {exc}") from exc
    return images


def _check_exist(files: Sequence[Path], where: str) -> None:
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise CalibrationError(f"{where}: {len(missing)} image(s) not found, first {missing[0]}")


def _hashes(files: Sequence[Path], progress: Progress | None) -> list[str]:
    out = []
    for i, path in enumerate(files, start=1):
        out.append(sha256_of(path))
        if progress is not None:
            progress(i, len(files))
    return out


def _overlap(hashes: Sequence[str], eval_images: Sequence[str | Path], label: str, allow: bool) -> int:
    """How many calibration images are also evaluation images (by content); CalibrationError unless allowed."""
    if not eval_images:
        return 0
    evaluated = {sha256_of(Path(p)) for p in eval_images}
    shared = sum(h in evaluated for h in hashes)
    if shared and not allow:
        raise CalibrationError(f"{shared} of the {len(hashes)} calibration images from {label} are also "
                               "evaluation images (same content): calibrating on them would flatter the int8 "
                               "mAP; use another split, or pass --allow-calib-overlap to do it anyway (the "
                               "report will say so)")
    return shared
