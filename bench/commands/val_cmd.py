"""`edgebench val --model CKPT|ARTIFACT --data D`: COCO accuracy with the bench's evaluator."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

import click

from bench.options import BACKEND, CONF, COUNT, IMGSZ, IOU, Command, class_map_option, deprecated, notice_if_given

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

#: One version's notice for the changed meaning of `val --conf` (it was the mAP floor, now --eval-conf).
CONF_CHANGED = "val --conf is now the deployment threshold (P/R/F1); the mAP floor is --eval-conf"


@click.command("val", cls=Command)
@click.option("--model", "-m", required=True,
              help="Our checkpoint (.ckpt, needs torch) or an exported artifact (.onnx, ...).")
@click.option("--data", "-d", required=True, help="data.yaml (or a folder with one) or a COCO json.")
@click.option("--split", default="val", show_default=True)
@click.option("--imgsz", type=IMGSZ, default=None,
              help="Checkpoints: input size, a multiple of 32 up to 8192 (default: the training size); "
                   "an artifact is fixed at its own size and refuses any other.")
@click.option("--batch", type=COUNT.param_type(), default=16, show_default=True,
              help="Checkpoints only: images per forward.")
@click.option("--backend", type=BACKEND, default=None,
              help="Artifacts only: one runtime backend (default: from the file suffix).")
@click.option("--eval-conf", type=CONF.param_type(), default=0.001, show_default=True, help="Confidence floor for mAP.")
@click.option("--iou", type=IOU.param_type(), default=0.7, show_default=True, help="NMS IoU.")
@click.option("--max-det", type=COUNT.param_type(), default=300, show_default=True)
@click.option("--conf", "deploy_conf", type=CONF.param_type(), default=0.25, show_default=True,
              callback=notice_if_given(CONF_CHANGED),
              help="Deployment confidence for precision / recall / F1.")
@deprecated("--deploy-conf", "deploy_conf", "--conf", type=CONF.param_type())
@click.option("--max-images", type=COUNT.param_type(), default=None, help="Score only the first N images.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False), default=None,
              help="Write PR_curve.png, F1_curve.png and confusion_matrix.png into this folder (needs matplotlib).")
@click.option("--allow-class-mismatch", is_flag=True,
              help="Score a data set whose class names differ from the model's, by class index (default: that "
                   "is an error before anything runs; the class counts must still match).")
@class_map_option()
def command(model: str, data: str, split: str, imgsz: int | None, batch: int, backend: str | None, eval_conf: float,
            iou: float, max_det: int, deploy_conf: float, max_images: int | None, as_json: bool,
            plots_dir: str | None, allow_class_mismatch: bool = False, class_map: str | None = None) -> None:
    """Validate a checkpoint or an artifact on a data set (mAP at --eval-conf 0.001, NMS 0.7, 300 dets,
    multi-label; P/R/F1 at --conf)."""
    from trainer.val import CHECKPOINT_SUFFIXES, validate

    if plots_dir is not None:
        _require_matplotlib()
    if model.lower().endswith(CHECKPOINT_SUFFIXES):
        from trainer.requires import require_torch

        require_torch()
    notes, pairs = check_inputs(model, data, split, imgsz, backend, allow_class_mismatch, class_map)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    with progress_bar() as progress:
        result = validate(model, data, split, imgsz, batch, eval_conf, iou, max_det, deploy_conf, backend,
                          limit=max_images, progress=progress, class_map=pairs)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        from edge_sdk.coco_eval import format_accuracy
        from edge_sdk.curves_text import format_views

        click.echo(format_accuracy(result))
        click.echo(format_views(result.to_dict()))
    if plots_dir is not None:
        _write_plots(result.to_dict(), plots_dir)


def check_inputs(model: str, data: str, split: str, imgsz: int | None, backend: str | None,
                 allow_class_mismatch: bool, class_map: str | None = None) -> tuple[list[str], dict[int, int] | None]:
    """The notes and the resolved --class-map (model class -> data set class index, None without one);
    InputError, as `run` does, when the data set's class names differ from the model's without a map
    (notes with --allow-class-mismatch), a class of the map does not exist, or an artifact is asked
    for an --imgsz other than its own."""
    from bench.sweep.class_map import check_class_map_options, parse_class_map, resolve_class_map
    from bench.sweep.inputs import check_classes
    from edge_sdk.datasets import load_dataset

    check_class_map_options(class_map, allow_class_mismatch)
    names = _model_names(model, imgsz, backend)
    dataset = load_dataset(data, split)
    if class_map is None:
        return check_classes(dataset, {"names": names}, allow_class_mismatch), None
    resolved = resolve_class_map(parse_class_map(class_map), names, dataset.names)
    return resolved.notes(), resolved.pairs


def _model_names(model: str, imgsz: int | None, backend: str | None) -> dict[int, str]:
    """The model's class names; for an artifact, InputError when --imgsz is not its input size."""
    from trainer.val import CHECKPOINT_SUFFIXES

    if model.lower().endswith(CHECKPOINT_SUFFIXES):
        from trainer.checkpoint import CKPT_KEY, read_checkpoint

        return {int(k): str(v) for k, v in read_checkpoint(model)[CKPT_KEY]["names"].items()}
    from edge_sdk.detector import Detector
    from runtimes.errors import InputError

    with Detector(model, backend=backend) as det:
        height, width = det.input_size
        if imgsz is not None and (imgsz, imgsz) != (height, width):
            raise InputError(f"--imgsz {imgsz}: {model} is fixed at {height}x{width}; leave --imgsz out "
                             "(it sizes checkpoints) or export the model at that size")
        return dict(det.meta.names or {})


@contextmanager
def progress_bar(stream: TextIO | None = None) -> Iterator[Callable[[int, int], None] | None]:
    """A progress(done, total) callback drawing a click progress bar over the images on `stream`
    (stderr); None when it is not a terminal (pipes, logs, --json consumers see nothing)."""
    out = stream or sys.stderr
    if not out.isatty():
        yield None
        return
    bars: list[ProgressBar[int]] = []

    def show(done: int, total: int) -> None:
        if not bars:
            bars.append(click.progressbar(length=total, label="detecting", show_pos=True, file=out))
        bars[0].update(done - bars[0].pos)

    try:
        yield show
    finally:
        if bars:
            bars[0].render_finish()


def _require_matplotlib() -> None:
    """--plots fails before validating when matplotlib is missing (one line, exit 2)."""
    import importlib.util

    from bench.report.curve_plots import NO_MATPLOTLIB
    from runtimes.errors import InputError

    if importlib.util.find_spec("matplotlib") is None:
        raise InputError(f"--plots: {NO_MATPLOTLIB}")


def _write_plots(result: dict[str, object], plots_dir: str) -> None:
    """The PNGs of --plots; their paths go to stderr (stdout may be --json)."""
    from bench.report.curve_plots import write_pngs

    for path in write_pngs(result, plots_dir):
        click.echo(f"wrote {path}", err=True)
