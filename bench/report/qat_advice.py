"""The QAT advice: when an int8 row made by our PTQ misses the mAP-drop budget (run and sweep reports, compare),
or `edgebench quantize` ends over its budget, the exact `edgebench qat` command that would address it: the model
as given (one of our checkpoints, or an ONNX our trainer exported: it is lifted into a checkpoint), its training
data, the row's backend as the target. A model QAT cannot start from (another tool's ONNX, an artifact, a model
already quantized) gets the reason instead of a command that would fail (bench.tasks.qat.source_checkpoint).
"""
from __future__ import annotations

import functools
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.report.rows import PTQ, BudgetCheck, Report, ResultRow
from runtimes.errors import EdgebenchError

__all__ = ["PRODUCER", "qat_advice", "needs_qat", "row_advice", "report_advice"]

#: ModelMeta extra["producer"] of the ONNX files our trainer exports (trainer.lift lifts only those)
PRODUCER = "edgebench.trainer"


def qat_advice(model: str | Path, data: str | Path | None, target: str, meta: Mapping[str, Any] | None = None,
               quantized: bool = False) -> str:
    """One line: the `edgebench qat` command for `model` (as given), `data` and `target`; or why QAT cannot
    start from `model` (`meta`: its ModelMeta as a dict; `quantized`: the model given was already int8)."""
    from bench.tasks.qat_targets import TARGETS

    path = Path(model)
    if target not in TARGETS:
        return f"QAT has no {target} target (edgebench qat --target: {', '.join(TARGETS)})"
    why = _why_not(path, meta or {}, quantized)
    data_arg, data_note = _data_arg(path, data, meta)

    def command(model_arg: str) -> str:
        return f"edgebench qat --model {model_arg}{data_arg} --target {target}"

    if why:
        return f"{why}: {command('FLOAT.ckpt')}" if quantized else why
    return f"try quantization-aware training: {command(shlex.quote(str(path)))}{data_note}"


def _why_not(path: Path, meta: Mapping[str, Any], quantized: bool) -> str:
    """Why `edgebench qat` cannot start from `path`, or ''."""
    if quantized:
        return f"{path.name} is already quantized: QAT starts from the float checkpoint or ONNX it was made from"
    if path.suffix.lower() == ".ckpt":
        return ""
    if path.suffix.lower() != ".onnx":
        return (f"QAT cannot start from {path.name}: edgebench qat fine-tunes our checkpoints (.ckpt) or an ONNX "
                "our trainer exported, not a converted artifact")
    extra = meta.get("extra") or {}
    if isinstance(extra, Mapping) and extra.get("producer") == PRODUCER and isinstance(extra.get("model"), Mapping):
        return ""  # what trainer.lift lifts into a checkpoint: our producer and the model's config
    return (f"QAT cannot start from {path.name}: it was not exported by edgebench's trainer, and edgebench qat "
            "fine-tunes only our checkpoints (.ckpt) or ONNX our trainer exported; keep more layers in float "
            "instead (edgebench quantize searches for them) or train the detector with edgebench train")


def _data_arg(model: Path, data: str | Path | None, meta: Mapping[str, Any] | None) -> tuple[str, str]:
    """(' --data D', note): `data` when it is a data.yaml with a labelled train split; nothing for the bundled
    model (QAT's default: its synthetic training set); else a placeholder and why."""
    if data is not None and _trainable(str(data)):
        return f" --data {shlex.quote(str(data))}", ""
    from bench.sweep.inputs import is_bundled_model

    if model.is_file() and is_bundled_model(model, meta):
        return "", ""
    where = f" ({data} has none)" if data else ""
    return " --data DATA.yaml", (" (DATA.yaml: the data the model was trained on; QAT fine-tunes on its train "
                                 f"split{where})")


@functools.lru_cache(maxsize=32)
def _trainable(data: str) -> bool:
    """Whether `data` is a data.yaml with labelled train images (what QAT fine-tunes on)."""
    if Path(data).suffix.lower() not in (".yaml", ".yml") or not Path(data).is_file():
        return False
    from edge_sdk.datasets import load_dataset

    try:
        train = load_dataset(data, "train", allow_unlabelled=True)
    except (EdgebenchError, OSError):
        return False
    return len(train) > 0 and train.labelled


def needs_qat(row: ResultRow, checks: Sequence[BudgetCheck] | None = None) -> bool:
    """Whether `row` is an int8 row of our PTQ whose mAP drop failed the budget (its own checks, or `checks`)."""
    checks = row.budget_checks if checks is None else checks
    return row.quant_route == PTQ and any(c.name == "map_drop" and c.status == "fail" for c in checks or ())


def row_advice(report: Report, row: ResultRow) -> str:
    """The advice for one row of `report`: its model and data, the row's backend."""
    quantized = bool(row.quantization is not None and row.quantization.as_stored)
    return qat_advice(report.model.path or "?", report.data.path, str(row.backend), report.model.meta, quantized)


def report_advice(report: Report) -> list[str]:
    """'backend precision: advice' for each PTQ int8 row over the mAP-drop budget (one per distinct line)."""
    lines = [f"{row.backend} {row.precision_text} is over the mAP-drop budget; {row_advice(report, row)}"
             for row in report.results if needs_qat(row)]
    return list(dict.fromkeys(lines))
