"""`edgebench val --model CKPT|ARTIFACT --data D`: COCO accuracy with the bench's evaluator."""
from __future__ import annotations

import json

import click


@click.command("val")
@click.option("--model", required=True,
              help="Our checkpoint (.ckpt, needs torch) or an exported artifact (.onnx, ...).")
@click.option("--data", required=True, help="data.yaml (or a folder with one) or a COCO json.")
@click.option("--split", default="val", show_default=True)
@click.option("--imgsz", type=int, default=None, help="Checkpoints only: input size (default: the training size).")
@click.option("--batch", type=int, default=16, show_default=True, help="Checkpoints only: images per forward.")
@click.option("--backend", default=None, help="Artifacts only: runtime backend (default: from the file suffix).")
@click.option("--conf", type=float, default=0.001, show_default=True, help="Confidence floor for mAP.")
@click.option("--iou", type=float, default=0.7, show_default=True, help="NMS IoU.")
@click.option("--max-det", type=int, default=300, show_default=True)
@click.option("--deploy-conf", type=float, default=0.25, show_default=True, help="Confidence for P/R/F1.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def command(model: str, data: str, split: str, imgsz: int | None, batch: int, backend: str | None, conf: float,
            iou: float, max_det: int, deploy_conf: float, as_json: bool) -> None:
    """Validate a checkpoint or an artifact on a data set (conf 0.001, NMS 0.7, 300 dets, multi-label)."""
    from trainer.val import CHECKPOINT_SUFFIXES, validate

    if model.lower().endswith(CHECKPOINT_SUFFIXES):
        from trainer.requires import require_torch

        require_torch()
    result = validate(model, data, split, imgsz, batch, conf, iou, max_det, deploy_conf, backend)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
        return
    from edge_sdk.coco_eval import format_accuracy

    click.echo(format_accuracy(result))
