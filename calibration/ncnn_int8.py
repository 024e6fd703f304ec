"""The int8 ncnn model, written from a float .param/.bin and a calibration table (what ncnn2int8 does).

A quantized layer gets `8=<int8_scale_term>` in the .param (2 for Convolution / InnerProduct: one weight
scale per output channel; 1 for ConvolutionDepthWise: one per group) and, in the .bin, its weights as
int8 (tag 0x000D4B38, one byte each, padded to 4), its float bias unchanged, then its weight scales and
its input scale as raw float32. ncnn then quantizes the layer's float input with that scale, runs the
integer convolution and writes a float (dequantized) output, so a following Swish/Sigmoid/Softmax runs
in float as before. Every other layer is copied byte for byte. Requantization (`8=1xx`: int8 output
for a directly following int8 convolution) is not written.

Weight scales follow ncnn2table: 127 / absmax per output channel, but 31 / absmax (6-bit) for 3x3
stride-1 convolutions, which ncnn runs with its int8 Winograd F(4,3) kernels.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibration.ncnn_param import QUANTIZABLE, TAG_INT8, BinLayout, Layer, ParamFile, chunk_floats
from calibration.ncnn_table import CalibrationTable
from edge_sdk.atomic import write_bytes_atomic, write_text_atomic
from runtimes.errors import CalibrationError

INT8_MAX = 127
WINOGRAD_MAX = 31  # 6-bit weights for ncnn's int8 Winograd F(4,3)


@dataclass(frozen=True)
class Int8Model:
    """What was written: the layers quantized, in .param order."""

    param: Path
    weights: Path
    quantized: tuple[str, ...]


def winograd_conv(layer: Layer) -> bool:
    """A 3x3, stride-1, dilation-1 Convolution (ncnn's int8 Winograd candidates)."""
    if layer.type != "Convolution":
        return False
    kw = layer.geti(1)
    kh = layer.geti(11, kw)
    sw, dw = layer.geti(3, 1), layer.geti(2, 1)
    return (kw, kh, sw, layer.geti(13, sw), dw, layer.geti(12, dw)) == (3, 3, 1, 1, 1, 1)


def weight_groups(layer: Layer) -> int:
    """How many weight scales the layer takes: output channels, or groups for a depthwise convolution."""
    return layer.geti(7, 1) if layer.type == "ConvolutionDepthWise" else layer.geti(0)


def weight_scales(layer: Layer, weights: np.ndarray, six_bit_winograd: bool = True) -> np.ndarray:
    """Per output channel (per group) scales = levels / absmax; 0 for an all-zero channel. A channel of whole
    numbers that fit (a fixed layer such as the DFL's 1x1 convolution with weights 0..15) gets the largest
    whole-number scale instead, so each weight is an exact int8 code: 15 -> 8 x 15 = 120, where 127 / 15 would
    put 1, 2, 3 on 0.945, 2.008, 2.953."""
    rows = weights.reshape(weight_groups(layer), -1).astype(np.float64)
    absmax = np.abs(rows).max(axis=1)
    levels = WINOGRAD_MAX if six_bit_winograd and winograd_conv(layer) else INT8_MAX
    scales = np.divide(levels, absmax, out=np.zeros_like(absmax), where=absmax > 0)
    whole = np.all(rows == np.round(rows), axis=1) & (absmax > 0) & (absmax <= levels)
    scales[whole] = np.floor(scales[whole])
    return np.asarray(scales, np.float32)


def quantize_weights(weights: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """int8 codes: round half away from zero of w * scale, clipped to [-127, 127] (ncnn's float2int8)."""
    rows = weights.reshape(scales.size, -1).astype(np.float64) * scales.astype(np.float64)[:, None]
    codes = np.sign(rows) * np.floor(np.abs(rows) + 0.5)
    return np.asarray(np.clip(codes, -INT8_MAX, INT8_MAX), np.int8).reshape(-1)


def int8_scale_term(layer: Layer) -> int:
    return 1 if layer.type == "ConvolutionDepthWise" else 2


def write_int8_model(param: ParamFile, data: bytes, layout: BinLayout, table: CalibrationTable,
                     out_param: Path, out_bin: Path) -> Int8Model:
    """Write the quantized model: the table's layers int8, everything else as it was."""
    wanted = set(table.layers())
    by_name = param.by_name()
    unknown = sorted(n for n in wanted if n not in by_name or by_name[n].type not in QUANTIZABLE)
    if unknown:
        raise CalibrationError(f"the calibration table names layers that are not quantizable layers of the model: "
                               f"{', '.join(unknown[:5])}")
    layers, chunks, done = [], [], []
    for layer in param.layers:
        parts = layout.chunks.get(layer.name, [])
        if layer.name in wanted:
            layers.append(layer.with_key(8, int8_scale_term(layer)))
            chunks.append(_int8_layer_bytes(layer, data, layout, table))
            done.append(layer.name)
        else:
            layers.append(layer)
            chunks.extend(data[c.offset:c.offset + c.nbytes] for c in parts)
    write_bytes_atomic(out_bin, b"".join(chunks))
    write_text_atomic(out_param, ParamFile(layers, param.blob_count).text())
    return Int8Model(out_param, out_bin, tuple(done))


def _int8_layer_bytes(layer: Layer, data: bytes, layout: BinLayout, table: CalibrationTable) -> bytes:
    """A quantized layer's .bin bytes: tagged int8 weights, the bias as it was, weight and input scales."""
    parts = layout.chunks.get(layer.name, [])
    if not parts:
        raise CalibrationError(f"layer {layer.name} has no weights in the .bin (dynamic weights cannot be quantized)")
    scales = np.asarray(table.weights[layer.name], np.float32)
    if scales.size != weight_groups(layer):
        raise CalibrationError(f"layer {layer.name}: the table has {scales.size} weight scales, the layer needs "
                               f"{weight_groups(layer)}")
    codes = quantize_weights(chunk_floats(data, parts[0], layer.name), scales)
    weight = struct.pack("<I", TAG_INT8) + codes.tobytes() + b"\0" * (-codes.size % 4)
    bias = b"".join(data[c.offset:c.offset + c.nbytes] for c in parts[1:])
    input_scale = struct.pack("<f", table.inputs[layer.name])
    return weight + bias + scales.astype("<f4").tobytes() + input_scale
