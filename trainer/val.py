"""validate(): COCO accuracy of a checkpoint (torch) or an exported artifact (edge_sdk.Detector)."""
from __future__ import annotations

from collections.abc import Callable
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
             progress: Progress | None = None) -> Any:
    """AccuracyResult of a model on a data split; checkpoints run in torch, artifacts on their runtime.
    `progress(done, total)` is called as images are detected (after each batch of a checkpoint)."""
    from edge_sdk.coco_eval import evaluate, restrict_to_images
    from edge_sdk.datasets import load_dataset

    ds = load_dataset(data, split)
    if len(ds) == 0:
        raise DatasetError(f"{data}: the '{split}' split has no images")
    samples = ds.samples[:limit] if limit else ds.samples
    cfg = map_config(conf, iou, max_det)
    if Path(model).suffix.lower() in CHECKPOINT_SUFFIXES:
        from trainer.checkpoint import load_detector
        from trainer.predict_torch import checkpoint_detections

        loaded = load_detector(model)
        check_classes(len(loaded.names), ds.nc, model, data)
        dets = checkpoint_detections(loaded, samples, ds.category_ids, cfg, imgsz, batch, progress)
    else:
        from edge_sdk.detector import Detector

        with Detector(model, backend=backend, conf=cfg.conf, iou=cfg.iou, max_det=cfg.max_det,
                      multi_label=True) as det:
            if det.meta.nc is not None:
                check_classes(det.meta.nc, ds.nc, model, data)
            dets = artifact_detections(det, samples, ds.category_ids, progress)
    gt = restrict_to_images(ds.to_coco(), {int(s.image_id) for s in samples})
    return evaluate(gt, dets, deploy_conf, ds.names)


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
