"""The INT8 options `run`, `sweep`, `export` and `quantize` share (one declaration each)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from bench.options import CALIB_IMAGES
from calibration.dataset import DEFAULT_IMAGES
from calibration.methods import AUTO, DEFAULT_METHOD, ENGINE_DEFAULTS, Method

F = TypeVar("F", bound=Callable[..., Any])

def int8_flags(rows: bool = True) -> Callable[[F], F]:
    """--calib, --calib-method, --calib-images, --exclude, --allow-calib-overlap, --int8-io. `rows`: the
    help speaks of a run's int8 rows (run, sweep) rather than of one artifact (export, quantize)."""
    what = "the int8 rows" if rows else "INT8"
    options = [
        click.option("--calib", default=None, metavar="DIR|DATA.yaml[:SPLIT]|LIST.txt",
                     help=f"Calibration images for {what}: a folder, a data.yaml (its train split; "
                          "data.yaml:SPLIT for another) or a .txt list. Never the evaluation images: an "
                          "overlap (same content) is refused. Default: the bundled model's own synthetic "
                          "training split; other models need it."),
        click.option("--calib-method", type=click.Choice([AUTO, *(m.value for m in Method)], case_sensitive=False),
                     default=AUTO, show_default=True,
                     help="How activation ranges are chosen, by each engine's own quantizer (one it lacks is "
                          f"refused); auto: the engine's best here ({_auto_methods()})."),
        click.option("--calib-images", type=CALIB_IMAGES.param_type(), default=DEFAULT_IMAGES, show_default=True,
                     help="Calibration images used at most (a seeded sample of a larger set)."),
        click.option("--exclude", default="auto", show_default=True, metavar="auto|none|NODE[,NODE]",
                     help="Layers kept in float: auto = the detection head's output layers (last conv of each "
                          "branch, per-level concat) and decode tail (level concat, DFL softmax, box decode, "
                          "final concat), found by graph position; none; or ONNX node names / glob patterns."),
        click.option("--allow-calib-overlap", is_flag=True,
                     help="Calibrate even on images that are also evaluated (recorded in every int8 row)."),
        click.option("--int8-io", is_flag=True,
                     help="Int8 input/output tensors where the engine has them (TFLite). With --exclude none "
                          "(full integer) the boxes are divided by the input size before the output concat, so "
                          "one int8 output scale cannot crush the scores (decoded back to pixels)."),
    ]

    def apply(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


def _auto_methods() -> str:
    """What `--calib-method auto` means per engine, from calibration.methods (so the help cannot drift)."""
    per = [f"{m.value} for {engine}" for engine, m in sorted(ENGINE_DEFAULTS.items())]
    return ", ".join([*per, f"{DEFAULT_METHOD.value} for the others"])
