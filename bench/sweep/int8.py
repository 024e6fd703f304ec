"""The int8 rows of a run or sweep: which calibration images, checked before anything runs.

The calibration set is the user's `--calib`, or for the bundled model its own synthetic training split;
it is checked here, in the parent, against the evaluation images (by content) so an overlap is a one-line
error before any row runs (unless --allow-calib-overlap, which every int8 row then records). Each int8
configuration's child quantizes with the resulting converters.int8.Int8Options.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.sweep.defaults import default_calibration
from bench.sweep.inputs import is_bundled_model
from calibration.dataset import build_calibration_set
from calibration.methods import AUTO, Method
from converters.int8 import Int8Options
from edge_sdk.datasets import Dataset
from edge_sdk.letterbox import input_hw
from runtimes.errors import CalibrationError

__all__ = ["calib_source", "int8_options"]


def calib_source(calib: str | None, model: Path, meta: Mapping[str, Any] | None = None) -> tuple[str, str | None]:
    """(the calibration source, a note) : `calib` itself, or for the bundled model (and artifacts made from
    it) its own synthetic training split; CalibrationError for any other model without one."""
    if calib is not None:
        return calib, None
    if not is_bundled_model(model, meta):
        raise CalibrationError(f"INT8 needs calibration images for {model.name}: pass --calib DIR|data.yaml|"
                               "list.txt (a few hundred images like the deployment's, not the evaluation set)")
    source = str(default_calibration(meta))
    return source, f"int8 calibration: the bundled model's own synthetic training split ({source}:train)"


def int8_options(opts: Any, model: Path, meta: Mapping[str, Any], dataset: Dataset,
                 precisions: Sequence[str]) -> tuple[Int8Options | None, list[str]]:
    """(Int8Options, notes) for the run's int8 rows, or (None, notes) when none is asked or the model is not
    a float ONNX or a training checkpoint (its ONNX export is quantized); the calibration set is built once here
    to refuse an overlap early."""
    if "int8" not in precisions or model.suffix.lower() not in (".onnx", ".ckpt"):
        return None, []
    if str(opts.calib_method).lower() != AUTO:
        Method.parse(opts.calib_method)  # a typo fails before anything runs
    if opts.calib is None and not is_bundled_model(model, meta):
        return None, []  # the int8 rows say they need --calib
    source, note = calib_source(opts.calib, model, meta)
    notes = [note] if note else []
    int8 = int8_from_flags(opts, source, tuple(str(s.image_path) for s in dataset.samples))
    calib = build_calibration_set(source, input_hw(tuple(meta["imgsz"])), limit=int8.calib_images,
                                  eval_images=int8.eval_images, allow_overlap=int8.allow_overlap)
    if calib.overlap:
        notes.append(f"int8 calibration overlaps the evaluation set: {calib.overlap} of {len(calib)} images "
                     "(--allow-calib-overlap); the int8 mAP may be flattered")
    return int8, notes


def int8_from_flags(flags: Any, source: str, eval_images: tuple[str, ...] = (), progress: bool = False
                    ) -> Int8Options:
    """converters.int8.Int8Options from the shared int8 flags (bench.commands.int8_flags: calib_method, exclude,
    int8_io, calib_images, allow_calib_overlap), as RunOptions, QuantizeOptions or the CLI keywords hold them."""
    return Int8Options(calib=source, method=flags.calib_method, exclude=flags.exclude, int8_io=flags.int8_io,
                       calib_images=flags.calib_images, eval_images=eval_images,
                       allow_overlap=flags.allow_calib_overlap, progress=progress)
