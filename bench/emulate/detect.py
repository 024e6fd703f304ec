"""Detections, raw outputs and the precision used of several artifacts on the first images of a data set, in one
process: run once on the host and once under emulation (`python -m bench.emulate.detect JOB.json` inside), so the
two sides' detections can be scored against each other (agreement mAP) and their raw outputs compared.

JOB.json: {"data": DATA, "split": "val", "limit": N, "threads": T, "out": FOLDER,
           "configs": [{"name": ..., "artifact": ..., "backend": ..., "precision": ...}, ...]}
Each config writes FOLDER/NAME.json ({"detections", "precision_used", "seconds"} or {"error"}) and, when it ran,
FOLDER/NAME.npz (the raw outputs on bench.emulate.probe's fixed input).
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.emulate.probe import probe_input
from runtimes.errors import EdgebenchError

#: the standard mAP decode (trainer.val.map_config): low confidence, multi-label, class-aware NMS
CONF, IOU, MAX_DET = 0.001, 0.7, 300


def detect_config(config: Mapping[str, Any], dataset: Any, limit: int, threads: int, out: Path) -> dict[str, Any]:
    """Run one config over the first `limit` images; write its .json (and .npz); return the .json's content."""
    from edge_sdk.detector import Detector
    from trainer.val import artifact_detections

    name = str(config["name"])
    start = time.monotonic()
    try:
        with Detector(config["artifact"], backend=config["backend"], precision=config["precision"],
                      threads=threads, conf=CONF, iou=IOU, max_det=MAX_DET, multi_label=True) as det:
            samples = dataset.samples[:limit]
            dets = artifact_detections(det, samples, dict(dataset.category_ids))
            shape = det.runtime.inputs[0].static_shape() or (1, 3, 320, 320)
            raw = det.runtime.infer(probe_input(shape))
            used = str(det.runtime.precision_used.value)
    except EdgebenchError as exc:
        result: dict[str, Any] = {"error": f"{type(exc).__name__}: {exc}"}
    else:
        arrays: dict[str, Any] = {f"out{i}": np.asarray(o) for i, o in enumerate(raw)}
        np.savez(out / f"{name}.npz", **arrays)
        result = {"detections": dets, "precision_used": used, "seconds": time.monotonic() - start}
    (out / f"{name}.json").write_text(json.dumps(result), encoding="utf-8")
    return result


def run_job(job: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every config of `job` (see the module's docstring), in order."""
    from edge_sdk.datasets import load_dataset

    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(job["data"], job.get("split", "val"))
    limit, threads = int(job["limit"]), int(job.get("threads", 1))
    done = {}
    for config in job["configs"]:
        done[str(config["name"])] = detect_config(config, dataset, limit, threads, out)
        print(f"detect: {config['name']}: " + done[str(config["name"])].get("error", "ok"), flush=True)
    return done


def main(argv: list[str]) -> int:
    """JOB.json."""
    (job_file,) = argv
    run_job(json.loads(Path(job_file).read_text(encoding="utf-8")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
