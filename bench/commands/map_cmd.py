"""`edgebench map --gt GT.json --pred DT.json`: COCO bbox metrics of a detections file."""
from __future__ import annotations

import json

import click

from bench.options import CONF
from edge_sdk.coco_io import ENGINES, load_dt, load_gt


@click.command("map")
@click.option("--gt", "gt_path", required=True, help="COCO ground-truth JSON (images, annotations, categories).")
@click.option("--pred", "pred_path", required=True, help="Detections JSON in COCO results format (a list).")
@click.option("--json", "as_json", is_flag=True, help="Print only the 12 COCO stats as one JSON object.")
@click.option("--engine", type=click.Choice(ENGINES), default="auto", show_default=True,
              help="Metric library: faster-coco-eval ('faster') when installed, else pycocotools.")
@click.option("--conf", default=0.25, show_default=True, type=CONF.param_type(),
              help="Deployment confidence for precision / recall / F1.")
def command(gt_path: str, pred_path: str, as_json: bool, engine: str, conf: float) -> None:
    """Score detections against COCO ground truth (AP, AP50, ..., ARl; P/R/F1; per-class AP).

    Detections of an image or a category the ground truth does not have are an error."""
    gt = load_gt(gt_path)
    dt = load_dt(pred_path, {img["id"] for img in gt["images"]}, {cat["id"] for cat in gt["categories"]})
    if not dt:
        click.echo(f"warning: no detections in {pred_path}: every score below is 0", err=True)
    if as_json:
        from edge_sdk.coco_eval import coco_stats

        click.echo(json.dumps(coco_stats(gt, dt, engine)))
        return
    from edge_sdk.coco_eval import evaluate, format_accuracy

    click.echo(format_accuracy(evaluate(gt, dt, deploy_conf=conf, engine=engine, views=False)))
