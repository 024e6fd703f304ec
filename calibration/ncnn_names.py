"""ONNX node names -> ncnn layer names, for the layers ncnn quantizes.

pnnx renames every layer (`/model.22/cv2.0/Conv` becomes `conv_121`) and may reorder them, so names
and positions do not carry over. Weights do: pnnx at fp32 copies each convolution's weights unchanged,
so an ONNX Conv/Gemm/MatMul is the ncnn layer whose weights are equal to its own (same element order; a
2-D weight also compared transposed). Weights that pnnx changed (fused into another op, or stored as
fp16) compare within a small tolerance; a node that still matches no layer, or more than one, is
reported as unmapped.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from calibration.ncnn_param import QUANTIZABLE, BinLayout, ParamFile, chunk_floats

_WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")
_RTOL, _ATOL = 1e-3, 1e-6  # fp16-stored weights are within ~5e-4 relative


@dataclass
class NameMap:
    """ONNX node -> ncnn layer for the nodes that were asked about; the weighted ones that matched nothing."""

    layers: dict[str, str] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)
    float_anyway: list[str] = field(default_factory=list)  # not a weighted op: float in ncnn whatever we do


def onnx_weights(model: onnx.ModelProto, names: Iterable[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The weight initializer of each named Conv/Gemm/MatMul node, and the names that are other ops."""
    wanted = set(names)
    inits = {i.name: i for i in model.graph.initializer}
    weights, other = {}, []
    for node in model.graph.node:
        if node.name not in wanted:
            continue
        init = inits.get(node.input[1]) if node.op_type in _WEIGHTED_OPS and len(node.input) > 1 else None
        if init is None:
            other.append(node.name)
        else:
            weights[node.name] = numpy_helper.to_array(init).astype(np.float32)
    return weights, other


def map_to_ncnn(model: onnx.ModelProto, names: Iterable[str], param: ParamFile, data: bytes,
                layout: BinLayout) -> NameMap:
    """Which ncnn layers the ONNX nodes `names` became (by weights), for the quantizable layers."""
    weights, other = onnx_weights(model, names)
    ncnn = {ly.name: chunk_floats(data, layout.chunks[ly.name][0], ly.name)
            for ly in param.layers if ly.type in QUANTIZABLE and layout.chunks.get(ly.name)}
    result = NameMap(float_anyway=other)
    for node, w in weights.items():
        hits = [name for name, v in ncnn.items() if _same(w, v)]
        if len(hits) == 1:
            result.layers[node] = hits[0]
        else:
            result.unmapped.append(node)
    return result


def _same(onnx_w: np.ndarray, ncnn_w: np.ndarray) -> bool:
    if onnx_w.size != ncnn_w.size:
        return False
    forms = [onnx_w.reshape(-1)] + ([onnx_w.T.reshape(-1)] if onnx_w.ndim == 2 else [])
    return any(np.allclose(f, ncnn_w, rtol=_RTOL, atol=_ATOL) for f in forms)
