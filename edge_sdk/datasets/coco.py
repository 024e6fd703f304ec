"""COCO ground-truth json -> Dataset (class indices follow categories sorted by id)."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.datasets.types import Dataset, LabelIssue, Sample
from edge_sdk.datasets.validate import check_coco_annotation, image_sizes, is_int, settle
from runtimes.errors import DatasetError

Size = tuple[int, int]  # (h, w)


def load_coco(ann_json: str | Path, images_dir: str | Path | None = None, strict: bool = False,
              check_images: bool = True) -> Dataset:
    """Read a COCO GT json; images are looked up in images_dir (or found next to the json).

    check_images=False trusts the json's width/height and does not open the images.
    """
    json_path = Path(ann_json)
    data = read_coco_json(json_path)
    names, category_ids = parse_categories(data, json_path)
    entries, issues = _image_entries(data, json_path)
    root = _images_root(json_path, images_dir, entries)
    sizes, image_issues = _image_sizes(entries, root, check_images)
    samples, ann_issues = _samples(data, entries, sizes, root, category_ids, json_path)
    issues = settle(issues + image_issues + ann_issues, strict, json_path)
    return Dataset(names=names, category_ids=category_ids, samples=samples, issues=issues,
                   root=root, format="coco", source=json_path)


def read_coco_json(path: Path) -> dict[str, Any]:
    """The json object, or a DatasetError naming the file."""
    if not path.is_file():
        raise DatasetError(f"annotation file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetError(f"{path}: not a COCO ground-truth file (no 'images' list)")
    return data


def parse_categories(data: dict[str, Any], path: Path) -> tuple[dict[int, str], dict[int, int]]:
    """(class index -> name, class index -> category id), indices in category-id order."""
    cats = data.get("categories")
    if not isinstance(cats, list) or not cats:
        raise DatasetError(f"{path}: no 'categories' list")
    by_id: dict[int, str] = {}
    for cat in cats:
        cid = cat.get("id") if isinstance(cat, dict) else None
        if not is_int(cid) or cid in by_id:
            raise DatasetError(f"{path}: category {str(cat)[:60]} has a missing or duplicate 'id'")
        by_id[cid] = str(cat.get("name", cid))
    ordered = sorted(by_id)
    return {i: by_id[c] for i, c in enumerate(ordered)}, dict(enumerate(ordered))


def _image_entries(data: dict[str, Any], path: Path) -> tuple[dict[int, dict[str, Any]], list[LabelIssue]]:
    """Usable image entries by id; an issue for each malformed or duplicate one."""
    entries: dict[int, dict[str, Any]] = {}
    issues = []
    for k, img in enumerate(data["images"]):
        image_id = img.get("id") if isinstance(img, dict) else None
        if not is_int(image_id):
            issues.append(LabelIssue(path, None, f"image entry #{k}: missing or non-integer 'id'"))
        elif not isinstance(img.get("file_name"), str) or not img["file_name"]:
            issues.append(LabelIssue(path, None, f"image id {image_id}: missing 'file_name'"))
        elif image_id in entries:
            issues.append(LabelIssue(path, None, f"image id {image_id}: duplicate image id"))
        else:
            entries[image_id] = img
    return entries, issues


def _images_root(json_path: Path, images_dir: str | Path | None, entries: dict[int, dict[str, Any]]) -> Path:
    """images_dir when given, else the first folder near the json that holds the images."""
    if images_dir is not None:
        root = Path(images_dir)
        if not root.is_dir():
            raise DatasetError(f"images folder not found: {root}")
        return root
    probes = [e["file_name"] for e in list(entries.values())[:5]]
    for base in _candidate_roots(json_path):
        if any((base / name).is_file() for name in probes):
            return base
    return json_path.parent


def _candidate_roots(json_path: Path) -> list[Path]:
    """The json's folder, images/ beside it, its parent, and <parent>/[images/]<split>."""
    here, up = json_path.parent, json_path.parent.parent
    split = json_path.stem.split("_")[-1]  # instances_val2017 -> val2017
    return [here, here / "images", up, up / "images", here / split, here / "images" / split,
            up / split, up / "images" / split]


def _json_size(img: dict[str, Any]) -> Size | None:
    h, w = img.get("height"), img.get("width")
    return (h, w) if is_int(h) and is_int(w) and h > 0 and w > 0 else None


def _image_sizes(entries: dict[int, dict[str, Any]], root: Path,
                 check_images: bool) -> tuple[dict[int, Size], list[LabelIssue]]:
    """(h, w) of each usable image; an issue for each unreadable or mis-sized one."""
    ids = list(entries)
    read: Sequence[Size | str | None] = image_sizes([root / entries[i]["file_name"] for i in ids]) \
        if check_images else [None] * len(ids)
    sizes: dict[int, Size] = {}
    issues: list[LabelIssue] = []
    for image_id, got in zip(ids, read, strict=False):
        path, declared = root / entries[image_id]["file_name"], _json_size(entries[image_id])
        if isinstance(got, str):
            issues.append(LabelIssue(path, None, got))
        elif got is not None and declared is not None and got != declared:
            issues.append(LabelIssue(path, None, f"image is {got[1]}x{got[0]} but the json says "
                                                 f"{declared[1]}x{declared[0]}"))
        elif (size := got or declared) is None:
            issues.append(LabelIssue(path, None, f"image id {image_id}: no width/height in json"))
        else:
            sizes[image_id] = size
    return sizes, issues


def _samples(data: dict[str, Any], entries: dict[int, dict[str, Any]], sizes: dict[int, Size], root: Path,
             category_ids: dict[int, int], path: Path) -> tuple[list[Sample], list[LabelIssue]]:
    """One Sample per usable image with its valid annotations; an issue per bad annotation."""
    class_of = {cid: k for k, cid in category_ids.items()}
    per_image: dict[int, list[dict[str, Any]]] = {i: [] for i in sizes}
    issues = []
    for ann in data.get("annotations") or []:
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        if is_int(image_id) and image_id in entries and image_id not in sizes:
            continue  # its image was skipped and already reported
        problem = check_coco_annotation(ann, sizes, class_of)
        if problem:
            issues.append(LabelIssue(path, None, problem))
        else:
            per_image[ann["image_id"]].append(ann)
    samples = [_sample(i, root / entries[i]["file_name"], sizes[i], per_image[i], class_of)
               for i in sizes]
    return samples, issues


def _sample(image_id: int, path: Path, size: Size, anns: list[dict[str, Any]],
            class_of: dict[int, int]) -> Sample:
    xywh = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    areas = [a["area"] if _is_number(a.get("area")) else float(w * h)
             for a, (w, h) in zip(anns, xywh[:, 2:], strict=False)]
    return Sample(image_id=image_id, image_path=path, size=size,
                  boxes_xyxy=xyxy.astype(np.float32),
                  class_ids=np.array([class_of[a["category_id"]] for a in anns], np.int64),
                  iscrowd=np.array([bool(a.get("iscrowd", 0)) for a in anns], bool),
                  areas=np.array(areas, np.float64))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
