"""`edgebench export --model CKPT --to onnx --out PATH`: checkpoint -> deployable artifact."""
from __future__ import annotations

import importlib.util

import click

from edge_sdk.errors import BackendNotImplementedError
from trainer.requires import require_torch

TARGETS = ("onnx",)


@click.command("export")
@click.option("--model", required=True, help="One of our training checkpoints (.ckpt).")
@click.option("--to", "target", default="onnx", show_default=True, help=f"Target format ({', '.join(TARGETS)}).")
@click.option("--out", required=True, help="Output file.")
@click.option("--imgsz", type=int, default=None, help="Input size (default: the training size).")
@click.option("--opset", type=int, default=17, show_default=True)
@click.option("--dynamic-batch", is_flag=True, help="Make the batch dimension dynamic.")
@click.option("--no-simplify", is_flag=True, help="Skip onnxslim.")
def command(model: str, target: str, out: str, imgsz: int | None, opset: int, dynamic_batch: bool,
            no_simplify: bool) -> None:
    """Export a checkpoint's EMA weights with names, size, stride, layout and source hash inside."""
    if target.lower() not in TARGETS:
        raise BackendNotImplementedError(f"export target '{target}' is not implemented (available: {', '.join(TARGETS)})")
    require_torch()
    from trainer.export import export_onnx

    path = export_onnx(model, out, imgsz, opset, dynamic_batch, simplify=not no_simplify)
    if not no_simplify and importlib.util.find_spec("onnxslim") is None:
        click.echo("note: onnxslim is not installed; the graph was not simplified", err=True)
    click.echo(f"exported {path}")
