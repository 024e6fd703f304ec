"""A QAT Q/DQ ONNX -> a full-integer .tflite that keeps the learned scales (int8 I/O, no float op).

Route: the Q/DQ pairs are stripped (`strip_qdq`: each activation QuantizeLinear -> DequantizeLinear pair is
removed and its scale/zero point kept by tensor; each int8 weight -> DequantizeLinear becomes the float
initializer q * scale, exactly the learned grid), the box rows are divided by the input size before the
output concat (converters.rewrites_outputs.normalize_boxes: boxes and scores share one int8 output scale),
the float ONNX goes to TFLite by the project's route (converters.tflite), and ai-edge-quantizer quantizes it
with calibration values built from the learned ranges instead of calibrated ones:

- an activation the ONNX quantizes gets min/max = ((-128 - zp) * s, (127 - zp) * s), from which the quantizer
  computes exactly s and zp; a TFLite tensor is tied to the ONNX tensor holding its values on a probe image
  (as calibration.tflite_ops ties ops to nodes); tensors that only move values (reshape, pooling, concat...)
  of learned inputs inherit their quantization (a concat, one int8 scale in TFLite, the one covering its
  inputs' learned ranges: the inputs with another scale are then re-rounded and reported as `changed`);
- a conv weight gets per-channel +-127 * s, so the quantizer re-derives the learned scale and integers;
- every other tensor (sigmoid/softmax outputs, the decode arithmetic, the normalised boxes...) gets the plain
  min/max over a few calibration images (`calib_images`, listed in the result).

TFLite's kernels fix some scales (LOGISTIC and SOFTMAX outputs: 1/256, zero point -128): a learned scale on
such a tensor cannot be kept and is reported (`QatTfliteResult.fixed_by_kernel`), never silently replaced.
"""
from __future__ import annotations

import importlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from calibration import tflite_ops
from calibration.dataset import CalibrationSet
from calibration.qat_strip import Learned, StrippedQdq, strip_qdq
from converters.qat_tflite_ties import (
    graph_ops,
    inherit_learned,
    onnx_layout,
    tie_activations,
    tie_weights,
)
from converters.quiet import quiet_output
from converters.rewrites_outputs import normalize_boxes
from converters.tflite import to_tflite
from edge_sdk.atomic import write_bytes_atomic, write_json_atomic
from edge_sdk.meta import EDGEBENCH_KEY
from runtimes.base import sidecar_path
from runtimes.errors import BackendUnavailableError, CalibrationError, ConversionError
from runtimes.threads import resolve_threads

#: how many calibration images range the tensors the ONNX leaves without a learned scale
DEFAULT_CALIB_IMAGES = 32
#: the `method` an artifact made here records (its ranges are the QAT model's, not a calibration's)
QAT_METHOD = "qat (learned scales)"
SCHEME = ("full integer (ai-edge-quantizer static int8 with the QAT model's learned ranges): weights int8 "
          "per-channel symmetric with the learned scales, activations int8 per-tensor asymmetric, learned where the "
          "Q/DQ ONNX quantizes them, else min/max over the calibration images; int8 input and output")
#: relative difference under which a TFLite tensor's scale "equals" the learned one
SCALE_RTOL = 1e-6
#: TFLite ops whose output quantization the kernel fixes (1/256, -128)
FIXED_OUTPUT_OPS = frozenset({"LOGISTIC", "SOFTMAX"})
@dataclass
class QatTfliteResult:
    """The full-integer .tflite and how far its scales are the learned ones."""

    path: Path
    learned: int  # activation tensors the ONNX quantizes (one learned scale each)
    kept: dict[str, str]  # ONNX tensor -> TFLite tensor carrying exactly its learned scale and zero point
    fixed_by_kernel: dict[str, str]  # ONNX tensor -> TFLite tensor whose scale the kernel fixes (1/256)
    changed: dict[str, str]  # ONNX tensor -> why its TFLite tensor has another scale
    unmatched: tuple[str, ...]  # learned ONNX tensors no TFLite tensor holds (fused or folded away)
    weights: int  # conv weights with learned per-channel scales
    weights_kept: int  # of them whose TFLite weights have exactly those scales and integers
    calibrated: tuple[str, ...]  # TFLite tensors ranged by the min/max pass, not by a learned scale
    calib_images: tuple[str, ...]  # the images of that pass
    float_ops: tuple[str, ...]  # ops computing in float (must be empty)
    notes: tuple[str, ...] = ()
    parity: dict[str, Any] | None = None  # converters.parity against the Q/DQ ONNX on ONNX Runtime

    def to_dict(self) -> dict[str, Any]:
        """The sidecar's record (counts and the lists that matter)."""
        return {"learned_activations": self.learned, "kept": len(self.kept), "fixed_by_kernel": self.fixed_by_kernel,
                "changed": self.changed, "unmatched": list(self.unmatched), "weights": self.weights,
                "weights_kept": self.weights_kept, "calibrated_tensors": len(self.calibrated),
                "calib_images": list(self.calib_images), "float_ops": list(self.float_ops), "notes": list(self.notes),
                "parity": self.parity}


def qat_to_tflite(qdq_onnx: str | Path, out: str | Path, calib: CalibrationSet, *,
                  calib_images: int = DEFAULT_CALIB_IMAGES, threads: int | None = None,
                  parity: bool = True) -> QatTfliteResult:
    """Write the full-integer .tflite of the Q/DQ ONNX `qdq_onnx` at `out` (+ sidecar) with the learned scales
    (see the module doc); `calib` ranges the tensors without one (its first `calib_images` images). With
    `parity`, the result is checked against the Q/DQ ONNX on ONNX Runtime (the fake-quant model's export)."""
    aeq = _import_quantizer()
    src, dst = Path(qdq_onnx), Path(out)
    stripped = strip_qdq(onnx.load(str(src)))
    if not stripped.activations:
        raise ConversionError(f"{src.name} has no QuantizeLinear/DequantizeLinear pair: not a Q/DQ model")
    images = calib.files[:calib_images]
    if not images:
        raise CalibrationError("the calibration set is empty")
    floats = _float_tflite(stripped, next(calib.with_layout("nchw").arrays(limit=1)))
    quantized, calibrated = _quantize(aeq, floats, stripped, calib, len(images), threads)
    result = _check(quantized, floats.ties, stripped, floats.weight_ties, dst)
    result.calibrated, result.calib_images = calibrated, tuple(str(p) for p in images)
    result.notes = (*floats.notes, *stripped.conflicts, *_io_notes(quantized))
    write_bytes_atomic(dst, quantized)
    write_json_atomic(sidecar_path(dst), int8_sidecar(floats.sidecar, src.name, result, calib, _version(aeq)))
    if parity:
        result.parity = _parity(src, dst, threads)
        write_json_atomic(sidecar_path(dst), int8_sidecar(floats.sidecar, src.name, result, calib, _version(aeq)))
    return result


@dataclass
class _FloatTflite:
    """The float .tflite of the stripped model, its sidecar, and its tensors tied to the learned ONNX ones."""

    blob: bytes
    sidecar: dict[str, Any]
    ties: dict[str, str]
    weight_ties: dict[str, tuple[str, int]]
    notes: list[str]


def _float_tflite(stripped: StrippedQdq, probe_nchw: np.ndarray) -> _FloatTflite:
    """Normalise the boxes (one int8 output scale for boxes and scores), convert, tie tensors by value."""
    model, sites = normalize_boxes(stripped.model)
    notes = [] if sites else ["no [B, 4+nc, N] box/score concat found to normalise; the output scale is shared"]
    with tempfile.TemporaryDirectory(prefix="edgebench-qat-tflite-") as tmp:
        float_onnx = Path(tmp) / "float.onnx"
        onnx.save(model, str(float_onnx))
        float_tflite = to_tflite(float_onnx, Path(tmp) / "float.tflite", "fp32")
        blob = float_tflite.read_bytes()
        side = sidecar_path(float_tflite)
        sidecar = json.loads(side.read_text(encoding="utf-8")) if side.is_file() else {}
        with quiet_output():  # LiteRT warns that keeping every tensor is for debugging (it is, here)
            ties = tie_activations(float_onnx, blob, stripped.activations, probe_nchw)
    return _FloatTflite(blob, sidecar, ties, tie_weights(blob, stripped.weights), notes)


def _quantize(aeq: Any, floats: _FloatTflite, stripped: StrippedQdq, calib: CalibrationSet, images: int,
              threads: int | None) -> tuple[bytes, tuple[str, ...]]:
    """The int8 model from learned ranges (activations, weights) and min/max ones for the rest (named)."""
    learned = inherit_learned(floats.blob, {t: stripped.activations[o] for t, o in floats.ties.items()})
    qt = _quantizer(aeq, floats.blob)
    qsvs = _minmax_qsvs(aeq, qt, floats.blob, calib, images, threads)
    calibrated = tuple(sorted(set(qsvs) - set(learned)))
    qsvs.update({name: value.qsv() for name, value in learned.items()})
    qsvs.update(_weight_qsvs(floats.weight_ties, stripped.weights))
    with quiet_output():
        result = qt.quantize(qsvs, enable_progress_bar=False, enable_progress_report=False)
    return bytes(result.quantized_model), calibrated


def _parity(reference: Path, artifact: Path, threads: int | None) -> dict[str, Any]:
    """converters.parity against the Q/DQ ONNX (ONNX Runtime), at the int8 tolerance, on export's int8 frames."""
    from converters.export import INT8_PARITY_IMAGES
    from converters.parity import check_parity
    from runtimes import RuntimeOptions

    res = check_parity(reference, artifact, backend="tflite", images=INT8_PARITY_IMAGES,
                       options=RuntimeOptions(threads=threads))
    return {**res.to_dict(), "summary": res.summary()}


def int8_sidecar(float_sidecar: dict[str, Any], source: str, result: QatTfliteResult, calib: CalibrationSet,
                 quantizer: str) -> dict[str, Any]:
    """The float .tflite's sidecar made the int8 artifact's: precision int8 (also in our ModelMeta JSON), the
    Q/DQ ONNX as source, the `int8` provenance record (converters.int8's keys) and the learned-scale check."""
    data = dict(float_sidecar)
    meta = json.loads(data.get(EDGEBENCH_KEY) or "{}")
    meta["precision"] = "int8"
    meta["extra"] = {**meta.get("extra", {}), "converted_from": source, "weights_storage": "int8"}
    data[EDGEBENCH_KEY] = json.dumps(meta, sort_keys=True)
    calibration = {**calib.provenance(), "images": len(result.calib_images), "set_images": len(calib),
                   "files": [Path(f).name for f in result.calib_images]}
    data.update({"precision": "int8", "weights_storage": "int8", "source": source, "qat_tflite": result.to_dict(),
                 "int8": {"method": QAT_METHOD, "calibration": calibration,
                          "exclusion": {"mode": "none", "nodes": [], "added": []}, "quantizer": quantizer,
                          "scheme": SCHEME, "excluded": [], "float_ops": list(result.float_ops), "int8_io": True,
                          "cache_hit": False, "notes": list(result.notes)}})
    return data


def _version(aeq: Any) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"ai-edge-quantizer {version('ai-edge-quantizer')}"
    except PackageNotFoundError:
        return f"ai-edge-quantizer {getattr(aeq, '__version__', 'unknown')}"


def _import_quantizer() -> Any:
    try:
        return importlib.import_module("ai_edge_quantizer")
    except ImportError as exc:
        raise BackendUnavailableError("tflite", "ai-edge-quantizer", "tflite-export",
                                      "needed to quantize to int8") from exc


def _quantizer(aeq: Any, blob: bytes) -> Any:
    """ai-edge-quantizer on the float model: static int8 everywhere (weights per channel), int8 I/O."""
    qt = aeq.quantizer.Quantizer(bytearray(blob))
    qt.add_static_config(".*", aeq.qtyping.TFLOperationName.ALL_SUPPORTED, 8, 8,
                         aeq.qtyping.QuantGranularity.CHANNELWISE)
    return qt


def _minmax_qsvs(aeq: Any, qt: Any, blob: bytes, calib: CalibrationSet, images: int,
                 threads: int | None) -> dict[str, Any]:
    """Every activation's plain min/max over the first `images` calibration images (run in NHWC)."""
    from ai_edge_quantizer.utils import qsv_utils

    signatures = tflite_ops.interpreter(blob).get_signature_list()
    if not signatures:
        raise CalibrationError("the float .tflite has no signature to calibrate through")
    signature, spec = next(iter(signatures.items()))
    arg = str(spec["inputs"][0])
    calibrator = aeq.calibrator.Calibrator(bytearray(blob), num_threads=resolve_threads(threads),
                                           qsv_update_func=qsv_utils.min_max_update)
    with quiet_output():
        for array in calib.with_layout("nhwc").arrays(limit=images):
            calibrator.calibrate({str(signature): [{arg: array}]}, qt._recipe_manager)
    qsvs: dict[str, Any] = calibrator.get_model_qsvs()
    return qsvs


def _weight_qsvs(ties: dict[str, tuple[str, int]], weights: dict[str, tuple[np.ndarray, np.ndarray]]
                 ) -> dict[str, Any]:
    """Per-channel +-127 * scale for each tied weight, so the quantizer's symmetric rule gives back exactly the
    learned scales and integers."""
    out: dict[str, Any] = {}
    for name, (onnx_name, axis) in ties.items():
        q, scale = weights[onnx_name]
        shape = [1] * q.ndim
        shape[axis] = scale.size
        bound = 127.0 * scale.astype(np.float64).reshape(shape)
        out[name] = {"min": -bound, "max": bound}
    return out


def _check(quantized: bytes, ties: dict[str, str], stripped: StrippedQdq, weight_ties: dict[str, tuple[str, int]],
           dst: Path) -> QatTfliteResult:
    """Compare the quantized model's tensors with the learned parameters (see QatTfliteResult)."""
    interp = tflite_ops.interpreter(quantized)
    details = {str(t["name"]): t for t in interp.get_tensor_details()}
    ops = graph_ops(quantized)
    producer = {name: op.kind for op in ops for name in op.outputs}
    requantized = {op.inputs[0]: op.outputs[0] for op in ops if op.kind == "QUANTIZE" and op.inputs and op.outputs}
    kept: dict[str, str] = {}
    fixed: dict[str, str] = {}
    changed: dict[str, str] = {}
    for name, onnx_name in ties.items():
        want = stripped.activations[onnx_name]
        why = _scale_differs(details.get(name), want)
        if why is None:
            kept.setdefault(onnx_name, name)
        elif name in requantized and _scale_differs(details.get(requantized[name]), want) is None:
            kept.setdefault(onnx_name, f"{requantized[name]} (QUANTIZE from the {producer.get(name)} output)")
        elif producer.get(name) in FIXED_OUTPUT_OPS:
            fixed.setdefault(onnx_name, f"{name}: {producer[name]} output, {why}")
        else:
            changed.setdefault(onnx_name, f"{name}: {why}")
    for onnx_name in kept:
        fixed.pop(onnx_name, None)
        changed.pop(onnx_name, None)
    unmatched = tuple(n for n in stripped.activations if n not in set(ties.values()))
    weights_kept = sum(_weights_equal(interp, details.get(name), *stripped.weights[onnx], axis)
                       for name, (onnx, axis) in weight_ties.items())
    float_ops = tuple(op.label for op in tflite_ops.float_ops(quantized))
    return QatTfliteResult(dst, len(stripped.activations), kept, fixed, changed, unmatched, len(stripped.weights),
                           weights_kept, (), (), float_ops)


def _scale_differs(detail: dict[str, Any] | None, want: Learned) -> str | None:
    """None when the tensor is int8 with the learned scale (relative SCALE_RTOL) and zero point; else why not."""
    if detail is None:
        return "not in the quantized model"
    params = detail.get("quantization_parameters", {})
    scales, zeros = np.asarray(params.get("scales", [])), np.asarray(params.get("zero_points", []))
    if np.dtype(detail["dtype"]) != np.int8 or scales.size != 1:
        return f"{np.dtype(detail['dtype']).name} with {scales.size} scale(s), not int8 per tensor"
    scale, zero = float(scales[0]), int(zeros[0])
    if abs(scale - want.scale) > SCALE_RTOL * want.scale or zero != want.zero_point:
        return f"scale {scale:.6g} zero point {zero}, learned {want.scale:.6g} / {want.zero_point}"
    return None


def _weights_equal(interp: Any, detail: dict[str, Any] | None, q: np.ndarray, scale: np.ndarray, axis: int) -> bool:
    """The TFLite weight tensor holds exactly the learned integers, with the learned per-channel scales."""
    if detail is None or np.dtype(detail["dtype"]) != np.int8:
        return False
    scales = np.asarray(detail["quantization_parameters"]["scales"], np.float64)
    values = onnx_layout(np.asarray(interp.get_tensor(int(detail["index"]))), "DEPTHWISE_CONV_2D" if axis == 3
                          else "CONV_2D")
    return bool(scales.shape == scale.shape and np.allclose(scales, scale, rtol=SCALE_RTOL, atol=0)
                and values.shape == q.shape and np.array_equal(values, q))


def _io_notes(blob: bytes) -> list[str]:
    """Say when an input or output is not int8 (the full-integer contract)."""
    interp = tflite_ops.interpreter(blob)
    found = [(d["name"], np.dtype(d["dtype"]).name) for d in interp.get_input_details() + interp.get_output_details()]
    return [f"{name} is {dtype}, not int8" for name, dtype in found if dtype != "int8"]
