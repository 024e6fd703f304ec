"""ncnn INT8 post-training quantization, without ncnn's tools (no wheel ships ncnn2table/ncnn2int8).

The float .param/.bin (pnnx, fp32) runs in ncnn on the calibration images; each Convolution /
ConvolutionDepthWise / InnerProduct input blob's statistics give its activation scale (minmax: absmax;
entropy: KL divergence over a 2048-bin histogram; percentile: the 99.99th of |x|); the weights give
per-output-channel scales. Both go into an ncnn calibration table (kept beside the artifact as
`<name>.table`, and in the calibration cache), from which the int8 .param/.bin is written in ncnn's own
format (calibration.ncnn_int8). Excluded layers and every non-convolution layer stay float: ncnn
dequantizes each int8 convolution's output, so the Swish (SiLU), Sigmoid, Softmax and decode layers
after it run in float.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from calibration.cache import CacheKey
from calibration.dataset import PREPROCESSING
from calibration.methods import Method
from calibration.ncnn_int8 import WINOGRAD_MAX, Int8Model, weight_scales, write_int8_model
from calibration.ncnn_names import map_to_ncnn
from calibration.ncnn_param import QUANTIZABLE, BinLayout, Layer, ParamFile, bin_layout, read_param
from calibration.ncnn_stats import BINS, PERCENTILE, activation_threshold, collect_stats, open_float_net
from calibration.ncnn_table import CalibrationTable, read_table, write_table
from calibration.request import QuantizeRequest, QuantizeResult
from edge_sdk.atomic import write_json_atomic
from edge_sdk.hashing import sha256_of
from runtimes.base import read_sidecar_json, sidecar_path
from runtimes.errors import BackendUnavailableError, CalibrationError
from runtimes.threads import resolve_threads

#: bump when the table this module computes changes for the same inputs
QUANTIZER_VERSION = "2"  # 2: whole-number weight scales for whole-number channels (the DFL)
METHODS = (Method.MINMAX, Method.ENTROPY, Method.PERCENTILE)
TABLE_NAME = "calibration.table"
_NOT_COMPUTE = frozenset({"Input", "Split", "Concat", "Slice", "Reshape", "Permute", "MemoryData", "Flatten",
                          "Crop", "Noop"})


@dataclass
class FloatModel:
    """The float .param/.bin as read, and its quantizable layers (in .param order)."""

    param_path: Path
    bin_path: Path
    param: ParamFile
    data: bytes
    layout: BinLayout

    def quantizable(self) -> list[Layer]:
        return [ly for ly in self.param.layers if ly.type in QUANTIZABLE and self.layout.chunks.get(ly.name)]

    def input_blob(self) -> str:
        inputs = [ly.tops[0] for ly in self.param.layers if ly.type == "Input"]
        if len(inputs) != 1:
            raise CalibrationError(f"'{self.param_path.name}' has {len(inputs)} inputs; ncnn calibration takes one")
        return inputs[0]


def quantize(req: QuantizeRequest) -> QuantizeResult:
    """Calibrate the float ncnn model `req.artifact` on `req.calib` and write the int8 one at `req.out`."""
    ncnn = _engine()
    method = _check_method(req.method)
    model = read_float_model(Path(req.artifact))
    excluded, notes = excluded_layers(req, model)
    table, hit = _full_table(req, ncnn, model, method)
    table = table.without(excluded)
    out = Path(req.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table_path = write_table(out.with_suffix(".table"), table)
    written = write_int8_model(model.param, model.data, model.layout, table, out, out.with_suffix(".bin"))
    _write_sidecar(model.param_path, out)
    return _result(req, ncnn, model, written, excluded, table_path, hit, notes)


def _engine() -> Any:
    try:
        import ncnn
    except ImportError as exc:
        raise BackendUnavailableError("ncnn", "ncnn", "ncnn", "to calibrate and quantize for ncnn") from exc
    return ncnn


def _check_method(method: Method) -> Method:
    method = Method.parse(method)
    if method not in METHODS:
        raise CalibrationError(f"the ncnn quantizer has no '{method}' method (it has "
                               f"{', '.join(m.value for m in METHODS)})")
    return method


def read_float_model(param_path: Path) -> FloatModel:
    """The float model's .param, .bin bytes and weight layout; CalibrationError when already quantized."""
    bin_path = param_path.with_suffix(".bin")
    param = read_param(param_path)
    try:
        data = bin_path.read_bytes()
    except OSError as exc:
        raise CalibrationError(f"cannot read the ncnn weights '{bin_path}': {exc}") from exc
    quantized = [ly.name for ly in param.layers if ly.type in QUANTIZABLE and ly.geti(8)]
    if quantized:
        raise CalibrationError(f"'{param_path.name}' is already quantized ({quantized[0]} has int8_scale_term); "
                               "quantize the float model")
    return FloatModel(param_path, bin_path, param, data, bin_layout(param, data, str(bin_path)))


def excluded_layers(req: QuantizeRequest, model: FloatModel) -> tuple[set[str], list[str]]:
    """The ncnn layers `req.exclude` (ONNX node names) became, and notes on what could not be mapped."""
    if not req.exclude:
        return set(), []
    onnx_model = onnx.load(str(req.source))
    mapped = map_to_ncnn(onnx_model, req.exclude, model.param, model.data, model.layout)
    notes = []
    if mapped.unmapped:
        raise CalibrationError(f"cannot find the ncnn layer of excluded ONNX node(s) {', '.join(mapped.unmapped[:3])} "
                               "(matched by weights: pnnx changed them); they would be quantized")
    if mapped.float_anyway:
        notes.append(f"{len(mapped.float_anyway)} excluded ONNX node(s) are not convolutions: ncnn runs them in "
                     "float anyway")
    return set(mapped.layers.values()), notes


def cache_key(req: QuantizeRequest, ncnn: Any, model: FloatModel, method: Method) -> CacheKey:
    """What the full calibration table depends on (exclusions do not: they filter it afterwards)."""
    settings: dict[str, Any] = {"param_sha256": sha256_of(model.param_path), "bin_sha256": sha256_of(model.bin_path),
                                "winograd_weight_levels": WINOGRAD_MAX, "histogram_bins": BINS}
    if method is Method.PERCENTILE:
        settings["percentile"] = PERCENTILE
    return CacheKey(sha256_of(req.source), req.calib.sha256, method.value, PREPROCESSING, "ncnn",
                    {"ncnn": str(ncnn.__version__), "edgebench-ncnn-quantizer": QUANTIZER_VERSION}, settings)


def _full_table(req: QuantizeRequest, ncnn: Any, model: FloatModel, method: Method) -> tuple[CalibrationTable, bool]:
    """Every quantizable layer's scales: from the cache when it has them, else calibrated (and stored)."""
    key = cache_key(req, ncnn, model, method) if req.cache is not None else None
    if req.cache is not None and key is not None:
        found = req.cache.lookup(key, (TABLE_NAME,))
        if found.files is not None:
            return read_table(found.files[TABLE_NAME]), True
    table = calibrate(ncnn, model, req, method)
    if req.cache is not None and key is not None:
        with tempfile.TemporaryDirectory(prefix="edgebench-ncnn-table.") as tmp:
            req.cache.store(key, {TABLE_NAME: write_table(Path(tmp) / TABLE_NAME, table)})
    return table, False


def calibrate(ncnn: Any, model: FloatModel, req: QuantizeRequest, method: Method) -> CalibrationTable:
    """The calibration table of every quantizable layer of `model`."""
    layers = model.quantizable()
    if not layers:
        raise CalibrationError(f"'{model.param_path.name}' has no Convolution/InnerProduct layers to quantize")
    blobs = list(dict.fromkeys(ly.bottoms[0] for ly in layers))
    net = open_float_net(ncnn, model.param_path, model.bin_path, resolve_threads(req.threads))
    try:
        stats = collect_stats(ncnn, net, model.input_blob(), blobs, req.calib.arrays,
                              histogram=method is not Method.MINMAX)
    finally:
        net.clear()
    table = CalibrationTable()
    for ly in layers:
        table.weights[ly.name] = weight_scales(ly, model.layout.floats(model.data, ly.name, 0))
    for ly in layers:
        threshold = activation_threshold(stats[ly.bottoms[0]], method)
        table.inputs[ly.name] = float(np.float32(127.0 / threshold)) if threshold > 0 else 1.0
    return table


def _write_sidecar(float_param: Path, out: Path) -> None:
    """The float model's sidecar (blob names, input size, metadata) for the int8 model, marked int8."""
    side = read_sidecar_json(float_param)
    if side:
        write_json_atomic(sidecar_path(out), {**side, "precision": "int8", "weights_storage": "int8"})


def _result(req: QuantizeRequest, ncnn: Any, model: FloatModel, written: Int8Model, excluded: set[str],
            table_path: Path, hit: bool, notes: list[str]) -> QuantizeResult:
    quantized = set(written.quantized)
    float_layers = [ly for ly in model.param.layers if ly.name not in quantized and ly.type not in _NOT_COMPUTE]
    float_ops = tuple(dict.fromkeys(f"{ly.type}" for ly in float_layers if ly.name not in excluded))
    scheme = (f"ncnn int8: weights int8 symmetric per output channel ({WINOGRAD_MAX}/absmax, 6-bit, for 3x3 "
              f"stride-1 convolutions: ncnn's int8 Winograd), activations int8 symmetric per tensor "
              f"({Method.parse(req.method).value}), dequantized to float after each int8 layer")
    return QuantizeResult(
        path=Path(req.out), quantizer=f"edgebench ncnn table+int8 writer {QUANTIZER_VERSION} (ncnn {ncnn.__version__})",
        scheme=scheme, excluded=tuple(ly.name for ly in model.quantizable() if ly.name in excluded),
        float_ops=float_ops, cache_hit=hit,
        notes=(*notes, f"{len(quantized)} of {len(model.quantizable())} convolution/inner-product layers int8; "
               "activations (Swish/SiLU, Sigmoid, Softmax) and the decode run in float"),
        extra={"table": str(table_path), "quantized_layers": len(quantized)})
