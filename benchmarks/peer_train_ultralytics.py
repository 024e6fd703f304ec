"""Peer comparison: our `n` detector against Ultralytics' YOLOv8n (from yolov8n.yaml), same data and settings.

Run (Ultralytics lives only in a scratch venv, never in ours):
    python -m venv /tmp/ulvenv
    /tmp/ulvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 ultralytics onnx
    python benchmarks/peer_train_ultralytics.py --ultralytics-python /tmp/ulvenv/bin/python \
        [--train 1000] [--val 200] [--epochs 10] [--close-mosaic 2] [--data-seed 0] [--hours H] [--work /tmp/peer]
    (`--only ours` trains our side alone and needs no Ultralytics: a check that the script still runs)

Both train from scratch on the same synthetic data set (edge_sdk.synth, seed 0 unless --data-seed) with the same
epochs, image size, batch, data-loader workers, close-mosaic, images cached in RAM, optimizer
choice 'auto', fp32, on the CPU, validating every epoch. Each best checkpoint is exported to ONNX
and scored by the same evaluator (edge_sdk.Detector on ONNX Runtime + pycocotools); Ultralytics'
own final mAP is printed too. Images/s = train images x epochs / wall time of the training call (`fit()`
for ours, `YOLO.train()` for theirs; data caching and per-epoch validation included for both).
Goal: our AP50-95 >= 0.95x theirs and our images/s >= theirs.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ULTRALYTICS_SIDE = r"""
import json, sys, time
from ultralytics import YOLO
data, epochs, imgsz, batch, workers, close_mosaic, out, project, hours = sys.argv[1:10]
model = YOLO("yolov8n.yaml")
t = time.perf_counter()
model.train(data=data, epochs=int(epochs), imgsz=int(imgsz), batch=int(batch), workers=int(workers),
            close_mosaic=int(close_mosaic), device="cpu", cache="ram", pretrained=False, amp=False, plots=False,
            project=project, name="ul", exist_ok=True, seed=0, verbose=False,
            **({"time": float(hours)} if float(hours) > 0 else {}))
seconds = time.perf_counter() - t
best = model.trainer.best
onnx_path = YOLO(str(best)).export(format="onnx", imgsz=int(imgsz), opset=17, simplify=False)
m = model.trainer.metrics
json.dump({"seconds": seconds, "best": str(best), "onnx": str(onnx_path),
           "map": float(m.get("metrics/mAP50-95(B)", float("nan"))),
           "params": sum(p.numel() for p in model.model.parameters())}, open(out, "w"))
"""


def run_ours(data: Path, work: Path, a: argparse.Namespace) -> dict:
    """Train with `edgebench train`, export the best checkpoint; wall time and paths."""
    out = work / "ours"
    cmd = [sys.executable, "-m", "bench", "train", "--data", str(data / "data.yaml"), "--arch", "n",
           "--imgsz", str(a.imgsz), "--epochs", str(a.epochs), "--batch", str(a.batch), "--workers", str(a.workers),
           "--close-mosaic", str(a.close_mosaic), "--cache", "--seed", "0", "--out", str(out), "--quiet",
           "--accelerator", "cpu", "--patience", str(a.epochs + 1)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: our training failed:\n{proc.stderr[-3000:]}")
    own = re.search(r"val/mAP50-95: ([0-9.]+)", proc.stdout)
    seconds = float(re.search(r"trained \d+ epochs in (\d+) s", proc.stdout).group(1))  # the fit() call
    onnx_path = out / "best.onnx"
    subprocess.run([sys.executable, "-m", "bench", "export", "--model", str(out / "weights" / "best.ckpt"),
                    "-o", str(onnx_path)], check=True, capture_output=True)
    return {"seconds": seconds, "onnx": str(onnx_path), "map": float(own.group(1)) if own else float("nan")}


def run_theirs(python: str, data: Path, work: Path, a: argparse.Namespace) -> dict:
    """Train Ultralytics' YOLOv8n in the scratch interpreter; wall time, own mAP, exported ONNX."""
    out = work / "ul.json"
    args = [str(data / "data.yaml"), str(a.epochs), str(a.imgsz), str(a.batch), str(a.workers),
            str(a.close_mosaic), str(out), str(work), str(a.hours or 0)]
    proc = subprocess.run([python, "-c", ULTRALYTICS_SIDE, *args], capture_output=True, text=True, cwd=work)
    if proc.returncode != 0 or not out.is_file():
        raise SystemExit(f"error: Ultralytics training failed:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def score(onnx_path: str, data: Path) -> float:
    """AP50-95 by edgebench's evaluator (Detector on ONNX Runtime + pycocotools)."""
    from trainer.val import validate

    return float(validate(onnx_path, data / "data.yaml", backend="onnxruntime").stats["AP"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ultralytics-python", help="python of a scratch venv with ultralytics (not for --only ours)")
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--val", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--close-mosaic", type=int, default=2)
    parser.add_argument("--hours", type=float, default=None,
                        help="Ultralytics side only: train for this long instead of --epochs (its `time` argument "
                             "re-plans the epochs, and the learning-rate schedule, to fit)")
    parser.add_argument("--data-seed", type=int, default=0,
                        help="seed of the synthetic data set (0: the bundled model's; another seed: unseen data)")
    parser.add_argument("--work", type=Path, default=Path("runs/peer"))
    parser.add_argument("--only", choices=["ours", "theirs"], help="train one side only (debugging)")
    a = parser.parse_args()
    if a.only != "ours" and not a.ultralytics_python:
        parser.error("--ultralytics-python is required (unless --only ours)")

    from edge_sdk.host import host_facts
    from edge_sdk.synth import generate

    a.work = a.work.resolve()
    data = a.work / f"data-{a.train}-{a.val}-{a.imgsz}-seed{a.data_seed}"
    if not (data / "data.yaml").is_file():
        generate(data, train=a.train, val=a.val, imgsz=a.imgsz, seed=a.data_seed)
    results = {}
    if a.only != "theirs":
        results["edgebench n"] = run_ours(data, a.work, a)
    if a.only != "ours":
        results["Ultralytics YOLOv8n"] = run_theirs(a.ultralytics_python, data, a.work, a)
    print(f"{a.train} train / {a.val} val synthetic images (seed {a.data_seed}), {a.epochs} epochs, "
          f"imgsz {a.imgsz}, batch {a.batch}, "
          f"{a.workers} workers, close-mosaic {a.close_mosaic}, fp32 CPU\n")
    print("| model | AP50-95 (edgebench evaluator) | AP50-95 (own val) | train images/s | train wall s |")
    print("|---|---:|---:|---:|---:|")
    scored = {}
    for name, r in results.items():
        scored[name] = score(r["onnx"], data)
        ips = a.train * a.epochs / r["seconds"] if r["seconds"] > 0 else float("nan")  # "0 s": a tiny run
        r["ips"] = ips
        print(f"| {name} | {scored[name]:.4f} | {r['map']:.4f} | {ips:.1f} | {r['seconds']:.0f} |")
    if len(results) == 2:
        ours, theirs = results["edgebench n"], results["Ultralytics YOLOv8n"]
        ap_ratio = scored["edgebench n"] / max(scored["Ultralytics YOLOv8n"], 1e-9)
        print(f"\nours/theirs: AP50-95 {ap_ratio:.3f}x (goal >= 0.95), images/s {ours['ips'] / theirs['ips']:.3f}x "
              f"(goal >= 1.0)")
    h = host_facts()
    print(f"CPU: {h['cpu_model']}, {h['physical_cores']} physical cores; Python {h['python']}")


if __name__ == "__main__":
    main()
