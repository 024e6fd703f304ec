"""Calibration methods: how activation ranges are chosen from the calibration images."""
from __future__ import annotations

from enum import Enum

from runtimes.errors import InputError


class Method(str, Enum):
    """minmax: the observed range; percentile: clip the tails (99.99th by default); entropy: the range
    that minimises the KL divergence of the quantized histogram (TensorRT/ncnn-style); distribution:
    ORT's distribution-based range (mean/std of the histogram)."""

    MINMAX = "minmax"
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
