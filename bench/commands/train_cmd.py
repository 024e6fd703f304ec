"""`edgebench train --data D --arch n --imgsz 320 --epochs E --batch 16`: train our detector."""
from __future__ import annotations

import click

from bench.options import CONF, COUNT, IMGSZ, LIMIT, NON_NEGATIVE, POSITIVE, Command, deprecated
from trainer.requires import require_torch

SCALES = ("n", "s", "m")


@click.command("train", cls=Command)
@click.option("--data", "-d", required=True, help="data.yaml (or a folder with one) or a COCO json.")
@click.option("--val-data", default=None, help="A separate validation source (default: --data's val split).")
@click.option("--arch", "scale", type=click.Choice(SCALES), default="n", show_default=True,
              help="Model scale (width/depth multipliers).")
@deprecated("--model", "scale", "--arch", type=click.Choice(SCALES))
@click.option("--act", type=click.Choice(["silu", "relu", "hardswish"]), default="silu", show_default=True)
@click.option("--imgsz", type=IMGSZ, default=320, show_default=True)
@click.option("--epochs", type=COUNT.param_type(), default=100, show_default=True)
@click.option("--batch", type=COUNT.param_type(), default=16, show_default=True, help="Images per device per step.")
@click.option("--workers", type=NON_NEGATIVE.param_type(), default=2, show_default=True,
              help="Data loader processes per device.")
@click.option("--out", "out_dir", default="runs/train", show_default=True, help="Logs and weights/{best,last}.ckpt.")
@click.option("--optimizer", type=click.Choice(["auto", "sgd", "adamw"]), default="auto", show_default=True,
              help="auto: AdamW for < 10k steps, else SGD (nesterov).")
@click.option("--lr0", type=POSITIVE.param_type(), default=None,
              help="Initial lr (default: 0.01 SGD, 0.002*5/(4+nc) AdamW).")
@click.option("--patience", type=NON_NEGATIVE.param_type(), default=50, show_default=True,
              help="Early-stopping epochs on val mAP50-95.")
@click.option("--close-mosaic", type=NON_NEGATIVE.param_type(), default=10, show_default=True,
              help="Train the last N epochs without mosaic.")
@click.option("--mosaic", type=CONF.param_type(), default=1.0, show_default=True, help="Mosaic probability.")
@click.option("--mixup", type=CONF.param_type(), default=0.0, show_default=True,
              help="Mixup probability (with mosaic).")
@click.option("--cache", is_flag=True, help="Keep decoded images in RAM.")
@click.option("--weights", default=None, help="Start from one of our checkpoints' weights.")
@click.option("--resume", default=None, help="Continue a run exactly from its last.ckpt.")
@click.option("--seed", type=NON_NEGATIVE.param_type(), default=0, show_default=True)
@click.option("--accelerator", default="auto", show_default=True, help="cpu, gpu, mps, auto (Lightning).")
@click.option("--devices", default="1", show_default=True, help="Devices per node (a number, 'auto', or ids).")
@click.option("--num-nodes", type=COUNT.param_type(), default=1, show_default=True)
@click.option("--strategy", default="auto", show_default=True, help="Lightning strategy, e.g. ddp.")
@click.option("--precision", default="32-true", show_default=True, help="Lightning precision, e.g. bf16-mixed.")
@click.option("--accumulate", type=COUNT.param_type(), default=1, show_default=True,
              help="Gradient accumulation steps.")
@click.option("--max-steps", type=COUNT.param_type(), default=None,
              help="Stop after this many optimizer steps (default: no limit).")
@click.option("--limit-train-batches", type=LIMIT, default=None, help="Batches (int) or fraction (float) per epoch.")
@click.option("--limit-val-batches", type=LIMIT, default=None, help="Batches (int) or fraction (float) per validation.")
@click.option("--quiet", is_flag=True, help="No progress bar or model summary.")
def command(scale: str, data: str, val_data: str | None, act: str, imgsz: int, epochs: int, batch: int,
            workers: int, out_dir: str,
            optimizer: str, lr0: float | None, patience: int, close_mosaic: int, mosaic: float, mixup: float,
            cache: bool, weights: str | None, resume: str | None, seed: int, accelerator: str, devices: str,
            num_nodes: int, strategy: str, precision: str, accumulate: int, max_steps: int | None,
            limit_train_batches: int | float | None, limit_val_batches: int | float | None, quiet: bool) -> None:
    """Train a YOLOv8-style detector with Lightning; validates the EMA weights each epoch."""
    require_torch(need_lightning=True)
    from trainer.augment import AugmentConfig
    from trainer.schedule import OptimConfig
    from trainer.train import TrainConfig, fit

    cfg = TrainConfig(
        data=data, val_data=val_data, model=scale, act=act, imgsz=imgsz, epochs=epochs, batch=batch, workers=workers,
        out_dir=out_dir, seed=seed, patience=patience, close_mosaic=close_mosaic, cache=cache, weights=weights,
        resume=resume, accelerator=accelerator, devices=int(devices) if devices.isdigit() else devices,
        num_nodes=num_nodes, strategy=strategy, precision=precision, accumulate=accumulate,
        max_steps=-1 if max_steps is None else max_steps,
        limit_train_batches=limit_train_batches, limit_val_batches=limit_val_batches,
        progress=not quiet, optim=OptimConfig(optimizer=optimizer, lr0=lr0),
        augment=AugmentConfig(mosaic=mosaic, mixup=mixup))
    result = fit(cfg)
    click.echo(f"trained {result.epochs_run} epochs in {result.seconds:.0f} s")
    for key in ("val/mAP50-95", "val/mAP50"):
        if key in result.metrics:
            click.echo(f"{key}: {result.metrics[key]:.4f}")
    click.echo(f"best: {result.best}\nlast: {result.last}")
