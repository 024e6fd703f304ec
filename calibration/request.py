"""What every engine's quantizer takes and returns (calibration.ort, .openvino, .tflite, .ncnn)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from calibration.cache import CalibrationCache
from calibration.dataset import CalibrationSet
from calibration.methods import Method


@dataclass(frozen=True)
class QuantizeRequest:
    """One PTQ job for one engine.

    `source` is the float32 ONNX (calibration.onnx_prep) whose node names `exclude` uses; `artifact` is
    the engine's float artifact made from it (the same file for ONNX Runtime, the IR for OpenVINO, the
    .tflite for LiteRT, the .param for ncnn); the quantizer writes the int8 artifact at `out` (and the
    files an artifact keeps beside it). Each engine maps `exclude` to its own form (Q/DQ left out, an
    NNCF ignored scope, per-op float for TFLite and ncnn) and reports the names it used."""

    source: Path
    artifact: Path
    out: Path
    calib: CalibrationSet
    method: Method
    exclude: tuple[str, ...] = ()
    int8_io: bool = False  # full-integer I/O (TFLite), where the engine has it
    cache: CalibrationCache | None = None  # None: no caching
    threads: int | None = None


@dataclass
class QuantizeResult:
    """The int8 artifact written, and its provenance (stored in the artifact's sidecar)."""

    path: Path
    quantizer: str  # package and version, e.g. "onnxruntime.quantization 1.32.0"
    scheme: str  # e.g. "QDQ, weights int8 per-channel symmetric, activations uint8 per-tensor"
    excluded: tuple[str, ...] = ()  # what was kept in float, in the engine's own names
    float_ops: tuple[str, ...] = ()  # ops the engine left in float (beyond the excluded ones, when known)
    cache_hit: bool = False
    notes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        for key in ("excluded", "float_ops", "notes"):
            data[key] = list(data[key])
        return data


#: An engine's PTQ entry point.
Quantizer = Callable[[QuantizeRequest], QuantizeResult]
