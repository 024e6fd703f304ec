"""`edgebench qat --model best.ckpt --data data.yaml --target B`: quantization-aware fine-tuning for an int8 target."""
from __future__ import annotations

import click

from bench.options import CALIB_IMAGES, COUNT, LIMIT, NON_NEGATIVE, POSITIVE, Command
from bench.tasks.qat_targets import TARGETS
from trainer.requires import require_torch


@click.command("qat", cls=Command)
@click.option("--model", "-m", default=None,
              help="One of our checkpoints (.ckpt), or an ONNX our trainer exported (its weights are lifted into "
                   "a checkpoint). Default: the bundled model.")
@click.option("--data", "-d", default=None,
              help="data.yaml the model was trained for (train split: fine-tuning; val split: the per-epoch "
                   "score). Default for the bundled model: its synthetic data (2000 train / 200 val, generated "
                   "once into the cache).")
@click.option("--target", "-t", type=click.Choice(TARGETS), default="onnxruntime", show_default=True,
              help="The int8 backend whose scheme is simulated: weights int8 per channel (symmetric); activations "
                   "int8 per tensor, symmetric for tensorrt and ncnn, asymmetric for the others; tflite is "
                   "full-integer (nothing kept float).")
@click.option("--exclude", default="auto", show_default=True, metavar="auto|decode|none|OPS",
              help="Ops kept in float: auto = the head's output layers and decode tail (nothing for tflite); "
                   "decode = only the box arithmetic after the DFL (an int8 graph ending at the DFL's distances); "
                   "none; or NNCF op names / regular expressions, comma-separated.")
@click.option("--epochs", type=COUNT.param_type(), default=5, show_default=True)
@click.option("--batch", type=COUNT.param_type(), default=16, show_default=True)
@click.option("--lr0", type=POSITIVE.param_type(), default=None, help="Peak lr (default: AdamW 1e-4).")
@click.option("--freeze-bn-epoch", type=NON_NEGATIVE.param_type(), default=None,
              help="From this epoch on, BatchNorm uses and keeps its running statistics. Default: 1; 0 for a "
                   "model lifted from an ONNX, whose BatchNorm is already folded into the convolutions.")
@click.option("--freeze-quantizers-epoch", type=NON_NEGATIVE.param_type(), default=3, show_default=True,
              help="From this epoch on, the quantizer ranges stop learning.")
@click.option("--calib", default=None, metavar="DIR|DATA.yaml[:SPLIT]|LIST.txt",
              help="Images that initialise the ranges (default: --data's train split; never its val images).")
@click.option("--calib-images", type=CALIB_IMAGES.param_type(), default=300, show_default=True)
@click.option("--out", "out_dir", default="runs/qat", show_default=True,
              help="Logs, weights/{best,last}.ckpt and weights/best-qat.onnx (Q/DQ, learned scales).")
@click.option("--resume", default=None, help="Continue a QAT run exactly from its last.ckpt.")
@click.option("--workers", type=NON_NEGATIVE.param_type(), default=2, show_default=True)
@click.option("--seed", type=NON_NEGATIVE.param_type(), default=0, show_default=True)
@click.option("--cache", is_flag=True, help="Keep decoded images in RAM.")
@click.option("--limit-train-batches", type=LIMIT, default=None, help="Batches (int) or fraction (float) per epoch.")
@click.option("--limit-val-batches", type=LIMIT, default=None, help="Batches (int) or fraction (float) per validation.")
@click.option("--quiet", is_flag=True, help="No progress bar or model summary.")
def command(model: str | None, data: str | None, target: str, exclude: str, epochs: int, batch: int,
            lr0: float | None, freeze_bn_epoch: int | None, freeze_quantizers_epoch: int, calib: str | None,
            calib_images: int, out_dir: str, resume: str | None, workers: int, seed: int, cache: bool,
            limit_train_batches: int | float | None, limit_val_batches: int | float | None, quiet: bool) -> None:
    """Fine-tune a detector with simulated int8 (NNCF fake quantization) and export a Q/DQ ONNX with the
    learned scales; validates the int8-simulated model every epoch and keeps the best."""
    require_torch(need_lightning=True, need_nncf=True)
    from bench.tasks.qat import QatRequest, run_qat

    result = run_qat(QatRequest(model, data, target, exclude, epochs, batch, lr0, freeze_bn_epoch,
                                freeze_quantizers_epoch, calib, calib_images, out_dir, resume, workers, seed, cache,
                                limit_train_batches, limit_val_batches, not quiet))
    for line in result:
        click.echo(line)
