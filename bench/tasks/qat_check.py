"""The parity of a QAT export: the Q/DQ ONNX on ONNX Runtime against the fake-quant PyTorch model it came from."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from converters.parity import ParityResult, ParityTolerance, compare_outputs

#: The exported graph computes the fake-quant model's function; they differ only where float sums in another
#: order land an activation on the other side of a rounding tie (one quantization step, a few per layer), which
#: then spreads: the largest single score difference is noise (0.13 seen on the bundled model, in a cell no
#: detection uses), so the cosines and the detections decide. Looser than fp32's, much tighter than
#: int8-vs-fp32.
QAT_EXPORT_TOLERANCE = ParityTolerance(box_max_abs_frac=None, score_max_abs=None, box_cosine=0.999,
                                       score_cosine=0.999, match_rate=0.9, mean_iou=0.97, class_agreement=0.95,
                                       count_diff_frac=0.1)


def fake_quant_parity(checkpoint: str | Path, onnx_path: str | Path, inputs: list[np.ndarray],
                      tolerance: ParityTolerance = QAT_EXPORT_TOLERANCE) -> ParityResult:
    """Outputs of the QAT checkpoint's fake-quant model (torch) vs its Q/DQ ONNX (ONNX Runtime) on `inputs`."""
    import torch

    from runtimes import RuntimeOptions, load
    from trainer.qat import load_qat

    model, _ = load_qat(checkpoint, inputs[:1])
    with torch.no_grad():
        ref = [model(torch.from_numpy(x)).numpy() for x in inputs]
    with load(onnx_path, "onnxruntime", RuntimeOptions()) as rt:
        cand = [rt.infer(x)[0] for x in inputs]
        used = rt.precision_used
    size = (int(inputs[0].shape[2]), int(inputs[0].shape[3]))
    return compare_outputs(ref, cand, "yolov8", size, tolerance, precision_used=str(used))
