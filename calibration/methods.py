"""Calibration methods: how activation ranges are chosen from the calibration images."""
from __future__ import annotations

from enum import Enum

from runtimes.errors import InputError


class Method(str, Enum):
    """minmax: the observed range over all images; moving_average: each image's range, averaged image by
    image (ai-edge-quantizer's default; ORT's CalibMovingAverage); percentile: clip the tails; entropy:
    the range that minimises the KL divergence of the quantized histogram (TensorRT/ncnn-style);
    distribution: ORT's distribution-based range."""

    MINMAX = "minmax"
    MOVING_AVERAGE = "moving_average"
    PERCENTILE = "percentile"
    ENTROPY = "entropy"
    DISTRIBUTION = "distribution"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, name: object) -> Method:
        """A method from its name (case-insensitive); InputError listing the valid ones."""
        if isinstance(name, Method):
            return name
        text = str(name).strip().lower()
        for member in cls:
            if member.value == text:
                return member
        raise InputError(f"unknown calibration method '{name}' (valid: {', '.join(m.value for m in cls)})")


DEFAULT_METHOD = Method.MINMAX
#: what `--calib-method auto` means per engine (the method each engine's quantizer does best here, by the
#: measurements in docs/quantization.md); engines not listed: DEFAULT_METHOD
AUTO = "auto"
ENGINE_DEFAULTS: dict[str, Method] = {"tflite": Method.MOVING_AVERAGE, "onnxruntime": Method.PERCENTILE}


def resolve_method(name: object, engine: str) -> Method:
    """`name` as a Method; "auto" (or None) is the engine's default (ENGINE_DEFAULTS)."""
    if name is None or str(name).strip().lower() == AUTO:
        return ENGINE_DEFAULTS.get(engine, DEFAULT_METHOD)
    return Method.parse(name)
