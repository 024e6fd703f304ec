"""fit(): train a detector on a data set with Lightning (callbacks, loggers, DDP, resume)."""
from __future__ import annotations

import importlib.util
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from runtimes.errors import EdgebenchError
from trainer.augment import AugmentConfig
from trainer.checkpoint import ema_state, read_checkpoint
from trainer.datamodule import DetectionDataModule
from trainer.module import MONITOR, DetectorModule
from trainer.schedule import OptimConfig


@dataclass
class TrainConfig:
    """Everything `fit` needs; the CLI fills it from flags."""

    data: str
    val_data: str | None = None  # a separate val source (e.g. a second COCO json); default: `data`
    model: str = "n"
    act: str = "silu"
    imgsz: int = 320
    epochs: int = 100
    batch: int = 16
    workers: int = 2
    out_dir: str = "runs/train"
    seed: int = 0
    patience: int = 50
    close_mosaic: int = 10
    cache: bool = False
    weights: str | None = None  # start from one of our checkpoints (weights only)
    resume: str | None = None  # Lightning checkpoint to continue exactly
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    accumulate: int = 1
    grad_clip: float = 10.0
    val_every: int = 1
    max_steps: int = -1
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    progress: bool = True
    channels_last: bool = True
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    gains: dict[str, float] = field(default_factory=dict)


@dataclass
class FitResult:
    """Where the checkpoints went and the last logged metrics."""

    best: Path | None
    last: Path | None
    out_dir: Path
    metrics: dict[str, float]
    epochs_run: int
    seconds: float
    world_size: int = 1


def _loggers(out: Path) -> list:
    loggers: list = [CSVLogger(str(out), name="", version="")]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        loggers.append(TensorBoardLogger(str(out), name="", version="tb"))
    return loggers


def _callbacks(cfg: TrainConfig, out: Path) -> list:
    """best.ckpt (highest val mAP50-95) and last.ckpt (every validated epoch, for resume)."""
    weights = str(out / "weights")
    best = ModelCheckpoint(dirpath=weights, filename="best", monitor=MONITOR, mode="max", save_top_k=1,
                           auto_insert_metric_name=False, enable_version_counter=False)
    last = ModelCheckpoint(dirpath=weights, filename="last", monitor=None, save_top_k=1,
                           enable_version_counter=False)
    callbacks: list = [best, last, EarlyStopping(MONITOR, mode="max", patience=cfg.patience)]
    if cfg.progress:
        callbacks.append(TQDMProgressBar(refresh_rate=1))
    return callbacks


def build_module(cfg: TrainConfig, names: dict[int, str]) -> DetectorModule:
    """A fresh DetectorModule for the data set's classes, optionally starting from our weights."""
    module = DetectorModule({"scale": cfg.model, "nc": len(names), "act": cfg.act}, names, cfg.imgsz,
                            optim=asdict(cfg.optim), gains=cfg.gains or None, channels_last=cfg.channels_last)
    if cfg.weights:
        state = ema_state(read_checkpoint(cfg.weights))
        try:
            module.model.load_state_dict(state)
        except RuntimeError as exc:
            raise EdgebenchError(f"--weights {cfg.weights} does not fit model '{cfg.model}' with "
                                 f"{len(names)} classes: {str(exc).splitlines()[0]}") from exc
        module.ema.module.load_state_dict(state)
    return module


def build_trainer(cfg: TrainConfig, out: Path, callbacks: list | None = None) -> L.Trainer:
    """A Lightning Trainer with our callbacks (plus any given), loggers, clipping and distributed settings."""
    return L.Trainer(
        accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes, strategy=cfg.strategy,
        precision=cfg.precision, max_epochs=cfg.epochs, max_steps=cfg.max_steps,
        accumulate_grad_batches=cfg.accumulate, gradient_clip_val=cfg.grad_clip or None,
        gradient_clip_algorithm="norm", check_val_every_n_epoch=cfg.val_every,
        limit_train_batches=cfg.limit_train_batches, limit_val_batches=cfg.limit_val_batches,
        num_sanity_val_steps=0, callbacks=_callbacks(cfg, out) + list(callbacks or []), logger=_loggers(out),
        default_root_dir=str(out), enable_progress_bar=cfg.progress, log_every_n_steps=10,
        enable_model_summary=cfg.progress)


def checkpoint_paths(trainer: L.Trainer) -> tuple[Path | None, Path | None]:
    """best.ckpt and last.ckpt written by `_callbacks`' two ModelCheckpoints (None: not written)."""
    best_cb, last_cb = trainer.checkpoint_callbacks[:2]
    best = Path(best_cb.best_model_path) if best_cb.best_model_path else None
    last = Path(last_cb.best_model_path) if last_cb.best_model_path else None
    return best, last


def fit(cfg: TrainConfig, callbacks: list | None = None) -> FitResult:
    """Train, validating each `val_every` epochs on the EMA weights; returns best/last checkpoints.

    `callbacks` are extra Lightning callbacks (e.g. QAT, or a stop after N epochs in tests).
    """
    if cfg.resume:
        read_checkpoint(cfg.resume)  # one clear error for a missing or foreign checkpoint
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    out = Path(cfg.out_dir)
    dm = DetectionDataModule(cfg.data, cfg.imgsz, cfg.batch, cfg.workers, cfg.augment, cfg.epochs,
                             cfg.close_mosaic, cfg.seed, cfg.cache, val_data=cfg.val_data)
    module = build_module(cfg, dm.names)
    trainer = build_trainer(cfg, out, callbacks)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # the EMA copy, on purpose
        trainer.fit(module, datamodule=dm, ckpt_path=cfg.resume, weights_only=True if cfg.resume else None)
    best, last = checkpoint_paths(trainer)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return FitResult(best, last, out, metrics, trainer.current_epoch, time.perf_counter() - start,
                     trainer.world_size)
