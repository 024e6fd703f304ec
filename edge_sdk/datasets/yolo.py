"""Ultralytics data.yaml + YOLO txt labels -> Dataset (boxes converted to pixels)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edge_sdk.datasets.types import Dataset, LabelIssue, Sample
from edge_sdk.datasets.validate import Box, image_sizes, parse_yolo_labels, settle
from runtimes.errors import DatasetError

IMAGE_SUFFIXES = frozenset({".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff",
                            ".webp", ".pfm"})


def load_yolo(data_yaml: str | Path, split: str = "val", strict: bool = False) -> Dataset:
    """Read one split of an Ultralytics data set; bad labels are skipped and listed (or raised)."""
    yaml_path = Path(data_yaml)
    config = read_data_yaml(yaml_path)
    root = dataset_root(config, yaml_path)
    names = parse_names(config, yaml_path)
    images, issues = list_split(config, split, root, yaml_path)
    samples, label_issues = _read_samples(images, names)
    issues = settle(issues + label_issues, strict, yaml_path)
    return Dataset(names=names, category_ids={k: k for k in names}, samples=samples,
                   issues=issues, root=root, format="yolo", source=yaml_path, split=split)


def read_data_yaml(path: Path) -> dict[str, Any]:
    """The data.yaml mapping, or a DatasetError naming the file."""
    if not path.is_file():
        raise DatasetError(f"data set file not found: {path}")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise DatasetError(f"{path}: invalid YAML{where}: {problem or 'cannot parse'}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise DatasetError(f"{path}: expected a mapping with 'names' and split keys")
    return config


def dataset_root(config: dict[str, Any], yaml_path: Path) -> Path:
    """The `path` key (relative to the yaml's folder, else to the working directory as
    Ultralytics does), or the yaml's folder when absent."""
    raw = config.get("path")
    if raw in (None, ""):
        return yaml_path.parent
    given = Path(str(raw)).expanduser()
    root = given if given.is_absolute() else yaml_path.parent / given
    if not root.is_dir() and not given.is_absolute() and given.is_dir():
        root = given
    if not root.is_dir():
        raise DatasetError(f"{yaml_path}: 'path' folder not found: {root}")
    return root


def parse_names(config: dict[str, Any], yaml_path: Path) -> dict[int, str]:
    """Class index -> name from `names` (list or mapping), checked against `nc`."""
    raw, nc = config.get("names"), config.get("nc")
    if nc is not None and (isinstance(nc, bool) or not isinstance(nc, int) or nc < 1):
        raise DatasetError(f"{yaml_path}: 'nc' must be a positive integer, got {nc!r}")
    if raw is None:
        if nc is None:
            raise DatasetError(f"{yaml_path}: missing 'names' (class names)")
        raw = [f"class{i}" for i in range(nc)]
    if isinstance(raw, (list, tuple)):
        names = {i: str(n) for i, n in enumerate(raw)}
    elif isinstance(raw, dict):
        names = _names_from_mapping(raw, yaml_path)
    else:
        raise DatasetError(f"{yaml_path}: 'names' must be a list or a mapping id: name")
    if not names:
        raise DatasetError(f"{yaml_path}: 'names' is empty")
    if nc is not None and nc != len(names):
        raise DatasetError(f"{yaml_path}: 'nc' is {nc} but 'names' has {len(names)} entries")
    return names


def _names_from_mapping(raw: dict[Any, Any], yaml_path: Path) -> dict[int, str]:
    names = {}
    for key, value in raw.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            raise DatasetError(f"{yaml_path}: 'names' key {key!r} is not a class index") from None
        if index < 0 or isinstance(key, bool):
            raise DatasetError(f"{yaml_path}: 'names' key {key!r} is not a class index")
        names[index] = str(value)
    return dict(sorted(names.items()))


def list_split(config: dict[str, Any], split: str, root: Path,
               yaml_path: Path) -> tuple[list[Path], list[LabelIssue]]:
    """Image paths of a split (folder, .txt list, single image, or a list of those)."""
    entry = config.get(split)
    if entry in (None, "", []):
        keys = ", ".join(k for k in ("train", "val", "test") if config.get(k)) or "none"
        raise DatasetError(f"{yaml_path}: no '{split}' split (splits present: {keys})")
    images: list[Path] = []
    issues: list[LabelIssue] = []
    for item in entry if isinstance(entry, list) else [entry]:
        path = Path(str(item)).expanduser()
        path = path if path.is_absolute() else root / path
        listed, missing = _split_entry(path, root)
        if listed is None:
            raise DatasetError(f"{yaml_path}: '{split}' path not found: {path}")
        images, issues = images + listed, issues + missing
    if not images and not issues:
        raise DatasetError(f"{yaml_path}: no images found for split '{split}'")
    return list(dict.fromkeys(images)), issues


def _split_entry(path: Path, root: Path) -> tuple[list[Path] | None, list[LabelIssue]]:
    """Images of one split entry (folder, .txt list or image); None when it does not exist."""
    if path.is_dir():
        return images_in(path), []
    if path.is_file() and path.suffix.lower() == ".txt":
        return _images_listed(path, root)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        return [path], []
    return None, []


def images_in(folder: Path) -> list[Path]:
    """Image files under a folder (recursive), sorted."""
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _images_listed(txt: Path, root: Path) -> tuple[list[Path], list[LabelIssue]]:
    """Images named in a .txt list (relative to the list's folder, else to the root)."""
    images, issues = [], []
    for number, line in enumerate(txt.read_text(encoding="utf-8-sig").splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        path = _resolve_listed(Path(name).expanduser(), txt.parent, root)
        if path.is_file():
            images.append(path)
        else:
            issues.append(LabelIssue(txt, number, f"image not found: {path}"))
    return images, issues


def _resolve_listed(path: Path, list_dir: Path, root: Path) -> Path:
    if path.is_absolute() or (list_dir / path).exists() or not (root / path).exists():
        return path if path.is_absolute() else list_dir / path
    return root / path


def label_path(image: Path) -> Path:
    """images/.../x.jpg -> labels/.../x.txt (the last 'images' component); else x.txt beside it."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _read_samples(images: list[Path],
                  names: dict[int, str]) -> tuple[list[Sample], list[LabelIssue]]:
    samples, issues = [], []
    for image_id, (path, size) in enumerate(zip(images, image_sizes(images), strict=False), start=1):
        if isinstance(size, str):
            issues.append(LabelIssue(path, None, size))
            continue
        labels = label_path(path)
        boxes, bad = parse_yolo_labels(labels, names)
        issues += bad
        samples.append(_sample(image_id, path, size, labels, boxes))
    return samples, issues


def _sample(image_id: int, path: Path, size: tuple[int, int], labels: Path,
            boxes: list[Box]) -> Sample:
    h, w = size
    xyxy = np.array([b for _, b in boxes], np.float64).reshape(-1, 4) * np.array([w, h, w, h])
    return Sample(image_id=image_id, image_path=path, size=size,
                  boxes_xyxy=xyxy.astype(np.float32),
                  class_ids=np.array([c for c, _ in boxes], np.int64),
                  iscrowd=np.zeros(len(boxes), bool), label_path=labels)
