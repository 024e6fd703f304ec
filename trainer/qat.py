"""fit_qat(): quantization-aware fine-tuning of one of our checkpoints for an int8 target, then its Q/DQ ONNX.

Steps: the checkpoint's EMA detector -> NNCF quantizers for the target's scheme (ranges from the calibration
images) -> Lightning fine-tuning at a low LR with warm-up (mosaic off by default), validated every epoch on the
int8-simulated model -> the best epoch exported to a Q/DQ ONNX that carries the learned scales.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from runtimes.errors import EdgebenchError, ModelLoadError
from trainer.checkpoint import CKPT_KEY, LoadedModel, load_detector, read_checkpoint
from trainer.datamodule import DetectionDataModule
from trainer.export import model_meta
from trainer.module import MONITOR
from trainer.qat_export import FoldStats, export_qat_onnx
from trainer.qat_model import QatScheme, insert_fake_quant, op_names, resolve_scheme
from trainer.qat_module import QAT_KEY, QatModule
from trainer.train import TrainConfig, build_trainer, checkpoint_paths


@dataclass
class QatConfig(TrainConfig):
    """TrainConfig's settings (data, epochs, batch, out_dir, resume, ...) plus the QAT ones."""

    checkpoint: str = ""
    target: str = "onnxruntime"
    exclude: str = "auto"
    calib_images: int = 300
    freeze_bn_epoch: int = 1
    freeze_quantizers_epoch: int = 3


@dataclass
class QatResult:
    """The QAT run's checkpoints, the exported Q/DQ ONNX and the validated metrics."""

    best: Path | None
    last: Path | None
    onnx: Path | None
    fold: FoldStats | None
    scheme: QatScheme
    metrics: dict[str, float]
    epochs_run: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def qat_defaults(cfg: QatConfig) -> QatConfig:
    """Fine-tuning settings unless given: AdamW at 1e-4, a short warm-up, no mosaic (as the last epochs of
    training), no early stop."""
    optim = cfg.optim
    if optim.lr0 is None:
        optim = type(optim)(**{**optim.__dict__, "optimizer": "adamw" if optim.optimizer == "auto" else
                               optim.optimizer, "lr0": 1e-4, "warmup_epochs": min(optim.warmup_epochs, 0.5),
                               "warmup_min_steps": min(optim.warmup_min_steps, 20)})
    cfg.optim, cfg.close_mosaic, cfg.patience = optim, cfg.epochs, max(cfg.patience, cfg.epochs)
    return cfg


def prepare(cfg: QatConfig, loaded: LoadedModel, calib: list[np.ndarray]) -> tuple[torch.nn.Module, QatScheme]:
    """The fake-quantized detector for `cfg.target` with ranges from `calib`."""
    example = torch.from_numpy(calib[0])
    scheme = resolve_scheme(cfg.target, cfg.exclude, op_names(loaded.model.eval(), example))
    return insert_fake_quant(loaded.model, calib, scheme, len(calib)), scheme


def fit_qat(cfg: QatConfig, calib: list[np.ndarray], callbacks: list | None = None) -> QatResult:
    """Run QAT (see the module docstring) with ranges initialised on `calib` (preprocessed calibration
    tensors, never validation images); `callbacks` are extra Lightning callbacks."""
    cfg = qat_defaults(cfg)
    if not cfg.progress:  # --quiet: no Lightning banner (accelerators, tips) either
        for name in ("lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if cfg.resume:
        read_checkpoint(cfg.resume)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    loaded = load_detector(cfg.checkpoint)
    dm = DetectionDataModule(cfg.data, loaded.imgsz, cfg.batch, cfg.workers, cfg.augment, cfg.epochs,
                             cfg.close_mosaic, cfg.seed, cfg.cache, val_data=cfg.val_data)
    _check_classes(dm.names, loaded)
    quantized, scheme = prepare(cfg, loaded, calib)
    module = QatModule(loaded.model.config.to_dict(), loaded.names, loaded.imgsz, cfg.optim.__dict__,
                       _qat_block(cfg, scheme, loaded))
    module.attach(quantized)
    out = Path(cfg.out_dir)
    trainer = build_trainer(cfg, out, callbacks)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
        trainer.fit(module, datamodule=dm, ckpt_path=cfg.resume, weights_only=True if cfg.resume else None)
    best, last = checkpoint_paths(trainer)
    onnx_path, fold = None, None
    if best is not None:
        module.model.load_state_dict(_model_state(read_checkpoint(best)))
        onnx_path, fold = export_qat_onnx(module.model, out / "weights" / "best-qat.onnx", loaded.imgsz,
                                          model_meta(loaded, loaded.imgsz), {"quantization": module.qat})
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return QatResult(best, last, onnx_path, fold, scheme, metrics, trainer.current_epoch,
                     time.perf_counter() - start, _history(out))


def _check_classes(names: dict[int, str], loaded: LoadedModel) -> None:
    if dict(names) != dict(loaded.names):
        raise EdgebenchError(f"the data's {len(names)} classes differ from the checkpoint's {len(loaded.names)} "
                             f"({loaded.path.name}): QAT fine-tunes on the data the model was trained for")


def _qat_block(cfg: QatConfig, scheme: QatScheme, loaded: LoadedModel) -> dict[str, Any]:
    return {**scheme.to_dict(), "method": "qat", "library": "nncf", "source": loaded.path.name,
            "source_sha256": loaded.sha256, "exclude": cfg.exclude, "calib_images": cfg.calib_images,
            "freeze_bn_epoch": cfg.freeze_bn_epoch, "freeze_quantizers_epoch": cfg.freeze_quantizers_epoch}


def _model_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}


def _history(out: Path) -> list[dict[str, float]]:
    """Per-epoch validation rows from the CSV log (epoch, mAP50-95, mAP50)."""
    import csv

    path = out / "metrics.csv"
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get(MONITOR):
                rows.append({"epoch": float(row["epoch"]), MONITOR: float(row[MONITOR]),
                             "val/mAP50": float(row.get("val/mAP50") or "nan")})
    return rows


def load_qat(path: str | Path, calib: list[np.ndarray] | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A QAT checkpoint's fake-quantized detector (eval mode) and its QAT block. The quantizers are rebuilt
    for the stored scheme (on `calib` or a grey image) and then take the trained ranges from the checkpoint."""
    from trainer.model import ModelConfig, YoloDetector

    ckpt = read_checkpoint(path)
    info = ckpt[CKPT_KEY]
    qat = info.get(QAT_KEY)
    if not isinstance(qat, dict):
        raise ModelLoadError(f"{path} is not a QAT checkpoint (made by `edgebench train`?)")
    model = YoloDetector(ModelConfig(**info["model"])).eval()
    size = int(info["imgsz"])
    inputs = calib or [np.full((1, 3, size, size), 0.5, np.float32)]
    scheme = QatScheme.from_dict(qat)
    quantized = insert_fake_quant(model, inputs, scheme, len(inputs))
    quantized.load_state_dict(_model_state(ckpt))
    return quantized.eval(), qat
