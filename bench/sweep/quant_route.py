"""How an int8 row's artifact was made, set where the rows of a run or sweep are built.

A row this run quantized carries converters.int8's record: PTQ. A row that runs the given, already quantized
model as it is (ONNX Runtime on a Q/DQ ONNX, OpenVINO converting its Q/DQ graph as stored) takes the model's own
record: the QAT metadata `edgebench qat` writes (ModelMeta extra["quantization"], method "qat"), else the int8
record of the model's sidecar (converters.int8's PTQ, or a QAT model converted for TFLite / ncnn, whose method
says "qat"). A quantized model with neither is of unknown origin: its rows get no record and show plain int8.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from bench.report.rows import QAT, Quantization, ResultRow

__all__ = ["QUANTIZED", "model_quantization", "mark_route"]

#: precisions of a quantized model or row
QUANTIZED = ("int8", "mixed")


class _RunModel(Protocol):
    """A run's context (bench.sweep.run.RunContext), as far as the route needs it."""

    @property
    def model(self) -> Path: ...

    @property
    def model_meta(self) -> dict[str, Any]: ...

    @property
    def model_precision(self) -> str: ...


def model_quantization(model: Path, meta: Mapping[str, Any]) -> Quantization | None:
    """The quantization record of an already quantized `model` (its metadata `meta`): QAT metadata, else its
    sidecar's int8 record; None when it has neither."""
    extra = meta.get("extra") or {}
    qat = extra.get("quantization") if isinstance(extra, Mapping) else None
    if isinstance(qat, Mapping) and str(qat.get("method") or "").startswith(QAT):
        record = Quantization.from_dict(dict(qat), f"{model.name}: quantization metadata")
    else:
        from converters.int8 import read_provenance

        found = read_provenance(model)
        if found is None:
            return None
        record = Quantization.from_dict(found, f"{model.name}: int8 sidecar record")
    record.route, record.as_stored = record.made_by, True
    return record


def mark_route(row: ResultRow, ctx: _RunModel) -> ResultRow:
    """Set the row's route: on its own quantization record, or from the model's when the row asks int8 of an
    already quantized model (which it runs as it is). The row, for chaining."""
    if row.quantization is not None:
        row.quantization.route = row.quantization.made_by
        return row
    asked = str(getattr(row.precision, "value", row.precision))
    if asked in QUANTIZED and ctx.model_precision in QUANTIZED:
        row.quantization = model_quantization(ctx.model, ctx.model_meta)
    return row
