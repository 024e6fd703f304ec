"""`edgebench predict --model M --source S`: detect, draw boxes, optionally print JSON."""
from __future__ import annotations

import json

import click

from bench.options import BACKEND, CONF, COUNT, IOU, Command, deprecated, notice, threads_option
from bench.tasks.predict import PredictResult, predict


@click.command("predict", cls=Command)
@click.argument("positional", nargs=-1, metavar="")
@click.option("--model", "-m", default=None, help="Model artifact (.onnx, .xml, .param, .tflite).")
@click.option("--source", "-s", default=None,
              help="Image, folder of images, video file or camera index.")
@click.option("--out", "out_dir", default="runs/predict", show_default=True,
              help="Folder for the annotated images ('' to draw nothing).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per frame (JSON lines).")
@click.option("--backend", type=BACKEND, default=None, help="One backend name (default: from the model's suffix).")
@click.option("--conf", default=0.25, show_default=True, type=CONF.param_type(), help="Confidence threshold.")
@click.option("--iou", default=0.7, show_default=True, type=IOU.param_type(), help="NMS IoU threshold.")
@click.option("--max-det", default=300, show_default=True, type=COUNT.param_type(),
              help="Detections kept per image.")
@threads_option("Engine threads (default: this host's physical cores).")
@click.option("--max-images", "max_images", default=None, type=COUNT.param_type(),
              help="Stop after this many images or frames (folders, videos, cameras).")
@deprecated("--max-frames", "max_images", "--max-images", type=COUNT.param_type())
def command(positional: tuple[str, ...], model: str | None, source: str | None, out_dir: str, as_json: bool,
            backend: str | None, conf: float, iou: float, max_det: int, threads: int | None,
            max_images: int | None) -> None:
    """Detect objects in SOURCE (image, folder of images, video file or camera index) with MODEL.

    Unreadable images in a folder are listed on stderr and skipped; the exit code is then 1.
    (`predict MODEL SOURCE`, positional, still works for one version.)
    """
    model, source = _model_and_source(positional, model, source)

    def show(res: PredictResult) -> None:
        if res.error:
            click.echo(f"{res.source}: skipped: {res.error}", err=True)
        elif as_json:
            click.echo(json.dumps(res.to_dict()))
        else:
            where = f" -> {res.saved_to}" if res.saved_to else ""
            click.echo(f"{res.source}: {len(res.detections)} detections{where}")

    results = predict(model, source, out_dir or None, backend, conf, iou, max_det, threads, max_images,
                      on_result=show)
    failed = [r.source for r in results if r.error]
    if failed:
        click.echo(f"error: {len(failed)} of {len(results)} images could not be read: {', '.join(failed)}",
                   err=True)
        raise click.exceptions.Exit(1)


def _model_and_source(positional: tuple[str, ...], model: str | None, source: str | None) -> tuple[str, str]:
    """--model and --source, or the deprecated positional MODEL SOURCE (with a notice)."""
    if positional:
        if len(positional) != 2 or model is not None or source is not None:
            raise click.UsageError("give --model M --source S (the positional MODEL SOURCE form is deprecated)")
        notice("predict MODEL SOURCE is deprecated; use predict --model MODEL --source SOURCE")
        return positional[0], positional[1]
    if model is None or source is None:
        raise click.UsageError(f"missing {'--model' if model is None else '--source'}")
    return model, source
