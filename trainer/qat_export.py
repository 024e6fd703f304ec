"""Export a fake-quantized (QAT) detector to a Q/DQ ONNX that carries its learned scales."""
from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from converters.qat_fold import FoldStats, fold_qat_graph
from edge_sdk.meta import ModelMeta
from trainer.export import save_with_meta
from trainer.qat_model import quantizers, set_qdq_export

INPUT_NAME, OUTPUT_NAME = "images", "output0"
#: QuantizeLinear with per-axis scales needs opset 13; 17 as our float exports.
OPSET = 17


def export_qat_onnx(model: nn.Module, out: str | Path, imgsz: int, meta: ModelMeta,
                    extra: dict[str, Any] | None = None) -> tuple[Path, FoldStats]:
    """`model` (NNCF-wrapped, any mode) -> Q/DQ ONNX at `out` with `meta` (+ `extra`) in its metadata; the
    model is left in eval mode. Weights int8 with BN folded (converters.qat_fold)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    set_qdq_export(model)
    model.eval()
    dummy = torch.zeros(1, 3, imgsz, imgsz)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp, snapped_weights(model, dummy):
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
            torch.onnx.export(model, (dummy,), str(raw), opset_version=OPSET, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], do_constant_folding=True, dynamo=False)
        proto = onnx.load(str(raw))
    stats = fold_qat_graph(proto)
    meta.precision = "int8"
    meta.extra = {**meta.extra, **(extra or {})}
    return save_with_meta(proto, out, meta), stats


@contextmanager
def snapped_weights(model: nn.Module, example: torch.Tensor) -> Iterator[int]:
    """Inside: every fake-quantized weight holds its quantized value (restored after), so the exporter's
    QuantizeLinear gives exactly the integers training used, not a re-rounding that can flip a tie."""
    params = {p.data_ptr(): p for p in model.parameters()}
    snapped: dict[int, torch.Tensor] = {}

    def record(_: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        ptr = inputs[0].data_ptr()
        if ptr in params and ptr not in snapped:
            snapped[ptr] = output.detach().clone()

    hooks = [q.register_forward_hook(record) for q in quantizers(model).values()]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    saved = {ptr: params[ptr].detach().clone() for ptr in snapped}
    try:
        with torch.no_grad():
            for ptr, value in snapped.items():
                params[ptr].copy_(value)
        yield len(snapped)
    finally:
        with torch.no_grad():
            for ptr, value in saved.items():
                params[ptr].copy_(value)
