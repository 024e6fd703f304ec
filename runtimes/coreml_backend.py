"""Core ML backend: an ML Program (.mlpackage) or a neural network (.mlmodel) on coremltools' MLModel.

Prediction needs macOS (Core ML itself): on any other OS, opening a model is one line saying so
(HardwareUnavailableError); conversion and the package checks (converters.coreml) work everywhere.
The macOS path is written against coremltools 9's documented API and exercised here only with
MLModel replaced by a stand-in: unverified on Apple hardware.

Precision: from the ML Program itself, the type each compute op (conv, linear, matmul) computes in,
and int8 where its input comes out of a `dequantize` op (activation quantization); weight-only
compression (constexpr ops) leaves the compute precision as it is. A neural network .mlmodel has no
typed program: UNKNOWN. Compute units (ALL, CPU_AND_NE, CPU_AND_GPU, CPU_ONLY) are a load-time
choice: options.extra["compute_units"], else the one the converter stored, else ALL.
"""
from __future__ import annotations

import platform
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.base import Runtime, RuntimeOptions, TensorSpec, first_line
from runtimes.errors import HardwareUnavailableError, InputError, ModelLoadError
from runtimes.precision import LayerTally, Precision, tally
from runtimes.registry import import_engine

COMPUTE_UNITS = ("ALL", "CPU_AND_NE", "CPU_AND_GPU", "CPU_ONLY")
#: user-defined metadata key holding the compute units the converter was asked for
UNITS_KEY = "edgebench.compute_units"
#: MIL ops that carry the arithmetic; the type they compute in is the model's precision
COMPUTE_OPS = frozenset({"conv", "conv_transpose", "linear", "matmul"})
_DTYPES = {"FLOAT32": Precision.FP32, "FLOAT16": Precision.FP16, "BFLOAT16": Precision.BF16}
_ARRAY_DTYPES = {"FLOAT32": "float32", "FLOAT16": "float16", "DOUBLE": "float64", "INT32": "int32"}
_WHY = ("the compute precision is in the ML Program (its ops' types); convert with "
        "`edgebench export --to coreml --precision fp16|fp32`")


def prediction_unavailable() -> str | None:
    """Why this host cannot run Core ML predictions (not macOS), or None."""
    if sys.platform == "darwin":
        return None
    return (f"CoreML prediction needs macOS (this host runs {platform.system() or sys.platform}); "
            "conversion and package checks work here")


class CoremlRuntime(Runtime):
    """A Core ML model on macOS. Options.extra: compute_units (one of COMPUTE_UNITS)."""

    name = "coreml"

    def __init__(self, path: str | Path, options: RuntimeOptions | None = None) -> None:
        super().__init__(path, options)
        why = prediction_unavailable()
        if why:
            raise HardwareUnavailableError(why)
        self._ct = import_engine("coreml")
        self._lock = threading.Lock()
        self._spec = self._read_spec()
        self.compute_units = self._units()
        try:
            units = self._ct.ComputeUnit[self.compute_units]
            self._model = self._ct.models.MLModel(str(self.path), compute_units=units)
        except Exception as exc:  # Core ML raises untyped errors for bad packages
            raise ModelLoadError(f"cannot load Core ML model '{self.path}': {first_line(exc)}") from exc
        desc = self._spec.description
        self._inputs = [_spec(f) for f in desc.input]
        self._outputs = [_spec(f) for f in desc.output]
        self._tally = program_tally(self._spec)
        self._check_precision(_WHY)

    def _read_spec(self) -> Any:
        if not self.path.exists():
            raise ModelLoadError(f"model not found: {self.path}")
        try:
            return self._ct.utils.load_spec(str(self.path))
        except Exception as exc:  # protobuf and coremltools raise several untyped errors
            raise ModelLoadError(f"cannot read Core ML model '{self.path}': {first_line(exc)}") from exc

    def _units(self) -> str:
        stored = dict(self._spec.description.metadata.userDefined).get(UNITS_KEY)
        units = str(self.options.extra.get("compute_units") or stored or "ALL").upper()
        if units not in COMPUTE_UNITS:
            raise InputError(f"compute_units must be one of {', '.join(COMPUTE_UNITS)}, got '{units}'")
        return units

    def _run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        feed = {s.name: np.ascontiguousarray(a, dtype=s.dtype) for s, a in zip(self._inputs, inputs, strict=False)}
        with self._lock:
            out = self._model.predict(feed)
        return [np.asarray(out[s.name], dtype=np.float32) for s in self._outputs]

    def metadata(self) -> dict[str, str]:
        return {**super().metadata(), **dict(self._spec.description.metadata.userDefined)}

    @property
    def precision_used(self) -> Precision:
        """From the ML Program's compute ops (UNKNOWN for a neural network .mlmodel)."""
        return self._tally.precision if self._tally else Precision.UNKNOWN

    def engine_versions(self) -> dict[str, str]:
        return {"coremltools": str(self._ct.__version__)}

    def close(self) -> None:
        self._model = None


def _spec(feature: Any) -> TensorSpec:
    """A TensorSpec from a model description's multi-array feature."""
    array = feature.type.multiArrayType
    dtype = _ARRAY_DTYPES.get(array_dtype(array), "float32")
    return TensorSpec(feature.name, tuple(int(d) for d in array.shape), dtype)


def array_dtype(array: Any) -> str:
    """The element type name (FLOAT32, FLOAT16, ...) of a model description's multi-array type."""
    return str(array.DESCRIPTOR.fields_by_name["dataType"].enum_type.values_by_number[array.dataType].name)


def program_ops(spec: Any) -> Iterator[Any]:
    """Every operation of an ML Program spec's main function (nested blocks included); none for other types."""
    if spec.WhichOneof("Type") != "mlProgram" or "main" not in spec.mlProgram.functions:
        return
    main = spec.mlProgram.functions["main"]
    yield from _block_ops(main.block_specializations[main.opset])


def _block_ops(block: Any) -> Iterator[Any]:
    for op in block.operations:
        yield op
        for inner in op.blocks:
            yield from _block_ops(inner)


def program_tally(spec: Any) -> LayerTally | None:
    """The compute ops of an ML Program as the program types them (None for a non-program model)."""
    if spec.WhichOneof("Type") != "mlProgram":
        return None
    ops = list(program_ops(spec))
    producers = {out.name: op.type for op in ops for out in op.outputs}
    layers = []
    for op in ops:
        if op.type not in COMPUTE_OPS:
            continue
        x = op.inputs["x"].arguments[0].name if "x" in op.inputs and op.inputs["x"].arguments else ""
        layers.append(Precision.INT8 if producers.get(x) == "dequantize" else _op_dtype(op))
    return tally(layers)


def _op_dtype(op: Any) -> Precision:
    tensor = op.outputs[0].type.tensorType
    name = tensor.DESCRIPTOR.fields_by_name["dataType"].enum_type.values_by_number[tensor.dataType].name
    return _DTYPES.get(name, Precision.UNKNOWN)
