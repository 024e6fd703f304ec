"""Data set records shared by the YOLO and COCO readers: Sample, LabelIssue, Dataset."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.errors import DatasetError


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), np.float32)


@dataclass
class Sample:
    """One image and its ground truth, boxes in pixels (x1, y1, x2, y2)."""

    image_id: int
    image_path: Path
    size: tuple[int, int] | None = None  # (h, w); None until the image (or its json entry) is read
    boxes_xyxy: np.ndarray = field(default_factory=_empty_boxes)  # float32 (n, 4)
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (n,)
    iscrowd: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # (n,)
    areas: np.ndarray | None = None  # float64 (n,): COCO 'area' (kept for APs/m/l); None: box area
    label_path: Path | None = None  # YOLO label file (may not exist: no objects)

    def __len__(self) -> int:
        return int(self.class_ids.shape[0])


@dataclass(frozen=True)
class LabelIssue:
    """A problem found in a label file, an annotation or an image."""

    file: Path | str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else f"{self.file}"
        return f"{where}: {self.message}"


@dataclass
class Dataset:
    """A labelled image set: class names, category-id mapping, samples and the issues skipped."""

    names: dict[int, str]  # class index -> name
    category_ids: dict[int, int]  # class index -> COCO category id (identity for YOLO)
    samples: list[Sample]
    issues: list[LabelIssue] = field(default_factory=list)
    root: Path = Path(".")
    format: str = "yolo"  # "yolo" or "coco"
    source: Path | None = None  # the data.yaml or the annotation json
    split: str | None = None
    labelled: bool = True  # False: images only (no ground truth; see edge_sdk.datasets.images)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def nc(self) -> int:
        """Number of classes."""
        return len(self.names)

    def image_paths(self) -> list[Path]:
        """Paths of every sample's image, in sample order."""
        return [s.image_path for s in self.samples]

    def to_coco(self) -> dict[str, Any]:
        """COCO ground-truth dict (images, annotations with xywh boxes, categories)."""
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for sample in self.samples:
            images.append(self._coco_image(sample))
            annotations.extend(_coco_annotations(sample, self.category_ids, len(annotations) + 1))
        categories = [
            {"id": int(self.category_ids[k]), "name": self.names[k]}
            for k in sorted(self.names, key=lambda k: self.category_ids[k])
        ]
        return {"info": {"description": f"edgebench {self.format} data set"}, "licenses": [],
                "images": images, "annotations": annotations, "categories": categories}

    def _coco_image(self, sample: Sample) -> dict[str, Any]:
        if sample.size is None:
            raise DatasetError(f"{sample.image_path}: image size unknown, cannot write COCO json")
        h, w = sample.size
        return {"id": int(sample.image_id),
                "file_name": _relative_name(sample.image_path, self.root),
                "width": int(w), "height": int(h)}


def _relative_name(path: Path, root: Path) -> str:
    """The image path relative to the data set root when it lies under it, else as given."""
    try:
        return Path(os.path.relpath(path, root)).as_posix() if _is_under(path, root) else str(path)
    except ValueError:  # different drives on Windows
        return str(path)


def _is_under(path: Path, root: Path) -> bool:
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(root))


def _coco_annotations(sample: Sample, category_ids: dict[int, int], first_id: int) -> list[dict[str, Any]]:
    """COCO annotation dicts for one sample, ids counting from first_id."""
    out = []
    boxes = sample.boxes_xyxy.astype(np.float64)
    for i, (box, cls) in enumerate(zip(boxes, sample.class_ids, strict=False)):
        x1, y1, x2, y2 = (float(v) for v in box)
        w, h = x2 - x1, y2 - y1
        area = float(sample.areas[i]) if sample.areas is not None else w * h
        out.append({"id": first_id + i, "image_id": int(sample.image_id),
                    "category_id": int(category_ids[int(cls)]), "bbox": [x1, y1, w, h],
                    "area": area, "iscrowd": int(bool(sample.iscrowd[i]))})
    return out
