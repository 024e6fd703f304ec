"""`edgebench export --model CKPT|ONNX --to TARGET -o PATH`: model -> deployable artifact."""
from __future__ import annotations

import importlib.util
import sys
from typing import Any

import click

from bench.commands.int8_flags import int8_flags
from bench.options import IMGSZ, PARITY_IMAGES, Command, deprecated, threads_option
from converters.export import targets
from converters.rewrites import REWRITES
from runtimes.capabilities import all_written_precisions

#: The oldest ONNX opset our exporter writes (torch.onnx.export takes 7..; we need Resize etc.).
OPSET_MIN = 11


@click.command("export", cls=Command)
@click.option("--model", "-m", required=True, help="Our training checkpoint (.ckpt, needs torch) or an ONNX file.")
@click.option("--to", "target", default="onnx", show_default=True, help=f"Target format ({', '.join(targets())}).")
@click.option("--output", "-o", "out", default=None,
              help="Output file (.onnx; .xml for openvino; .param for ncnn, .bin written beside it; "
                                        ".tflite for tflite).")
@deprecated("--out", "out", "--output")
@click.option("--precision", default="fp32", show_default=True,
              help=f"One of {', '.join(all_written_precisions())}, as the target's converter writes them "
                   "(int8: the target's own quantizer, see the --calib options and `edgebench quantize`). "
                   "openvino: fp16 stores float16 weights, bf16/fp32 set the inference precision hint; "
                   "ncnn: fp16 stores float16 weights, bf16 runs with bf16 storage; "
                   "tflite: fp32 or fp16 (float16 conv weights, fp32 compute).")
@click.option("--imgsz", type=IMGSZ, default=None, help="Checkpoints: input size (default: the training size).")
@click.option("--opset", type=click.IntRange(min=OPSET_MIN), default=17, show_default=True,
              help=f"ONNX opset of a checkpoint export (>= {OPSET_MIN}).")
@click.option("--dynamic-batch", is_flag=True, help="Make the batch dimension dynamic.")
@click.option("--no-simplify", is_flag=True, help="Skip onnxslim.")
@click.option("--weights-fp16", is_flag=True,
              help="ONNX: store the weights as float16 (half the file size); the model still computes in float32.")
@click.option("--no-parity", is_flag=True, help="Skip the parity check against the ONNX reference.")
@click.option("--parity-images", type=PARITY_IMAGES.param_type(), default=4, show_default=True,
              help="Synthetic frames the parity check runs (at most 1000).")
@threads_option("Threads for the parity check (default: physical cores).")
@click.option("--rewrite", "rewrites", default=None, metavar="NAME[,NAME]",
              help=f"ONNX graph rewrites applied before conversion ({', '.join(REWRITES)}), or 'auto': "
                   "each exact rewrite is kept only if it measurably helps the target (delegated ops, latency). "
                   "Parity still compares against the original ONNX.")
@int8_flags(rows=False)
def command(model: str, target: str, out: str | None, precision: str, imgsz: int | None, opset: int,
            dynamic_batch: bool, no_simplify: bool, weights_fp16: bool, no_parity: bool, parity_images: int,
            threads: int | None, rewrites: str | None, **int8: Any) -> None:
    """Export with names, size, stride, layout and source hash inside; other targets get a parity check.

    Exits 1 (artifact kept, verdict in its sidecar JSON) when the parity check fails.
    """
    if out is None:
        raise click.UsageError("missing -o/--output (the artifact file to write)")
    from bench.tasks.export import OnnxOptions, export_model

    opts = OnnxOptions(imgsz, opset, dynamic_batch, simplify=not no_simplify, weights_fp16=weights_fp16)
    result = export_model(model, target, out, precision, opts, parity=not no_parity,
                          parity_images=parity_images, threads=threads, rewrites=rewrites,
                          int8=int8_export_options(model, precision, int8))
    if not model.lower().endswith(".onnx") and not no_simplify and importlib.util.find_spec("onnxslim") is None:
        click.echo("note: onnxslim is not installed; the graph was not simplified", err=True)
    for trial in result.rewrite_trials:
        click.echo(trial.summary())
    for rewrite in result.rewrites:
        click.echo(rewrite.summary())
    click.echo(f"exported {result.path}")
    if result.parity is not None:
        click.echo(result.parity.summary())
        if not result.parity.passed:
            sys.exit(1)


def int8_export_options(model: str, precision: str, flags: dict[str, Any]) -> Any:
    """converters.int8.Int8Options from the int8 flags when --precision int8 (None otherwise)."""
    if precision.strip().lower() != "int8":
        return None
    from pathlib import Path
    from types import SimpleNamespace

    from bench.sweep.int8 import calib_source, int8_from_flags

    source, note = calib_source(flags["calib"], Path(model))
    if note:
        click.echo(f"note: {note}", err=True)
    return int8_from_flags(SimpleNamespace(**flags), source, progress=True)
