"""load_dataset: pick the reader from the path (data.yaml, folder with one, or COCO json)."""
from __future__ import annotations

from pathlib import Path

from edge_sdk.datasets.coco import load_coco
from edge_sdk.datasets.images import load_images
from edge_sdk.datasets.types import Dataset
from edge_sdk.datasets.yolo import load_yolo
from runtimes.errors import DatasetError

YAML_NAMES = ("data.yaml", "data.yml")


def load_dataset(path: str | Path, split: str = "val", strict: bool = False,
                 allow_unlabelled: bool = False) -> Dataset:
    """A .yaml/.yml -> load_yolo; a .json -> load_coco (split unused); a folder with data.yaml;
    with `allow_unlabelled`, a folder of images without one -> an unlabelled Dataset (load_images)."""
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"data set not found: {p}")
    suffix = p.suffix.lower()
    if p.is_file() and suffix in (".yaml", ".yml"):
        return load_yolo(p, split=split, strict=strict)
    if p.is_file() and suffix == ".json":
        return load_coco(p, strict=strict)
    if p.is_dir():
        for name in YAML_NAMES:
            if (p / name).is_file():
                return load_yolo(p / name, split=split, strict=strict)
        if allow_unlabelled:
            return load_images(p)  # no data.yaml: a folder of unlabelled images (or DatasetError)
        raise DatasetError(f"no data.yaml in folder: {p}")
    raise DatasetError(f"not a data set (expected a data.yaml, a folder with one, or a COCO .json):"
                       f" {p}")
