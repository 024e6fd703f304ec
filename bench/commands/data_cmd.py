"""`edgebench data`: data set tools (`synth` writes the synthetic detection data set)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from bench.options import IMGSZ, NON_NEGATIVE, SYNTH_IMAGES


@click.group(name="data")
def command() -> None:
    """Data set tools."""


@command.command("synth")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--train", default=2000, show_default=True, type=SYNTH_IMAGES.param_type(),
              help="Number of training images (at most 1000000).")
@click.option("--val", default=200, show_default=True, type=SYNTH_IMAGES.param_type(),
              help="Number of validation images, also written as COCO ground truth (at most 1000000).")
@click.option("--imgsz", default=320, show_default=True, type=IMGSZ,
              help="Image size in pixels, a multiple of 32 up to 8192 (square; some val images are 4:3 "
                   "with this long side).")
@click.option("--seed", default=0, show_default=True, type=NON_NEGATIVE.param_type(),
              help="Seed: the same seed gives the same data set.")
@click.option("--classes", default=None,
              help="Comma-separated subset of class names (default: all ten).")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it is not empty.")
def synth(out: Path, train: int, val: int, imgsz: int, seed: int, classes: str | None,
          overwrite: bool) -> None:
    """Write a synthetic object-detection data set to OUT (Ultralytics layout + COCO val)."""
    from edge_sdk.synth import check_output, generate, resolve_classes

    names = resolve_classes(classes.split(",") if classes else None)
    check_output(out, overwrite)
    with click.progressbar(length=train + val, label="generating",
                           file=sys.stderr) as bar:
        path = generate(out, train=train, val=val, imgsz=imgsz, seed=seed, classes=names,
                        progress=lambda done, total: bar.update(1), overwrite=overwrite)
    click.echo(f"wrote {train} train + {val} val images, {len(names)} classes: {path}/data.yaml")
