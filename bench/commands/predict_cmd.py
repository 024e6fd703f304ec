"""`edgebench predict MODEL SOURCE`: detect, draw boxes, optionally print JSON."""
from __future__ import annotations

import json

import click

from bench.tasks.predict import PredictResult, predict


@click.command("predict")
@click.argument("model", type=click.Path(dir_okay=True))
@click.argument("source")
@click.option("--out", "out_dir", default="runs/predict", show_default=True,
              help="Folder for the annotated images ('' to draw nothing).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per frame (JSON lines).")
@click.option("--backend", default=None, help="Backend name (default: from the model's suffix).")
@click.option("--conf", default=0.25, show_default=True, type=float, help="Confidence threshold.")
@click.option("--iou", default=0.7, show_default=True, type=float, help="NMS IoU threshold.")
@click.option("--max-det", default=300, show_default=True, type=int, help="Detections kept per image.")
@click.option("--threads", default=None, type=int, help="Engine threads (default: physical cores).")
@click.option("--max-frames", default=None, type=int, help="Stop after this many frames (videos, cameras).")
def command(model: str, source: str, out_dir: str, as_json: bool, backend: str | None, conf: float,
            iou: float, max_det: int, threads: int | None, max_frames: int | None) -> None:
    """Detect objects in SOURCE (image, folder of images, video file or camera index) with MODEL."""

    def show(res: PredictResult) -> None:
        if as_json:
            click.echo(json.dumps(res.to_dict()))
        else:
            where = f" -> {res.saved_to}" if res.saved_to else ""
            click.echo(f"{res.source}: {len(res.detections)} detections{where}")

    predict(model, source, out_dir or None, backend, conf, iou, max_det, threads, max_frames, on_result=show)
