"""Reading an ncnn model without ncnn's tools: the text .param (layers, their keys) and where each layer's
weights lie in the .bin.

The .bin has no index: each layer reads its arrays in layer order, either *tagged* (a 4-byte tag saying
fp32 / fp16 / int8, then the data padded to 4 bytes) or *raw* (float32, no tag). So the layout is
computed from each layer's keys; a layer type whose weights we do not know refuses the whole model, and
the total must come out at the file's size exactly.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from calibration.ncnn_table import read_text
from runtimes.errors import CalibrationError

MAGIC = "7767517"
TAG_FP32, TAG_FP16, TAG_INT8 = 0x00000000, 0x01306B47, 0x000D4B38
#: layers ncnn quantizes to int8 (weights and input activations)
QUANTIZABLE = ("Convolution", "ConvolutionDepthWise", "InnerProduct")
#: layer types that may read weights and whose layout is not handled here
_UNHANDLED_WEIGHTS = frozenset({
    "Bias", "Convolution1D", "Convolution3D", "ConvolutionDepthWise1D", "ConvolutionDepthWise3D",
    "Deconvolution1D", "Deconvolution3D", "DeconvolutionDepthWise1D", "DeconvolutionDepthWise3D",
    "DeformableConv2D", "Dequantize", "Embed", "Gemm", "GroupNorm", "GRU", "InstanceNorm", "LayerNorm", "LSTM",
    "MultiHeadAttention", "Normalize", "Padding", "Quantize", "Requantize", "RMSNorm", "RNN", "SDPA",
})


@dataclass(frozen=True)
class Layer:
    """One .param line: type, name, bottom and top blob names, and its `key=value` tokens as written."""

    type: str
    name: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: tuple[str, ...] = ()

    def get(self, key: int, default: float = 0) -> float:
        """A scalar key's value (default when absent)."""
        for token in self.params:
            k, _, v = token.partition("=")
            if k == str(key):
                return float(v)
        return default

    def geti(self, key: int, default: int = 0) -> int:
        return int(self.get(key, default))

    def with_key(self, key: int, value: int) -> Layer:
        """This layer with scalar `key` set to `value` (replaced in place, else appended)."""
        tokens = [t for t in self.params if t.partition("=")[0] != str(key)]
        return replace(self, params=(*tokens, f"{key}={value}"))

    def line(self) -> str:
        return " ".join([f"{self.type:<24}", f"{self.name:<24}", str(len(self.bottoms)), str(len(self.tops)),
                         *self.bottoms, *self.tops, *self.params]).rstrip()


@dataclass
class ParamFile:
    """A text .param: its layers in order (the blob count is recomputed on writing)."""

    layers: list[Layer]
    blob_count: int

    def text(self) -> str:
        return "\n".join([MAGIC, f"{len(self.layers)} {self.blob_count}", *(ly.line() for ly in self.layers)]) + "\n"

    def by_name(self) -> dict[str, Layer]:
        return {ly.name: ly for ly in self.layers}


def parse_param(text: str, where: str = ".param") -> ParamFile:
    """The layers of a text .param; CalibrationError when it is not one."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0].strip() != MAGIC:
        raise CalibrationError(f"{where} is not a text ncnn .param (no {MAGIC} magic)")
    try:
        n_layers, n_blobs = (int(v) for v in lines[1].split()[:2])
        layers = [_parse_line(ln) for ln in lines[2:]]
    except (ValueError, IndexError) as exc:
        raise CalibrationError(f"{where}: unreadable .param line ({exc})") from exc
    if len(layers) != n_layers:
        raise CalibrationError(f"{where} declares {n_layers} layers but has {len(layers)}")
    return ParamFile(layers, n_blobs)


def _parse_line(line: str) -> Layer:
    parts = line.split()
    nb, nt = int(parts[2]), int(parts[3])
    blobs = parts[4:4 + nb + nt]
    if len(blobs) != nb + nt:
        raise ValueError(f"layer {parts[1]} lists fewer blobs than it declares")
    return Layer(parts[0], parts[1], tuple(blobs[:nb]), tuple(blobs[nb:]), tuple(parts[4 + nb + nt:]))


def read_param(path: Path) -> ParamFile:
    return parse_param(read_text(path, "ncnn .param"), str(path))


@dataclass(frozen=True)
class Chunk:
    """One array a layer reads from the .bin: where, how many bytes (tag and padding included), how many
    elements, and the tag (None for raw float32)."""

    offset: int
    nbytes: int
    count: int
    tag: int | None = None


@dataclass
class BinLayout:
    """Each weighted layer's chunks, in .bin order."""

    chunks: dict[str, list[Chunk]] = field(default_factory=dict)

    def floats(self, data: bytes, name: str, index: int) -> np.ndarray:
        """Chunk `index` of layer `name` as float32 (fp16 and fp32 storage; int8 refused)."""
        return chunk_floats(data, self.chunks[name][index], name)


def chunk_floats(data: bytes, chunk: Chunk, name: str) -> np.ndarray:
    start = chunk.offset + (4 if chunk.tag is not None else 0)
    if chunk.tag in (None, TAG_FP32, 0x0002C056):
        return np.array(np.frombuffer(data, "<f4", chunk.count, start), np.float32)
    if chunk.tag == TAG_FP16:
        return np.asarray(np.frombuffer(data, "<f2", chunk.count, start), np.float32)
    raise CalibrationError(f"layer {name}: weights stored with tag {chunk.tag:#010x} (already quantized?); "
                           "quantize the float model")


def _reads(layer: Layer) -> list[tuple[bool, int]]:
    """(tagged, element count) of each array `layer` loads, in order (ncnn's load_model)."""
    t = layer.type
    if t in ("Convolution", "ConvolutionDepthWise", "Deconvolution", "DeconvolutionDepthWise", "InnerProduct"):
        return _conv_reads(layer)
    if t == "MemoryData":
        dims = [layer.geti(k) for k in (0, 1, 11, 2)]
        count = int(np.prod([d for d in dims if d])) if any(dims) else 0
        return [(layer.geti(21, 1) == 0, count)] if count else []
    if t == "BatchNorm":
        return [(False, layer.geti(0))] * 4
    if t == "Scale":
        size = layer.geti(0)
        return [] if size == -233 else [(False, size)] * (2 if layer.geti(1) else 1)
    if t == "PReLU":
        return [(False, layer.geti(0))]
    if t in _UNHANDLED_WEIGHTS:
        raise CalibrationError(f"layer {layer.name} ({t}): its .bin layout is not handled by the ncnn quantizer")
    return []


def _conv_reads(layer: Layer) -> list[tuple[bool, int]]:
    inner = layer.type == "InnerProduct"
    if not inner and layer.geti(19):  # dynamic weights come from a blob
        return []
    num_output = layer.geti(0)
    reads = [(True, layer.geti(2 if inner else 6))]
    if layer.geti(1 if inner else 5):
        reads.append((False, num_output))
    term = layer.geti(8)
    if term and layer.type in QUANTIZABLE:
        per = layer.geti(7, 1) if layer.type == "ConvolutionDepthWise" and term in (1, 101) else \
            1 if layer.type == "ConvolutionDepthWise" else num_output
        reads += [(False, per), (False, 1)] + ([(False, 1)] if term > 100 else [])
    return reads


def bin_layout(param: ParamFile, data: bytes, where: str = ".bin") -> BinLayout:
    """Where every layer's arrays lie in `data`; CalibrationError when the file does not add up."""
    layout, offset = BinLayout(), 0
    for layer in param.layers:
        for tagged, count in _reads(layer):
            chunk = _tagged_chunk(data, offset, count, layer.name, where) if tagged else Chunk(offset, 4 * count, count)
            layout.chunks.setdefault(layer.name, []).append(chunk)
            offset += chunk.nbytes
    if offset != len(data):
        raise CalibrationError(f"{where}: the layers read {offset} bytes but the file has {len(data)} "
                               "(a layer type with weights this quantizer does not know?)")
    return layout


def _tagged_chunk(data: bytes, offset: int, count: int, name: str, where: str) -> Chunk:
    if offset + 4 > len(data):
        raise CalibrationError(f"{where} ends before the weights of layer {name}")
    (tag,) = struct.unpack_from("<I", data, offset)
    if tag in (TAG_FP32, 0x0002C056):
        size = 4 * count
    elif tag == TAG_FP16:
        size = _align4(2 * count)
    elif tag == TAG_INT8:
        size = _align4(count)
    else:  # 256-entry lookup table, then one byte per weight
        size = 1024 + _align4(count)
    return Chunk(offset, 4 + size, count, tag)


def _align4(n: int) -> int:
    return (n + 3) // 4 * 4
