"""INT8 post-training quantization of a float .tflite with ai-edge-quantizer (LiteRT's own quantizer).

Scheme: static int8 — weights int8 symmetric per output channel, activations int8 per tensor from
ranges observed on the calibration images (run in NHWC, as the .tflite takes them). The excluded
ONNX nodes (the decode tail by default) are found in the .tflite by value (calibration.tflite_ops)
and left unquantized: the quantizer puts a DEQUANTIZE before them, and they run TFLite's float
kernels. Without `int8_io` the model keeps float32 input and output (a QUANTIZE after the input, a
DEQUANTIZE before the output); with it, input and output are int8 tensors (full-integer I/O), which
the runtime quantizes and dequantizes with their scale (runtimes.tflite_quant).

Methods: ai-edge-quantizer calibrates min/max ranges only, updated image by image with a moving average
(0.95) of each image's min/max (its default; on the bundled model it kept 0.5 AP points more than the
plain min/max over all images). That is our `moving_average`; the other methods are refused.

Calibration results (tensor name -> min/max, JSON) are cached under `req.cache`: a hit runs no image.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import tempfile
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from calibration import tflite_ops
from calibration.cache import CacheKey
from calibration.dataset import PREPROCESSING
from calibration.methods import Method
from calibration.request import QuantizeRequest, QuantizeResult
from calibration.tflite_ops import TfliteOp
from edge_sdk.atomic import write_bytes_atomic
from edge_sdk.hashing import sha256_of
from runtimes.errors import BackendUnavailableError, CalibrationError
from runtimes.threads import resolve_threads

ENGINE = "tflite"
#: pip extra that holds ai-edge-quantizer (it comes with litert-torch)
EXTRA = "tflite-export"
#: the calibration-result file stored in the cache
QSV_FILE = "tflite_qsvs.json"
#: our methods this quantizer has: its min/max calibration (a moving average of each image's range)
METHODS = (Method.MOVING_AVERAGE,)
RANGES = "moving average 0.95 of each image's min/max"
SCHEME = ("static int8 (ai-edge-quantizer static_wi8_ai8): weights int8 symmetric per-channel, activations "
          f"int8 per-tensor from min/max ranges ({RANGES})")


def quantize(req: QuantizeRequest) -> QuantizeResult:
    """Write the int8 .tflite of `req.artifact` at `req.out` (see the module doc)."""
    _check_method(req.method)
    aeq = _import_quantizer()
    float_model = req.artifact.read_bytes()
    ops = tflite_ops.read_ops(tflite_ops.interpreter(float_model))
    excluded, unmapped, nodes_of = _excluded_ops(req, ops)
    qt = aeq.quantizer.Quantizer(bytearray(float_model))
    _recipe(qt, aeq, excluded, req.int8_io)
    qsvs, hit = _calibration(req, qt, aeq, float_model, excluded)
    with _quiet():
        blob = bytes(qt.quantize(qsvs, enable_progress_bar=False, enable_progress_report=False).quantized_model)
    write_bytes_atomic(req.out, blob)
    kept, others = _float_left(blob, excluded)
    notes = [f"--exclude: no TFLite op computes ONNX node(s) {', '.join(unmapped)}"] if unmapped else []
    notes += _io_notes(blob, req.int8_io)
    return QuantizeResult(req.out, f"ai-edge-quantizer {_version('ai-edge-quantizer')}", _scheme(req.int8_io),
                          tuple(op.label for op in kept), tuple(op.label for op in others), hit, tuple(notes),
                          {"int8_io": req.int8_io, "excluded_in_float_model": nodes_of})


def _io_notes(blob: bytes, int8_io: bool) -> list[str]:
    """With int8 I/O asked for, say which graph outputs stayed float (computed by an excluded op)."""
    if not int8_io:
        return []
    outs = tflite_ops.interpreter(blob).get_output_details()
    left = [str(d["name"]) for d in outs if np.dtype(d["dtype"]) == np.float32]
    if not left:
        return []
    return [f"int8 I/O: output(s) {', '.join(left)} stay float32: the ops computing them are excluded "
            "(--exclude none makes them int8, at the cost of one scale shared by boxes and scores)"]


def _check_method(method: Method) -> None:
    if Method.parse(method) not in METHODS:
        raise CalibrationError(f"the tflite quantizer (ai-edge-quantizer) calibrates with "
                               f"{', '.join(m.value for m in METHODS)} only, not '{method}'")


def _import_quantizer() -> Any:
    try:
        return importlib.import_module("ai_edge_quantizer")
    except ImportError as exc:
        raise BackendUnavailableError(ENGINE, "ai-edge-quantizer", EXTRA, "needed to quantize to int8") from exc


def _scheme(int8_io: bool) -> str:
    io_text = "int8 input and output" if int8_io else "float32 input and output"
    return f"{SCHEME}; {io_text}; excluded ops float32"


def _excluded_ops(req: QuantizeRequest, ops: list[TfliteOp]) -> tuple[list[TfliteOp], list[str], dict[str, str]]:
    """The float .tflite's ops that compute the excluded ONNX nodes, the nodes no op computes, and
    each excluded op's ONNX node (by the op's label in the float model)."""
    if not req.exclude:
        return [], [], {}
    sample = next(req.calib.with_layout("nchw").arrays(limit=1), None)
    if sample is None:
        raise CalibrationError("the calibration set is empty")
    mapping = tflite_ops.onnx_nodes_of_ops(req.source, req.artifact, sample)
    tflite_ops.check_mapped(mapping, ops)
    found, unmapped = tflite_ops.ops_of_nodes(mapping, req.exclude, ops)
    if not found:
        raise CalibrationError(f"none of the {len(req.exclude)} excluded ONNX node(s) (e.g. "
                               f"{req.exclude[0]}) matches an op of {req.artifact.name}")
    return found, unmapped, {op.label: mapping[op.index][0] for op in found}


def _recipe(qt: Any, aeq: Any, excluded: list[TfliteOp], int8_io: bool) -> None:
    """static_wi8_ai8 on every op; the excluded ops (and, without int8 I/O, the graph's I/O) unquantized."""
    names = aeq.qtyping.TFLOperationName
    no_quant = aeq.algorithm_manager.AlgorithmName.NO_QUANTIZE
    qt.add_static_config(".*", names.ALL_SUPPORTED, 8, 8, aeq.qtyping.QuantGranularity.CHANNELWISE)
    if excluded:
        qt.update_quantization_recipe(tflite_ops.scope_regex(excluded), names.ALL_SUPPORTED, algorithm_key=no_quant)
    if not int8_io:
        for io_op in (names.INPUT, names.OUTPUT):
            qt.update_quantization_recipe(".*", io_op, algorithm_key=no_quant)


def _calibration(req: QuantizeRequest, qt: Any, aeq: Any, float_model: bytes,
                 excluded: list[TfliteOp]) -> tuple[dict[str, Any], bool]:
    """Per-tensor min/max: from the cache when it holds them for this key, else by running the images."""
    key = _cache_key(req, excluded)
    if req.cache is not None:
        found = req.cache.lookup(key, (QSV_FILE,))
        if found.files is not None:
            return load_qsvs(found.files[QSV_FILE]), True
    calib = aeq.calibrator.Calibrator(bytearray(float_model), num_threads=resolve_threads(req.threads))
    signature, arg = _signature_input(float_model)
    with _quiet():
        for array in req.calib.with_layout("nhwc").arrays():  # one image a call: the quantizer lists its data
            calib.calibrate({signature: [{arg: array}]}, qt._recipe_manager)
    qsvs: dict[str, Any] = calib.get_model_qsvs()
    if req.cache is not None:
        with tempfile.TemporaryDirectory(prefix="edgebench-tflite-qsv-") as tmp:
            path = Path(tmp) / QSV_FILE
            save_qsvs(qsvs, path)
            req.cache.store(key, {QSV_FILE: path})
    return qsvs, False


def _signature_input(model: bytes) -> tuple[str, str]:
    """The .tflite's signature and its (image) input argument, which calibration data is keyed by."""
    signatures = tflite_ops.interpreter(model).get_signature_list()
    if not signatures:
        raise CalibrationError("the float .tflite has no signature to calibrate through")
    name, spec = next(iter(signatures.items()))
    return str(name), str(spec["inputs"][0])


def _cache_key(req: QuantizeRequest, excluded: list[TfliteOp]) -> CacheKey:
    """What the calibration result depends on; the .tflite's own hash too (the ranges are keyed by its
    tensor names, which come from the converter)."""
    return CacheKey(sha256_of(req.source), req.calib.sha256, Method.parse(req.method).value, PREPROCESSING, ENGINE,
                    {p: _version(p) for p in ("ai-edge-quantizer", "ai-edge-litert")},
                    {"float_tflite_sha256": sha256_of(req.artifact), "excluded_ops": [op.label for op in excluded],
                     "int8_io": req.int8_io, "layout": "nhwc", "images": len(req.calib), "ranges": RANGES})


def save_qsvs(qsvs: dict[str, Any], path: Path) -> None:
    """Tensor name -> {min, max} as JSON (float32 values written exactly)."""
    data = {name: {k: _jsonable(v) for k, v in qsv.items()} for name, qsv in qsvs.items()}
    path.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")


def load_qsvs(path: Path) -> dict[str, Any]:
    """What `save_qsvs` wrote, arrays back in float32 (the same values the calibration produced)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {name: {k: _array(v) for k, v in qsv.items()} for name, qsv in data.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"dtype": value.dtype.name, "shape": list(value.shape), "data": value.reshape(-1).tolist()}
    return value.item() if isinstance(value, np.generic) else value


def _array(value: Any) -> Any:
    if isinstance(value, dict) and {"dtype", "shape", "data"} <= set(value):
        return np.asarray(value["data"], dtype=value["dtype"]).reshape(value["shape"])
    return value


def _float_left(blob: bytes, excluded: list[TfliteOp]) -> tuple[list[TfliteOp], list[TfliteOp]]:
    """The int8 model's float ops: those that compute an excluded op (same output tensor), and the others."""
    wanted = {name for op in excluded for name in op.outputs}
    floats = tflite_ops.float_ops(blob)
    kept = [op for op in floats if set(op.outputs) & wanted]
    return kept, [op for op in floats if not set(op.outputs) & wanted]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ai-edge-quantizer's progress bars and prints (Python-level) off."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        yield


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
