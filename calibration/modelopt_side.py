"""Run by NVIDIA ModelOpt's own interpreter, never imported by edgebench: one ONNX INT8 PTQ job.

`python modelopt_side.py JOB.json` reads the job that calibration.modelopt wrote (the float ONNX, the
calibration tensors as one .npy, ModelOpt's calibration method, the node names kept in float, the output
path), runs `modelopt.onnx.quantization.quantize` on the CPU (ONNX Runtime's CPU provider) and writes a
small JSON report (package versions, the exclusion patterns it passed). It imports only the standard
library, numpy and modelopt: ModelOpt pins its own onnx / onnxruntime-gpu, which must not enter
edgebench's environment, so this file must not import edgebench either.

Exit status: 0 done; 3 ModelOpt (or numpy) is not importable here; 1 anything else (traceback on stderr).
"""
from __future__ import annotations

import importlib
import json
import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

#: exit status when this interpreter lacks ModelOpt
NO_MODELOPT = 3


def exact_patterns(names: list[str]) -> list[str]:
    """ModelOpt matches `nodes_to_exclude` with `re.match` (a prefix regex): each name escaped and anchored,
    so `/head/Concat` keeps exactly that node, not `/head/Concat_1` too."""
    return [re.escape(n) + r"\Z" for n in names]


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return ""


def run(job: dict[str, Any]) -> dict[str, Any]:
    """Quantize as `job` says; returns the report."""
    import numpy as np

    quantize = importlib.import_module("modelopt.onnx.quantization").quantize  # not in edgebench's environment
    data = np.load(job["calib"])
    patterns = exact_patterns(list(job["exclude"]))
    quantize(job["model"], quantize_mode="int8", calibration_data=data,
             calibration_method=job["method"], calibration_eps=["cpu"],
             nodes_to_exclude=patterns or None, high_precision_dtype=job["high_precision_dtype"],
             output_path=job["out"], log_level=job.get("log_level", "WARNING"))
    if not Path(job["out"]).is_file():
        raise RuntimeError(f"ModelOpt wrote no model at {job['out']}")
    ort = _version("onnxruntime-gpu") or _version("onnxruntime")
    return {"modelopt": _version("nvidia-modelopt"), "onnxruntime": ort, "onnx": _version("onnx"),
            "numpy": _version("numpy"), "images": int(data.shape[0]), "patterns": patterns}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: modelopt_side.py JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    try:
        importlib.import_module("numpy")
        importlib.import_module("modelopt.onnx.quantization")
    except ImportError as exc:
        print(f"ModelOpt's ONNX quantizer is not importable here ({exc})", file=sys.stderr)
        return NO_MODELOPT
    report = run(job)
    Path(job["report"]).write_text(json.dumps(report), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
