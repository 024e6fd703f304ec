"""Quantizers on convolution outputs, for the targets that compute them in int8.

NNCF places quantizers on layer inputs only (OpenVINO, TensorRT and ncnn compute a convolution's output in
float or fuse it). ONNX Runtime fuses DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv only when the
output is quantized, and full-integer TFLite requantizes every convolution output to int8. For those targets
each convolution's output (after its BatchNorm, i.e. what the folded convolution computes) gets a trainable
asymmetric 8-bit quantizer with its range from the calibration images, so training sees the rounding the
engine does and the export carries a learned scale there too.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn

#: targets whose engines quantize convolution outputs
REQUANTIZED_TARGETS = ("onnxruntime", "tflite")


def output_points(names: Sequence[str], ignored: Sequence[str]) -> tuple[str, ...]:
    """NNCF op names whose output is a convolution's result: the BatchNorm after each Conv block, and a
    convolution with no BatchNorm (the head's last ones) unless it stays float."""
    skip = set(ignored)
    bns = [n for n in names if "/batch_norm/" in n and n not in skip]
    bare = [n for n in names if n.startswith("head/2/conv2d/") and n not in skip]
    return tuple(bns + bare)


class _Range(nn.Module):
    """Records the min and max of what passes through (a statistics hook)."""

    def __init__(self) -> None:
        super().__init__()
        self.low, self.high = float("inf"), float("-inf")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.low, self.high = min(self.low, float(x.min())), max(self.high, float(x.max()))
        return x


def add_output_quantizers(model: nn.Module, points: Sequence[str], calib: Iterable[np.ndarray]) -> int:
    """Register a min/max-initialised asymmetric quantizer on output 0 of each op in `points`."""
    from nncf.common.quantization.structs import QuantizationScheme
    from nncf.torch.function_hook.wrapper import register_post_function_hook
    from nncf.torch.quantization.layers import AsymmetricQuantizer, PTQuantizerSpec

    ranges = {p: _Range() for p in points}
    handles = [register_post_function_hook(model, p, 0, r) for p, r in ranges.items()]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for x in calib:
            model(torch.from_numpy(np.ascontiguousarray(x)))
    for h in handles:
        h.remove()
    for point, r in ranges.items():
        spec = PTQuantizerSpec(8, QuantizationScheme.ASYMMETRIC, None, False, False, (1,), False)
        quantizer = AsymmetricQuantizer(spec)
        low, high = (r.low, r.high) if r.high > r.low else (min(r.low, 0.0), max(r.high, 0.0) + 1e-3)
        with torch.no_grad():
            quantizer.input_low.fill_(min(low, 0.0))
            quantizer.input_range.fill_(max(high, 0.0) - min(low, 0.0))
        register_post_function_hook(model, point, 0, quantizer)
    model.train(was_training)
    return len(ranges)
