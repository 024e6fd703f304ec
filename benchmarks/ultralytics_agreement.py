"""Does a model score the same in edgebench as in Ultralytics' own validation?

Run (Ultralytics lives only in a scratch venv, never in ours):
    python -m venv /tmp/ulvenv && /tmp/ulvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 ultralytics
    python benchmarks/ultralytics_agreement.py --ultralytics-python /tmp/ulvenv/bin/python \
        [--model MODEL.onnx] [--data data.yaml]

Defaults: the bundled model and its synthetic val set. The same ONNX file is scored four ways:
  (a) edgebench: edge_sdk.Detector (conf 0.001, NMS IoU 0.7, max 300, multi-label) + pycocotools;
  (b) Ultralytics `DetectionValidator` on the ONNX (same thresholds): its own AP (101-point
      interpolation, its own matching), and faster-coco-eval on its detections;
  (c) Ultralytics' detections rescored by edgebench's evaluator (pycocotools) against our ground truth;
  (d) edgebench with single-label NMS (one class per box), the mistake the standard protocol avoids.
(a) vs (c) isolates the detection pipeline (letterbox, decode, NMS); (b) vs (c) isolates the AP
computation. Prints a Markdown table and the machine.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ULTRALYTICS_SIDE = r"""
import json, sys
from ultralytics.models.yolo.detect import DetectionValidator
model, data, imgsz, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
args = dict(model=model, data=data, imgsz=imgsz, batch=1, conf=0.001, iou=0.7, max_det=300, device="cpu",
            plots=False, save_json=True, split="val", verbose=False, project=sys.argv[5], name="val")
v = DetectionValidator(args=args)
stats = v()
box = v.metrics.box
json.dump({"map": float(box.map), "map50": float(box.map50), "stats": {k: float(x) for k, x in stats.items()},
           "class_map": list(v.class_map), "detections": v.jdict}, open(out, "w"))
"""


def ultralytics_run(python: str, model: Path, data: Path, imgsz: int) -> dict:
    """Ultralytics' validation of `model` in the scratch interpreter; its metrics and detections."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ul.json"
        proc = subprocess.run([python, "-c", ULTRALYTICS_SIDE, str(model), str(data), str(imgsz), str(out), tmp],
                              capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0 or not out.is_file():
            raise SystemExit(f"error: Ultralytics validation failed:\n{proc.stderr[-3000:]}")
        return json.loads(out.read_text())


def to_our_ids(dets: list[dict], class_map: list[int], ds) -> list[dict]:  # noqa: ANN001
    """Ultralytics detections (image id = file stem, category = class_map[index]) -> our ids."""
    by_stem = {Path(s.image_path).stem: int(s.image_id) for s in ds.samples}
    index_of = {cat: i for i, cat in enumerate(class_map)}
    return [{**d, "image_id": by_stem[Path(d["file_name"]).stem],
             "category_id": ds.category_ids[index_of[d["category_id"]]]} for d in dets]


def edgebench_scores(model: Path, data: Path, multi_label: bool) -> tuple[dict, int]:
    """(COCO stats, detection count) of edgebench's own validation."""
    from edge_sdk.coco_eval import evaluate
    from edge_sdk.datasets import load_dataset
    from edge_sdk.detector import Detector
    from trainer.val import artifact_detections

    ds = load_dataset(data, "val")
    with Detector(model, conf=0.001, iou=0.7, max_det=300, multi_label=multi_label) as det:
        dets = artifact_detections(det, ds.samples, ds.category_ids)
    return evaluate(ds.to_coco(), dets, 0.25, ds.names).stats, len(dets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ultralytics-python", required=True, help="python of a scratch venv with ultralytics")
    parser.add_argument("--model", type=Path, help="ONNX model (default: the bundled model)")
    parser.add_argument("--data", type=Path, help="data.yaml (default: the bundled model's synthetic val set)")
    args = parser.parse_args()

    from bench.sweep.defaults import default_data, default_model
    from edge_sdk.coco_eval import evaluate
    from edge_sdk.datasets import load_dataset
    from edge_sdk.host import host_facts
    from edge_sdk.meta import ModelMeta
    from runtimes import load

    model = (args.model or default_model()).resolve()
    with load(model) as rt:
        meta = ModelMeta.from_props(rt.metadata(), rt.inputs[0].shape)
    data = (args.data or default_data({"extra": meta.extra})).resolve()
    imgsz = int(meta.imgsz[0]) if meta.imgsz else 640

    ours, n_ours = edgebench_scores(model, data, multi_label=True)
    single, n_single = edgebench_scores(model, data, multi_label=False)
    ul = ultralytics_run(args.ultralytics_python, model, data, imgsz)
    ds = load_dataset(data, "val")
    rescored = evaluate(ds.to_coco(), to_our_ids(ul["detections"], ul["class_map"], ds), 0.25, ds.names).stats
    ul_own = {k.split("/")[-1]: round(v, 6) for k, v in ul["stats"].items()
              if k.split("/")[-1] in ("precision(B)", "recall(B)", "mAP50(B)", "mAP50-95(B)")}

    rows = [
        ("(a) edgebench: Detector + pycocotools", ours["AP"], ours["AP50"], n_ours),
        ("(b) Ultralytics val, its own AP", ul["map"], ul["map50"], len(ul["detections"])),
        ("(c) Ultralytics detections + edgebench map (pycocotools)", rescored["AP"], rescored["AP50"],
         len(ul["detections"])),
        ("(d) edgebench, single-label NMS", single["AP"], single["AP50"], n_single),
    ]
    print(f"model {model.name}, data {data}, {len(ds)} val images, imgsz {imgsz}\n")
    print("| scoring | AP50-95 | AP50 | detections |\n|---|---:|---:|---:|")
    for name, ap, ap50, n in rows:
        print(f"| {name} | {ap:.4f} | {ap50:.4f} | {n} |")
    print(f"\nAP50-95 differences: (a)-(b) {ours['AP'] - ul['map']:+.6f}, (a)-(c) {ours['AP'] - rescored['AP']:+.6f}, "
          f"(b)-(c) {ul['map'] - rescored['AP']:+.6f}, (a)-(d) {ours['AP'] - single['AP']:+.6f}")
    print(f"Ultralytics' own stats: {json.dumps(ul_own)}")
    h = host_facts()
    print(f"\nCPU: {h['cpu_model']}, {h['physical_cores']} physical cores; Python {h['python']}")


if __name__ == "__main__":
    sys.exit(main())
