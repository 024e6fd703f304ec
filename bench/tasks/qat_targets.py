"""From the QAT Q/DQ ONNX to the target's own int8 artifact, keeping the learned scales, each followed by the
parity check against the Q/DQ ONNX on ONNX Runtime (the fake-quant model's exact export)."""
from __future__ import annotations

from pathlib import Path

from calibration.dataset import CalibrationSet
from converters.parity import check_parity

#: `edgebench qat --target` choices; each gets its scheme in trainer.qat_model.SYMMETRIC_ACTIVATIONS
TARGETS = ("onnxruntime", "openvino", "tflite", "ncnn", "tensorrt")


def target_artifact(target: str, qdq_onnx: Path, calib: CalibrationSet, threads: int | None = None) -> list[str]:
    """Write the target's artifact beside `qdq_onnx` when it has one; the lines to print (none for ONNX Runtime
    and OpenVINO, which run the Q/DQ ONNX as it is: the `next:` line says how)."""
    if target == "tflite":
        return _tflite(qdq_onnx, calib, threads)
    if target == "ncnn":
        return _ncnn(qdq_onnx)
    if target == "tensorrt":
        return [f"TensorRT: build the engine on the device from the Q/DQ ONNX (explicit quantization, no "
                f"calibration): edgebench export --model {qdq_onnx} --to tensorrt --precision int8"]
    return []


def _tflite(qdq_onnx: Path, calib: CalibrationSet, threads: int | None) -> list[str]:
    from converters.qat_tflite import qat_to_tflite

    out = qdq_onnx.with_suffix(".tflite")
    res = qat_to_tflite(qdq_onnx, out, calib, threads=threads)
    parity = res.parity or {}
    verdict = "PASS" if parity.get("passed") else "FAIL"
    lines = [f"full-integer TFLite: {out} ({len(res.float_ops)} float ops; learned scales kept on {len(res.kept)} "
             f"of {res.learned} activations, {res.weights_kept}/{res.weights} weights; "
             f"{len(res.fixed_by_kernel)} fixed by TFLite's kernels, {len(res.changed)} shared by a concat, "
             f"{len(res.calibrated)} tensors the Q/DQ model keeps float ranged on {len(res.calib_images)} images)"]
    if parity:
        lines.append(f"  parity vs the Q/DQ ONNX: {verdict} (matched {parity.get('matched')}/"
                     f"{parity.get('ref_detections')}, mean IoU {float(parity.get('mean_iou', 0)):.3f})")
    return lines


def _ncnn(qdq_onnx: Path) -> list[str]:
    from calibration.ncnn_qat import qat_to_ncnn

    out = qdq_onnx.with_name(qdq_onnx.stem + "-int8.param")
    res = qat_to_ncnn(qdq_onnx, out)
    parity = check_parity(qdq_onnx, out, backend="ncnn")
    return [f"ncnn int8: {out} (table from the learned scales; {len(res.excluded)} layers float)",
            f"  {parity.summary()}", *(f"  note: {n}" for n in res.notes)]
