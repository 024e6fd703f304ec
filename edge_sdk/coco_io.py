"""Read and check COCO ground truth and detections; build the metric engine's COCO objects quietly.

Ground truth is the COCO detection format (`images`, `annotations`, `categories`); detections
are the COCO results format (a list of `{image_id, category_id, bbox: [x, y, w, h], score}`).
Inputs may be paths or in-memory objects; we never mutate the caller's dicts.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import math
import numbers
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from runtimes.errors import BackendUnavailableError, DatasetError, ReportError

ENGINES = ("auto", "pycocotools", "faster")
_PACKAGES = {"pycocotools": ("pycocotools", None), "faster": ("faster_coco_eval", "fast")}
DT_KEYS = ("image_id", "category_id", "bbox", "score")
GT_ANN_KEYS = ("id", "image_id", "category_id", "bbox")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow what the COCO libraries print to stdout (so `--json` output stays clean)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def resolve_engine(engine: str) -> str:
    """'auto' -> 'faster' when faster-coco-eval is installed, else 'pycocotools'; check the name."""
    if engine not in ENGINES:
        raise ValueError(f"unknown COCO engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "auto":
        return "faster" if importlib.util.find_spec("faster_coco_eval") else "pycocotools"
    module, extra = _PACKAGES[engine]
    if importlib.util.find_spec(module) is None:
        raise BackendUnavailableError(engine, module.replace("_", "-"), extra, "COCO metrics engine")
    return engine


def engine_api(name: str) -> tuple[type, Callable[..., Any]]:
    """The (COCO class, evaluator factory taking (gt_coco, dt_coco)) of a resolved engine."""
    if name == "faster":
        from faster_coco_eval import COCO, COCOeval_faster

        def make(gt: Any, dt: Any) -> Any:
            return COCOeval_faster(gt, dt, iouType="bbox", print_function=_silent)

        return COCO, make
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return COCO, lambda gt, dt: COCOeval(gt, dt, iouType="bbox")


def _silent(*_args: Any, **_kwargs: Any) -> None:
    """A print function that prints nothing."""


def make_coco(coco_cls: type, dataset: dict[str, Any]) -> Any:
    """A COCO index over an in-memory dataset (no temp file)."""
    with quiet():
        coco = coco_cls()
        coco.dataset = dataset
        coco.createIndex()
    return coco


def results_coco(gt_coco: Any, coco_cls: type, dets: list[dict[str, Any]]) -> Any:
    """The engine's results object for `dets`; an empty list gives an empty (evaluable) index."""
    if not dets:  # pycocotools' loadRes indexes anns[0]; an empty index means "no detections"
        dataset = {"images": list(gt_coco.dataset["images"]), "annotations": [],
                   "categories": list(gt_coco.dataset["categories"])}
        return make_coco(coco_cls, dataset)
    with quiet():
        return gt_coco.loadRes([dict(d) for d in dets])  # loadRes adds keys: give it copies


# ----------------------------------------------------------------------------- reading

def _read(src: dict[str, Any] | list[Any] | str | Path, error: type[Exception], what: str) -> tuple[str, Any]:
    """(name for messages, parsed JSON) of an in-memory object or a JSON file."""
    if not isinstance(src, (str, Path)):
        return f"<{what}>", src
    path = Path(src)
    try:
        return str(path), json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise error(f"{path}: {what} file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read {what} file ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise error(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc


def _id(value: Any) -> int | None:
    """An id as a plain int (COCO ids are integers), or None if it is not an integer."""
    if type(value) is int:  # fast path: JSON input
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def _box(value: Any) -> list[float] | None:
    """A bbox as four finite floats, or None if it is not one."""
    try:
        if len(value) != 4 or any(isinstance(v, (bool, str)) for v in value):
            return None
        box = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return box if all(math.isfinite(v) for v in box) else None


_KINDS: dict[type, str] = {dict: "object", list: "list"}


def _kind(obj: Any) -> str:
    return _KINDS.get(type(obj), type(obj).__name__)


def load_gt(gt: dict[str, Any] | str | Path) -> dict[str, Any]:
    """A checked copy of a COCO ground truth. Missing `area` becomes w*h, missing `iscrowd` 0."""
    src, data = _read(gt, DatasetError, "ground truth")
    if not isinstance(data, dict):
        raise DatasetError(f"{src}: expected a COCO ground-truth object, got a JSON {_kind(data)}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{src}: no '{key}' list (not a COCO ground-truth file)")
    images = _with_ids(data["images"], src, "images")
    cats = _with_ids(data["categories"], src, "categories")
    img_ids, cat_ids = {i["id"] for i in images}, {c["id"] for c in cats}
    anns = [_gt_ann(a, n, src, img_ids, cat_ids) for n, a in enumerate(data["annotations"])]
    ann_ids = [a["id"] for a in anns]
    if len(set(ann_ids)) != len(ann_ids):
        raise DatasetError(f"{src}: annotation ids are not unique")
    return {"info": data.get("info", {}), "images": images, "annotations": anns, "categories": cats}


def _with_ids(items: list[Any], src: str, key: str) -> list[dict[str, Any]]:
    """Copies of `items` whose `id` is an integer, unique within the list."""
    out = []
    for n, item in enumerate(items):
        ident = _id(item.get("id")) if isinstance(item, dict) else None
        if ident is None:
            raise DatasetError(f"{src}: {key}[{n}] has no integer 'id'")
        out.append({**item, "id": ident})
    if len({i["id"] for i in out}) != len(out):
        raise DatasetError(f"{src}: ids in '{key}' are not unique")
    return out


def _gt_ann(ann: Any, n: int, src: str, img_ids: set[int], cat_ids: set[int]) -> dict[str, Any]:
    """A checked copy of one ground-truth annotation."""
    where = f"{src}: annotations[{n}]"
    if not isinstance(ann, dict):
        raise DatasetError(f"{where} is not an object")
    missing = [k for k in GT_ANN_KEYS if k not in ann]
    if missing:
        raise DatasetError(f"{where} lacks key(s) {', '.join(missing)}")
    ann_id, img, cat, box = _id(ann["id"]), _id(ann["image_id"]), _id(ann["category_id"]), _box(ann["bbox"])
    if not isinstance(ann_id, int) or ann_id <= 0:  # pycocotools treats a match to id 0 as no match
        raise DatasetError(f"{where} has id {ann['id']!r}; annotation ids must be positive integers")
    if img not in img_ids:
        raise DatasetError(f"{where} has image_id {ann['image_id']!r}, not in 'images'")
    if cat not in cat_ids:
        raise DatasetError(f"{where} has category_id {ann['category_id']!r}, not in 'categories'")
    if box is None:
        raise DatasetError(f"{where} has bbox {ann['bbox']!r}; expected [x, y, w, h] finite numbers")
    out = {**ann, "id": ann_id, "image_id": img, "category_id": cat, "bbox": box}
    out.setdefault("area", box[2] * box[3])
    out.setdefault("iscrowd", 0)
    return out


def load_dt(dt: list[dict[str, Any]] | str | Path, image_ids: set[int],
            category_ids: set[int] | None = None) -> list[dict[str, Any]]:
    """Checked COCO-results detections (never mutated); every image_id must be in `image_ids`, and
    every category_id in `category_ids` when given (a detection of an unknown category scores nothing,
    so a whole file of them would read as AP -1 instead of an error)."""
    src, data = _read(dt, ReportError, "detections")
    if not isinstance(data, list):
        raise ReportError(f"{src}: expected a JSON list of detections (COCO results), got a JSON {_kind(data)}")
    dets = [_det(d, n, src) for n, d in enumerate(data)]
    unknown = {d["image_id"] for d in dets} - image_ids
    if unknown:
        count = sum(d["image_id"] in unknown for d in dets)
        raise ReportError(f"{src}: {count} detection(s) have an image_id not in the ground truth "
                          f"(e.g. {min(unknown)})")
    if category_ids is not None:
        check_categories(dets, category_ids, src)
    return dets


def check_categories(dets: list[dict[str, Any]], category_ids: set[int], src: str = "<detections>") -> None:
    """ReportError naming the category ids of `dets` that are not in `category_ids` (the ground truth's)."""
    unknown = sorted({d["category_id"] for d in dets} - category_ids)
    if not unknown:
        return
    count = sum(d["category_id"] not in category_ids for d in dets)
    raise ReportError(f"{src}: {count} detection(s) have category ids not in the ground truth: "
                      f"{_ids(unknown)} (ground-truth categories: {_ids(sorted(category_ids))})")


def _ids(ids: list[int], limit: int = 10) -> str:
    """Up to `limit` ids, comma-separated, then how many more."""
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(str(i) for i in ids[:limit]) + more if ids else "none"


def _plain(det: dict[str, Any]) -> bool:
    """Whether a detection is already in plain JSON types and valid (the common, fast case)."""
    img, cat, box, score = (det.get(k) for k in DT_KEYS)
    return (type(img) is int and type(cat) is int and type(score) is float and math.isfinite(score)
            and type(box) is list and len(box) == 4 and all(type(v) in (float, int) for v in box)
            and math.isfinite(sum(box)))


def _det(det: Any, n: int, src: str) -> dict[str, Any]:
    """One checked detection: itself when plain and valid, else a normalized copy."""
    if type(det) is dict and _plain(det):
        return det
    where = f"{src}: detection {n}"
    if not isinstance(det, dict):
        raise ReportError(f"{where} is not an object")
    missing = [k for k in DT_KEYS if k not in det]
    if missing:
        raise ReportError(f"{where} lacks key(s) {', '.join(missing)}")
    img, cat, box, score = _id(det["image_id"]), _id(det["category_id"]), _box(det["bbox"]), det["score"]
    if img is None or cat is None:
        raise ReportError(f"{where}: image_id and category_id must be integers")
    if box is None:
        raise ReportError(f"{where} has bbox {det['bbox']!r}; expected [x, y, w, h] finite numbers")
    if type(score) is not float and (isinstance(score, bool) or not isinstance(score, numbers.Real)):
        raise ReportError(f"{where} has score {score!r}; expected a finite number")
    if not math.isfinite(score):
        raise ReportError(f"{where} has score {score!r}; expected a finite number")
    return {**det, "image_id": img, "category_id": cat, "bbox": box, "score": float(score)}
