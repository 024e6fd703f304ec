"""Seeded COCO ground-truth / detection cases for the accuracy tests, and a direct pycocotools run."""
from __future__ import annotations

import contextlib
import copy
import io

import numpy as np

CATS = (1, 5, 90)  # non-contiguous category ids


def random_case(seed: int, n_images: int = 12) -> tuple[dict, list[dict]]:
    """GT with crowd boxes, empty images and sparse ids; detections with misses, false positives,
    images without detections and one image with more than 100 detections."""
    rng = np.random.default_rng(seed)
    images = [{"id": 100 + i, "width": 640, "height": 480, "file_name": f"{i}.jpg"} for i in range(n_images)]
    anns: list[dict] = []
    dets: list[dict] = []
    for n, img in enumerate(images):
        n_gt = 0 if n % 5 == 4 else int(rng.integers(1, 8))  # every 5th image has no GT
        for _ in range(n_gt):
            box = _random_box(rng)
            crowd = int(rng.random() < 0.15)
            anns.append({"id": len(anns) + 1, "image_id": img["id"], "category_id": int(rng.choice(CATS)),
                         "bbox": box, "area": box[2] * box[3] * float(rng.uniform(0.6, 1.0)), "iscrowd": crowd})
            if n % 3 != 2:  # every 3rd image gets no detections from its GT (every 6th none at all)
                dets += _jittered(rng, img["id"], anns[-1])
        n_fp = 130 if n == 1 else 0 if n % 6 == 5 else int(rng.integers(0, 4))  # image 1: > 100 dets
        dets += [{"image_id": img["id"], "category_id": int(rng.choice(CATS)), "bbox": _random_box(rng),
                  "score": float(rng.random())} for _ in range(n_fp)]
    cats = [{"id": c, "name": f"class{c}", "supercategory": "thing"} for c in CATS]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def _random_box(rng: np.random.Generator) -> list[float]:
    w, h = (float(v) for v in rng.choice([8.0, 40.0, 150.0]) * rng.uniform(0.5, 1.5, 2))
    x, y = float(rng.uniform(0, 640 - w)), float(rng.uniform(0, 480 - h))
    return [round(x, 2), round(y, 2), round(w, 2), round(h, 2)]


def _jittered(rng: np.random.Generator, image_id: int, ann: dict) -> list[dict]:
    """0-2 detections near a GT box (sometimes with the wrong class)."""
    out = []
    x, y, w, h = ann["bbox"]
    for _ in range(int(rng.integers(0, 3))):
        j = rng.normal(0, 0.07, 4) * [w, h, w, h]
        cat = ann["category_id"] if rng.random() < 0.85 else int(rng.choice(CATS))
        out.append({"image_id": image_id, "category_id": cat, "score": float(rng.uniform(0.3, 1.0)),
                    "bbox": [x + j[0], y + j[1], max(1.0, w + j[2]), max(1.0, h + j[3])]})
    return out


def pycocotools_stats(gt: dict, dt: list[dict]) -> np.ndarray:
    """The 12 stats from pycocotools itself. An empty `dt` is replaced by one detection of a
    category absent from GT, which COCOeval never scores (loadRes cannot take [])."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dt = copy.deepcopy(dt) or [{"image_id": gt["images"][0]["id"], "category_id": 123456,
                                "bbox": [0.0, 0.0, 1.0, 1.0], "score": 0.5}]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(dt), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)
