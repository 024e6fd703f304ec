"""LightningModule: the detector, its loss, EMA, schedule, and COCO validation on the EMA weights."""
from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch

from edge_sdk.decode import DecodeConfig, decode
from edge_sdk.detections import Detections
from edge_sdk.letterbox import Letterbox
from trainer.checkpoint import CKPT_KEY, checkpoint_info
from trainer.ema import ModelEMA
from trainer.loss import DetectionLoss, LossGains
from trainer.model import STRIDES, ModelConfig, YoloDetector
from trainer.schedule import OptimConfig, apply_schedule, build_optimizer, warmup_steps

#: How detections are made for mAP: the same settings the bench uses.
MAP_DECODE = DecodeConfig(conf=0.001, iou=0.7, max_det=300, multi_label=True)
MONITOR = "val/mAP50-95"


class DetectorModule(L.LightningModule):
    """Trains a YoloDetector; validates and checkpoints its EMA copy."""

    def __init__(self, model: dict[str, Any], names: dict[int, str], imgsz: int = 320,
                 optim: dict[str, Any] | None = None, gains: dict[str, float] | None = None,
                 ema_decay: float = 0.9999, ema_tau: float = 2000.0, deploy_conf: float = 0.25,
                 channels_last: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.names = {int(k): str(v) for k, v in names.items()}
        self.model_config = ModelConfig(**model)
        self.model = YoloDetector(self.model_config)
        self.model.head.init_bias(imgsz)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)  # faster convolutions on CPU (oneDNN)
        self.ema = ModelEMA(self.model, ema_decay, ema_tau)
        self.criterion = DetectionLoss(self.model_config.nc, STRIDES, self.model_config.reg_max,
                                       LossGains(**(gains or {})))
        self.optim_config = OptimConfig(**(optim or {}))
        self.imgsz, self.deploy_conf = imgsz, deploy_conf
        self._val_dets: dict[int, list[dict]] = {}
        self._warmup, self._total = 0, 1

    def forward(self, images: torch.Tensor) -> Any:
        return self.model(images)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW RGB -> float in [0, 1], in the model's memory format."""
        return (images.float() / 255.0).contiguous(memory_format=self.memory_format)

    # ---- optimisation -------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(total // max(self.trainer.max_epochs or 1, 1), 1)
        self._warmup, self._total = warmup_steps(self.optim_config, per_epoch, total), total
        return build_optimizer(self.model, self.optim_config, total, self.model_config.nc)

    def on_train_epoch_start(self) -> None:
        dm = self.trainer.datamodule
        if dm is not None and hasattr(dm, "set_epoch"):
            dm.set_epoch(self.current_epoch)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        lr = apply_schedule(self.optimizers().optimizer, self.global_step, self._total, self._warmup,
                            self.optim_config)
        self.log("lr", lr, prog_bar=True, on_step=True, on_epoch=False, batch_size=1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, targets = batch
        maps = self.model(self._prepare(images))
        loss, parts = self.criterion(maps, targets)
        n = images.shape[0]
        for name, value in zip(("box", "cls", "dfl"), parts, strict=False):
            self.log(name, value, prog_bar=True, on_step=True, on_epoch=False, batch_size=n)
            self.log(f"train/{name}", value, on_step=False, on_epoch=True, batch_size=n)
        self.log("train/loss", parts.sum(), on_step=False, on_epoch=True, batch_size=n)
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.ema.update(self.model)

    # ---- validation ---------------------------------------------------------------------
    def val_model(self) -> torch.nn.Module:
        """The weights validated and checkpointed as "the model": the EMA copy."""
        return self.ema.module

    def on_validation_epoch_start(self) -> None:
        self._val_dets = {}

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, geometry = batch
        out = self.val_model()(self._prepare(images))
        samples = self.trainer.datamodule.val_data.samples
        for dets, g in zip(decode(out.float().cpu().numpy(), "yolov8", MAP_DECODE), geometry.tolist(), strict=False):
            sample = samples[int(g[0])]
            self._val_dets[int(sample.image_id)] = coco_results(dets, g, self.imgsz, sample.image_id,
                                                                self.trainer.datamodule.val_data.category_ids)

    def on_validation_epoch_end(self) -> None:
        from edge_sdk.coco_eval import evaluate

        dets = gather_dicts(self._val_dets)
        data = self.trainer.datamodule.val_data
        gt = subset_coco(data.to_coco(), set(dets))
        flat = [d for v in dets.values() for d in v]
        result = evaluate(gt, flat, self.deploy_conf, data.names, views=False)  # per-epoch mAP only
        # every rank scored the same gathered detections, so the mean over ranks is that value
        self.log(MONITOR, max(result.stats["AP"], 0.0), prog_bar=True, sync_dist=True)
        self.log("val/mAP50", max(result.stats["AP50"], 0.0), prog_bar=True, sync_dist=True)
        self.log("val/f1", result.f1, sync_dist=True)

    # ---- checkpoints --------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CKPT_KEY] = checkpoint_info(self.model_config, self.names, self.imgsz)


def coco_results(dets: tuple[np.ndarray, np.ndarray, np.ndarray], geometry: list[float], imgsz: int,
                 image_id: int, category_ids: dict[int, int]) -> list[dict]:
    """Model-input detections -> COCO results in original-image pixels (clipped), via the letterbox."""
    _, scale, pad_x, pad_y, h, w = geometry
    lb = Letterbox(scale, int(pad_x), int(pad_y), (int(h), int(w)), (imgsz, imgsz))
    xyxy, scores, cls = dets
    return Detections(lb.to_original(xyxy, clip=True), scores, cls).to_coco(int(image_id), category_ids)


def gather_dicts(local: dict[int, list[dict]]) -> dict[int, list[dict]]:
    """Merge per-rank dicts under DDP (a DistributedSampler may repeat images: keys dedupe them)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return local
    parts: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, local)
    merged: dict[int, list[dict]] = {}
    for part in parts:
        merged.update(part)
    return merged


def subset_coco(gt: dict[str, Any], image_ids: set[int]) -> dict[str, Any]:
    """The ground truth restricted to the images that were evaluated (e.g. limited val batches)."""
    out = dict(gt)
    out["images"] = [im for im in gt["images"] if im["id"] in image_ids]
    out["annotations"] = [a for a in gt["annotations"] if a["image_id"] in image_ids]
    return out
