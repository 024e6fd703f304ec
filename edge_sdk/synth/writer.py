"""Writing the synthetic data set in the Ultralytics layout, plus COCO ground truth for val.

Layout under the output folder (the data set root):

- ``data.yaml``: ``train: images/train``, ``val: images/val``, ``nc``, ``names``.
- ``images/{train,val}/NNNNNN.jpg``: NNNNNN is the 0-based image index within its split.
- ``labels/{train,val}/NNNNNN.txt``: ``cls cx cy w h`` per line, normalised, 6 decimals;
  an empty file means an image without objects.
- ``annotations/instances_val.json``: COCO ground truth for val. Image ``id`` = index + 1
  (the order and ids ``edge_sdk.datasets.load_yolo`` gives); ``file_name`` relative to the
  data set root (the json folder's parent), e.g. ``images/val/000007.jpg``; category ``id``
  = class index + 1 (what Ultralytics writes in predictions for a non-COCO data set);
  ``bbox`` xywh in pixels; ``area`` = visible object pixels (mask area, as in COCO);
  ``iscrowd`` 0.
- ``synth.json``: the parameters that regenerate it exactly.

Val images are square, except a fraction ``val_nonsquare`` that are 4:3 or 3:4 with the long
side ``imgsz`` (to exercise letterboxing); train images are all square.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypedDict

import cv2
import numpy as np

from edge_sdk.synth.compose import Scene, render_image
from edge_sdk.synth.shapes import CLASS_NAMES
from runtimes.errors import DatasetError

FORMAT_VERSION = 1
JPEG_QUALITY = 90
Progress = Callable[[int, int], None]


class SynthParams(TypedDict):
    """The generation parameters, written to ``synth.json`` (they regenerate the data set)."""

    generator: str
    format_version: int
    seed: int
    train: int
    val: int
    imgsz: int
    val_nonsquare: float
    image_format: str
    names: list[str]


def check_output(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Refuse an output path that is a file, or a non-empty folder unless `overwrite`."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"output path {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DatasetError(f"output folder {out} is not empty; use --overwrite to replace it")
    return out


def resolve_classes(classes: Sequence[str] | None) -> tuple[str, ...]:
    """The class names to draw: all of CLASS_NAMES, or a subset given by name."""
    if classes is None:
        return CLASS_NAMES
    names = tuple(classes)
    unknown = [c for c in names if c not in CLASS_NAMES]
    if unknown or not names or len(set(names)) != len(names):
        raise DatasetError(
            f"classes must be distinct names from {', '.join(CLASS_NAMES)}; got {', '.join(names)}"
        )
    return names


def label_text(scene: Scene) -> str:
    """YOLO txt labels of a scene: one 'cls cx cy w h' line per object, normalised."""
    h, w = scene.image.shape[:2]
    lines = []
    for cls, (x1, y1, x2, y2) in zip(scene.class_ids, scene.boxes, strict=False):
        cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
        lines.append(f"{int(cls)} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}\n")
    return "".join(lines)


def coco_records(scene: Scene, image_id: int, file_name: str, first_ann_id: int
                 ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The COCO image entry and annotation entries of one scene."""
    h, w = scene.image.shape[:2]
    image = {"id": image_id, "file_name": file_name, "width": w, "height": h}
    anns = []
    for k, (cls, box, area) in enumerate(zip(scene.class_ids, scene.boxes, scene.areas, strict=False)):
        x1, y1, x2, y2 = (float(v) for v in box)
        anns.append({
            "id": first_ann_id + k, "image_id": image_id, "category_id": int(cls) + 1,
            "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(area), "iscrowd": 0,
        })
    return image, anns


def _write_image(path: Path, image: np.ndarray) -> None:
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if path.suffix == ".jpg" else []
    ok, buf = cv2.imencode(path.suffix, image, params)
    if not ok:
        raise DatasetError(f"cannot encode image {path}")
    path.write_bytes(buf.tobytes())


def _coco_header(names: tuple[str, ...], seed: int) -> dict[str, Any]:
    return {
        "info": {"description": "edgebench synthetic shapes (file_name relative to the "
                                "data set root)", "version": str(FORMAT_VERSION), "seed": seed},
        "licenses": [],
        "categories": [{"id": i + 1, "name": n, "supercategory": "shape"}
                       for i, n in enumerate(names)],
    }


def _write_split(root: Path, split: str, count: int, params: SynthParams, names: tuple[str, ...],
                 tick: Callable[[], None]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Render and write one split; return its COCO image and annotation entries."""
    img_dir, lbl_dir = root / "images" / split, root / "labels" / split
    img_dir.mkdir(parents=True)
    lbl_dir.mkdir(parents=True)
    nonsquare = params["val_nonsquare"] if split == "val" else 0.0
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for index in range(count):
        scene = render_image(params["seed"], split, index, params["imgsz"], names, nonsquare)
        stem = f"{index:06d}"
        file_name = f"images/{split}/{stem}.{params['image_format']}"
        _write_image(root / file_name, scene.image)
        (lbl_dir / f"{stem}.txt").write_text(label_text(scene), encoding="utf-8")
        image, image_anns = coco_records(scene, index + 1, file_name, len(anns) + 1)
        images.append(image)
        anns.extend(image_anns)
        tick()
    return images, anns


def _data_yaml(names: tuple[str, ...], params: SynthParams) -> str:
    head = (f"# edgebench synthetic shapes, seed {params['seed']}, imgsz {params['imgsz']}; "
            "COCO val ground truth: annotations/instances_val.json\n")
    body = "train: images/train\nval: images/val\n"
    return head + body + f"nc: {len(names)}\nnames:\n" + "".join(
        f"  {i}: {n}\n" for i, n in enumerate(names))


def _commit(tmp: Path, out: Path) -> None:
    """Move the finished folder `tmp` to `out`, replacing what `out` held."""
    if not out.exists():
        os.replace(tmp, out)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.replace(out, trash / "old")
    os.replace(tmp, out)
    shutil.rmtree(trash)


def _validate(train: int, val: int, imgsz: int, seed: int, image_format: str,
              val_nonsquare: float) -> None:
    if train < 0 or val < 0:
        raise DatasetError(f"image counts must be >= 0; got train={train}, val={val}")
    if imgsz < 32:
        raise DatasetError(f"imgsz must be >= 32; got {imgsz}")
    if seed < 0:
        raise DatasetError(f"seed must be >= 0; got {seed}")
    if image_format not in ("jpg", "png"):
        raise DatasetError(f"image_format must be 'jpg' or 'png'; got {image_format!r}")
    if not 0.0 <= val_nonsquare <= 1.0:
        raise DatasetError(f"val_nonsquare must be in [0, 1]; got {val_nonsquare}")


def generate(out_dir: str | Path, train: int = 2000, val: int = 200, imgsz: int = 320,
             seed: int = 0, classes: Sequence[str] | None = None,
             progress: Progress | None = None, *, overwrite: bool = False,
             val_nonsquare: float = 0.25, image_format: str = "jpg") -> Path:
    """Write a synthetic detection data set to `out_dir` and return its path.

    The same arguments give byte-identical labels and identical images. Work happens in a
    hidden folder next to `out_dir` that is renamed at the end, so an interrupted run leaves
    `out_dir` untouched. `progress(done, total)` is called after each image.
    """
    _validate(train, val, imgsz, seed, image_format, val_nonsquare)
    names = resolve_classes(classes)
    out = check_output(out_dir, overwrite).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    params: SynthParams = {"generator": "edge_sdk.synth", "format_version": FORMAT_VERSION, "seed": seed,
              "train": train, "val": val, "imgsz": imgsz, "val_nonsquare": val_nonsquare,
              "image_format": image_format, "names": list(names)}
    total, done = train + val, [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _write_split(tmp, "train", train, params, names, tick)
        images, anns = _write_split(tmp, "val", val, params, names, tick)
        coco = _coco_header(names, seed) | {"images": images, "annotations": anns}
        (tmp / "annotations").mkdir()
        (tmp / "annotations" / "instances_val.json").write_text(json.dumps(coco), "utf-8")
        (tmp / "data.yaml").write_text(_data_yaml(names, params), encoding="utf-8")
        (tmp / "synth.json").write_text(json.dumps(params, indent=2) + "\n", encoding="utf-8")
        _commit(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out
