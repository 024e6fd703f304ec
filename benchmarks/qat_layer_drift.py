"""Where a QAT export drifts from its fake-quant PyTorch model: every activation quantizer's output, torch vs
the Q/DQ ONNX on ONNX Runtime (graph optimisations off, so each Q/DQ pair is evaluated as written).

    python benchmarks/qat_layer_drift.py --run runs/qat [--image IMG] [--every 10]

Prints, in graph order, the share of elements that differ and the largest difference in quantization steps.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import _repo  # noqa: F401  (puts the checkout on sys.path)
import cv2
import numpy as np
import onnx
import torch

from converters.qat_tflite_ties import onnx_values
from edge_sdk.letterbox import preprocess
from trainer.checkpoint import CKPT_KEY, read_checkpoint
from trainer.qat import load_qat
from trainer.qat_model import quantizers


def torch_outputs(ckpt: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Each activation quantizer's output, by NNCF hook name (e.g. "head/dfl/softmax/0__0.0")."""
    model, _ = load_qat(ckpt, [x])
    seen: dict[str, np.ndarray] = {}

    def keep(key: str) -> object:
        def hook(_m: torch.nn.Module, _i: object, out: torch.Tensor) -> None:
            seen.setdefault(key, out.detach().numpy().copy())
        return hook

    for name, q in quantizers(model).items():
        key = name.split("hooks.", 1)[1].split(".", 1)[1]
        if not key.endswith("__1.0"):  # port 1: a weight (BN-folded in the export, not comparable)
            q.register_forward_hook(keep(key))  # type: ignore[arg-type]
    with torch.no_grad():
        model(torch.from_numpy(x))
    return seen


def onnx_outputs(path: Path, keys: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """The DequantizeLinear output named after each hook, from the unoptimised graph."""
    graph = onnx.load(str(path), load_external_data=False).graph
    found = {k: n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"
             for k in keys if f"/{k}/DequantizeLinear" in n.name}
    values = onnx_values(path, list(found.values()), x, optimize=False)
    return {k: values[tensor] for k, tensor in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a QAT run folder (weights/best.ckpt, weights/best-qat.onnx)")
    parser.add_argument("--image", default=None, help="default: a mid-grey image")
    parser.add_argument("--every", type=int, default=1, help="print every Nth quantizer")
    args = parser.parse_args()
    run = Path(args.run) / "weights"
    ckpt = run / "best.ckpt"
    size = int(read_checkpoint(ckpt)[CKPT_KEY]["imgsz"])
    x = (np.ascontiguousarray(preprocess(cv2.imread(args.image), size)[0]) if args.image
         else np.full((1, 3, size, size), 0.5, np.float32))
    ref = torch_outputs(ckpt, x)
    got = onnx_outputs(run / "best-qat.onnx", list(ref), x)
    print(f"{len(got)} of {len(ref)} activation quantizers found in the ONNX")
    print("| quantizer | elements differing | largest difference (steps) |\n|---|---:|---:|")
    for i, (key, cand) in enumerate(got.items()):
        if i % args.every and i != len(got) - 1:
            continue
        exp = ref[key]
        if exp.shape != cand.shape:
            print(f"| {key} | shape {exp.shape} vs {cand.shape} | |")
            continue
        levels = np.unique(exp)
        step = float(np.min(np.diff(levels))) if levels.size > 1 else 1.0
        diff = np.abs(exp - cand)
        print(f"| {key} | {100 * np.mean(diff > step / 2):.2f}% | {diff.max() / step:.1f} |")


if __name__ == "__main__":
    main()
