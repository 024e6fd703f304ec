"""Float <-> int8/uint8 conversion with a TFLite tensor's per-tensor scale and zero point (no engine import)."""
from __future__ import annotations

from typing import Any

import numpy as np

_INT_TYPES = (np.int8, np.uint8, np.int16)


def _params(detail: dict[str, Any]) -> tuple[float, int]:
    """(scale, zero_point) of a quantized tensor; scale 0 means "not quantized"."""
    scale, zero = detail.get("quantization", (0.0, 0))
    return float(scale), int(zero)


def is_quantized(detail: dict[str, Any]) -> bool:
    """True for an integer tensor that carries a quantization scale."""
    return np.dtype(detail["dtype"]).type in _INT_TYPES and _params(detail)[0] != 0.0


def quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """x for the tensor described by `detail`: quantized for int tensors, cast for float ones."""
    dtype = np.dtype(detail["dtype"])
    if not is_quantized(detail):
        return x.astype(dtype, copy=False)
    scale, zero = _params(detail)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """A tensor read from the engine as float32 (dequantized when it carries a scale)."""
    if not is_quantized(detail):
        return q.astype(np.float32, copy=False)
    scale, zero = _params(detail)
    return ((q.astype(np.float32) - zero) * scale).astype(np.float32)
