"""Make the bundled default model: synthetic data -> train `n` at 320 -> ONNX (fp16-stored weights) -> metrics.

Run (needs the `train` extra; about 80 s per epoch on a 2-core x86 CPU):
    python scripts/build_default_model.py --epochs 60 --work /tmp/default-model
or, from a finished training run:
    python scripts/build_default_model.py --ckpt RUN/weights/best.ckpt --train-log RUN.log

Writes edge_sdk/assets/default_model.onnx and edge_sdk/assets/default_model.json (how it was made,
its size and hash, and its COCO metrics measured on the shipped ONNX with edge_sdk.Detector on ONNX
Runtime over the synthetic val set). The ONNX carries `extra.synth` in its metadata, so `edgebench
run` regenerates exactly that val set (edge_sdk.synth is deterministic by seed).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import sys
from pathlib import Path

from edge_sdk.atomic import write_json_atomic

ASSETS = Path(__file__).resolve().parents[1] / "edge_sdk" / "assets"
SYNTH = {"seed": 0, "imgsz": 320, "train": 2000, "val": 200}


def train_command(data: Path, out: Path, epochs: int) -> list[str]:
    """The `edgebench train` command line used for the default model."""
    return ["edgebench", "train", "--data", str(data / "data.yaml"), "--arch", "n", "--imgsz", str(SYNTH["imgsz"]),
            "--epochs", str(epochs), "--batch", "16", "--workers", "2", "--cache", "--seed", "0", "--out", str(out)]


def train(work: Path, epochs: int) -> tuple[Path, float, int]:
    """Generate the data and train; returns (best checkpoint, seconds, epochs run)."""
    from edge_sdk.synth import generate
    from trainer.train import TrainConfig, fit

    data = work / "data"
    if not (data / "data.yaml").is_file():
        generate(data, train=SYNTH["train"], val=SYNTH["val"], imgsz=SYNTH["imgsz"], seed=SYNTH["seed"])
    cfg = TrainConfig(data=str(data / "data.yaml"), model="n", imgsz=SYNTH["imgsz"], epochs=epochs, batch=16,
                      workers=2, cache=True, seed=0, out_dir=str(work / "run"), progress=True)
    result = fit(cfg)
    if result.best is None:
        raise SystemExit("error: training produced no best checkpoint")
    return result.best, result.seconds, result.epochs_run


def parse_log(path: Path) -> tuple[float | None, int | None]:
    """(seconds, epochs) from the 'trained N epochs in S s' line `edgebench train` prints."""
    found = re.findall(r"trained (\d+) epochs in (\d+) s", path.read_text(errors="replace"))
    return (float(found[-1][1]), int(found[-1][0])) if found else (None, None)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(ckpt: Path, seconds: float | None, epochs: int | None, command: list[str], data_yaml: Path) -> dict:
    """Export, evaluate the shipped file and write both assets; returns the record."""
    from edge_sdk.host import host_facts
    from trainer.export import export_onnx
    from trainer.val import validate

    onnx_path = ASSETS / "default_model.onnx"
    extra = {"synth": {k: SYNTH[k] for k in ("seed", "imgsz", "val")}, "trained_epochs": epochs}
    export_onnx(ckpt, onnx_path, SYNTH["imgsz"], weights_fp16=True, extra=extra)
    acc = validate(onnx_path, data_yaml, backend="onnxruntime")
    h = host_facts()
    record = {
        "model": "edgebench YOLOv8-style n, 10 classes, 320x320, weights stored as float16 (computed in float32)",
        "train_command": " ".join(command), "epochs": epochs, "train_seconds": seconds,
        "data": {"generator": "edgebench data synth", **SYNTH},
        "size_bytes": onnx_path.stat().st_size, "sha256": sha256(onnx_path),
        "metrics": {"AP50-95": acc.stats["AP"], "AP50": acc.stats["AP50"], "AP75": acc.stats["AP75"],
                    "precision": acc.precision, "recall": acc.recall, "f1": acc.f1,
                    "deploy_conf": acc.deploy_conf, "images": acc.num_images,
                    "measured_with": "edge_sdk.Detector on ONNX Runtime, conf 0.001, NMS IoU 0.7, multi-label, "
                                     "max 300 detections, pycocotools"},
        "machine": f"{h['cpu_model']}, {h['physical_cores']} physical cores, Python {platform.python_version()}",
    }
    write_json_atomic(ASSETS / "default_model.json", record)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/default-model"), help="data and training folder")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--ckpt", type=Path, help="use this finished checkpoint instead of training")
    parser.add_argument("--train-log", type=Path, help="with --ckpt: the `edgebench train` output (time, epochs)")
    parser.add_argument("--data", type=Path, help="with --ckpt: the synthetic data folder it was trained on")
    args = parser.parse_args()
    if args.ckpt:
        seconds, epochs = parse_log(args.train_log) if args.train_log else (None, None)
        data = args.data or args.work / "data"
        command = train_command(data, args.ckpt.parent.parent, epochs or args.epochs)
    else:
        args.work.mkdir(parents=True, exist_ok=True)
        data = args.work / "data"
        command = train_command(data, args.work / "run", args.epochs)
        ckpt, seconds, epochs = train(args.work, args.epochs)
        args.ckpt = ckpt
    record = build(args.ckpt, seconds, epochs, command, data / "data.yaml")
    json.dump(record, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
