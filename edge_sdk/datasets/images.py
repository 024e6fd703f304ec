"""A folder of images without labels -> an unlabelled Dataset (for label-free 'agreement mAP')."""
from __future__ import annotations

from pathlib import Path

from edge_sdk.datasets.types import Dataset, LabelIssue, Sample
from edge_sdk.datasets.validate import image_sizes
from edge_sdk.datasets.yolo import IMAGE_SUFFIXES
from runtimes.errors import DatasetError


def image_files(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name (sub-folders are not searched)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_images(folder: str | Path, names: dict[int, str] | None = None) -> Dataset:
    """Every image of `folder` as a sample with no boxes; `labelled` is False.

    Class names are unknown until a model is chosen: pass them, or fill `Dataset.names` later.
    Unreadable images are skipped and listed in `issues`.
    """
    root = Path(folder)
    paths = image_files(root) if root.is_dir() else []
    if not paths:
        raise DatasetError(f"no data.yaml and no images in folder: {root}")
    samples, issues = [], []
    for image_id, (path, size) in enumerate(zip(paths, image_sizes(paths), strict=False), start=1):
        if isinstance(size, str):
            issues.append(LabelIssue(path, None, size))
            continue
        samples.append(Sample(image_id=image_id, image_path=path, size=size))
    names = dict(names or {})
    return Dataset(names=names, category_ids={k: k for k in names}, samples=samples, issues=issues,
                   root=root, format="images", source=root, split=None, labelled=False)
