"""validate(): COCO accuracy of a checkpoint (torch) or an exported artifact (edge_sdk.Detector)."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from edge_sdk.decode import DecodeConfig
from runtimes.errors import DatasetError

CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")

#: progress(done, total): images detected so far, of the images to score.
Progress = Callable[[int, int], None]


def map_config(conf: float = 0.001, iou: float = 0.7, max_det: int = 300) -> DecodeConfig:
    """The standard mAP decode: low confidence, multi-label, class-aware NMS."""
    return DecodeConfig(conf=conf, iou=iou, max_det=max_det, multi_label=True)


def validate(model: str | Path, data: str | Path, split: str = "val", imgsz: int | None = None,
             batch: int = 16, conf: float = 0.001, iou: float = 0.7, max_det: int = 300,
             deploy_conf: float = 0.25, backend: str | None = None, limit: int | None = None,
             progress: Progress | None = None, class_map: Mapping[int, int] | None = None) -> Any:
    """AccuracyResult of a model on a data split; checkpoints run in torch, artifacts on their runtime.
    `progress(done, total)` is called as images are detected (after each batch of a checkpoint).
    `class_map` (model class -> data set class index) re-labels detections before scoring; model classes
    not in it are not scored, and the class counts need not match."""
    from edge_sdk.coco_eval import evaluate, restrict_to_images
    from edge_sdk.datasets import load_dataset

    ds = load_dataset(data, split)
    if len(ds) == 0:
        raise DatasetError(f"{data}: the '{split}' split has no images")
    samples = ds.samples[:limit] if limit else ds.samples
    dets = _detections(model, data, ds, samples, map_config(conf, iou, max_det), imgsz, batch, backend,
                       progress, class_map)
    if class_map is not None:
        dets = remap_detections(dets, class_map, ds.category_ids)
    gt = restrict_to_images(ds.to_coco(), {int(s.image_id) for s in samples})
    return evaluate(gt, dets, deploy_conf, ds.names)


def _detections(model: str | Path, data: str | Path, ds: Any, samples: list, cfg: DecodeConfig,
                imgsz: int | None, batch: int, backend: str | None, progress: Progress | None,
                class_map: Mapping[int, int] | None) -> list[dict]:
    """COCO detections of the model over `samples`: category ids are the data set's, or the model's
    class indices under a `class_map` (re-labelled by the caller)."""
    if Path(model).suffix.lower() in CHECKPOINT_SUFFIXES:
        from trainer.checkpoint import load_detector
        from trainer.predict_torch import checkpoint_detections

        loaded = load_detector(model)
        if class_map is None:
            check_classes(len(loaded.names), ds.nc, model, data)
        ids = _category_ids(range(len(loaded.names)), ds.category_ids, class_map)
        return checkpoint_detections(loaded, samples, ids, cfg, imgsz, batch, progress)
    from edge_sdk.detector import Detector

    with Detector(model, backend=backend, conf=cfg.conf, iou=cfg.iou, max_det=cfg.max_det,
                  multi_label=True) as det:
        if det.meta.nc is not None and class_map is None:
            check_classes(det.meta.nc, ds.nc, model, data)
        classes = det.meta.names or range(det.meta.nc or ds.nc)
        return artifact_detections(det, samples, _category_ids(classes, ds.category_ids, class_map), progress)


def _category_ids(model_classes: Iterable[int], data_ids: Mapping[int, int],
                  class_map: Mapping[int, int] | None) -> dict[int, int]:
    """The data set's category ids, or under a class map the model's class indices themselves."""
    return dict(data_ids) if class_map is None else {int(k): int(k) for k in model_classes}


def remap_detections(dets: list[dict], class_map: Mapping[int, int], category_ids: Mapping[int, int]) -> list[dict]:
    """Detections labelled with model class indices re-labelled with the data set's category ids through
    `class_map` (model class -> data set class index); classes not in the map are left out."""
    cats = {int(m): int(category_ids[d]) for m, d in class_map.items()}
    return [{**d, "category_id": cats[int(d["category_id"])]} for d in dets if int(d["category_id"]) in cats]


def check_classes(model_nc: int, data_nc: int, model: str | Path, data: str | Path) -> None:
    """A model must predict exactly the data set's classes for its ids to map onto categories."""
    if model_nc != data_nc:
        raise DatasetError(f"model {model} has {model_nc} classes but data set {data} has {data_nc}")


def artifact_detections(det: Any, samples: list, category_ids: dict[int, int],
                        progress: Progress | None = None) -> list[dict]:
    """COCO results of an open edge_sdk.Detector over the samples; progress(done, total) per image."""
    from edge_sdk.frames import read_image

    out: list[dict] = []
    for done, s in enumerate(samples, 1):
        out.extend(det(read_image(s.image_path)).to_coco(int(s.image_id), category_ids))
        if progress is not None:
            progress(done, len(samples))
    return out
