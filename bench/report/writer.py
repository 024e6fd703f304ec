"""Benchmark reports: a JSON document with a schema version, plus a Markdown summary.

The report and its rows are typed (bench.report.rows: `Report`, `ResultRow` and their records);
`Report.to_dict()` is the JSON written. Shape (schema_version 1; extra fields are allowed anywhere)::

    {"schema_version", "tool", "tool_version", "created_utc", "command", "status",
     "profile", "host_matches_profile", "host_note", "environment", "model", "data",
     "settings", "results": [row, ...]}

A row (see `new_result`) holds backend, precision asked/used, threads, imgsz, status
("ok" | "skipped" | "failed"), error, latency_ms per stage, fps, memory and accuracy, and on
ok rows `budget_checks` / `reference_check` (see bench.report.budgets; optional when reading), and
`parity` (converters.parity.ParityResult.to_dict) on rows whose artifact was converted, and
`agreement` (bench.sweep.agreement: COCO stats against a reference configuration's detections, with
"kind": "agreement" and "reference"; never labelled mAP) when the run had --reference, and
`delegation` (bench.measure.runner.delegation_of: ops the delegate took, op types left on the CPU
kernels) for backends that report it (TFLite/XNNPACK), and `verified` (what hardware the row was verified on:
"device", "host proxy" or "not measurable"; null in reports written before it existed). Ok rows also carry
`latency_samples_ms.total` (per-iteration total latency, thinned to <= 5000 values, for plots); a row this host
could not run but whose artifact it converted carries `artifact_check` (bench.report.rows.ArtifactCheck). An int8
row carries `quantization` (bench.report.rows.Quantization) with its `route`: "ptq" (quantized by our calibration
route) or "qat" (the model carried `edgebench qat` metadata); its precision is shown as "int8-ptq" / "int8-qat"
(`ResultRow.precision_label`), while the row's "precision" key keeps what was asked.
"""
from __future__ import annotations

import json
import math
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.measure.environment import utc_now
from bench.measure.timing import PERCENTILE_METHOD
from bench.report.markdown import render_markdown, render_table
from bench.report.rows import (
    OPTIONAL_RESULT_KEYS,
    REPORT_KEYS,
    REPORT_STATUSES,
    RESULT_KEYS,
    ROW_STATUSES,
    SCHEMA_VERSION,
    TOOL,
    Report,
    ResultRow,
)
from edge_sdk.atomic import write_text_atomic
from runtimes.errors import ReportError

__all__ = [
    "SCHEMA_VERSION", "REPORT_KEYS", "RESULT_KEYS", "OPTIONAL_RESULT_KEYS", "ROW_STATUSES",
    "Report", "ResultRow", "new_report", "new_result",
    "validate_report", "write_report", "load_report", "render_markdown", "render_table",
]

_REQUIRED_RESULT_KEYS = tuple(k for k in RESULT_KEYS if k not in OPTIONAL_RESULT_KEYS)


def new_report(**fields: Any) -> Report:
    """A report with every top-level key: schema_version/tool/tool_version/created_utc/command
    filled in, `status` "partial", the rest empty; `fields` (records or plain data) override or add keys."""
    data: dict[str, Any] = {
        "tool_version": tool_version(),
        "created_utc": utc_now(),
        "command": list(sys.argv),
        "settings": {"warmup": None, "min_iterations": None, "min_duration_s": None,
                     "percentile_method": PERCENTILE_METHOD, "deploy": {}, "accuracy": {}},
    }
    data.update(fields)
    return Report.from_dict(data, "report")


def new_result(backend: str, precision: str, **fields: Any) -> ResultRow:
    """A result row with every key (status "ok", the rest None unless given in `fields`, as
    records or plain data).

    For a row that did not run: `new_result(b, p, status="failed", error="one line")`.
    """
    return ResultRow.from_dict({"backend": backend, "precision": precision, **fields}, f"row {backend}/{precision}")


def tool_version() -> str:
    """The installed edgebench version ("0+unknown" when not installed)."""
    try:
        return metadata.version(TOOL)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def validate_report(d: Any) -> None:
    """Raise ReportError naming the first missing key or wrong value in a report (a typed
    Report is checked as the JSON it writes)."""
    if isinstance(d, Report):
        d = d.to_dict()
    if not isinstance(d, dict):
        raise ReportError(f"report must be a JSON object, got {type(d).__name__}")
    if "schema_version" not in d:
        raise ReportError("report is missing 'schema_version'")
    if d["schema_version"] != SCHEMA_VERSION:
        raise ReportError(
            f"report schema_version is {d['schema_version']!r}; "
            f"this edgebench reads {SCHEMA_VERSION}"
        )
    _require_keys(d, REPORT_KEYS, "report")
    if d["status"] not in REPORT_STATUSES:
        raise ReportError(f"report status must be one of {REPORT_STATUSES}, got {d['status']!r}")
    if not isinstance(d["results"], list):
        raise ReportError("report 'results' must be a list")
    for i, row in enumerate(d["results"]):
        where = f"results[{i}]"
        if not isinstance(row, dict):
            raise ReportError(f"report {where} must be an object")
        _require_keys(row, _REQUIRED_RESULT_KEYS, f"report {where}")
        if row["status"] not in ROW_STATUSES:
            raise ReportError(
                f"report {where}.status must be one of {ROW_STATUSES}, got {row['status']!r}"
            )


def write_report(report: Report, out_dir: str | Path, stem: str = "report") -> tuple[Path, Path]:
    """Validate, then write `<stem>.json` and `<stem>.md` into `out_dir`; returns both paths.

    Both texts are rendered before anything touches the disk; each file is written atomically
    (temp + rename), the Markdown first and the JSON last, and the Markdown is removed again if
    the JSON cannot be written: a reader never finds a report.json without its summary, nor a
    half-written file.
    """
    data = report.to_dict()
    validate_report(data)
    md_text = render_markdown(report)
    json_text = _dumps(data)
    out = Path(out_dir)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    try:
        write_text_atomic(md_path, md_text)
        write_text_atomic(json_path, json_text)
    except OSError as exc:
        md_path.unlink(missing_ok=True)
        raise ReportError(f"cannot write report to {out}: {exc.strerror or exc}") from exc
    return json_path, md_path


def load_report(path: str | Path) -> Report:
    """Read and validate a report JSON into a Report; ReportError (one line naming the file) if unusable."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"report not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"cannot read report {p}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"report {p} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    try:
        validate_report(data)
        return Report.from_dict(data, "report")
    except ReportError as exc:
        raise ReportError(f"{p}: {exc}") from None


def _require_keys(d: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in d]
    if missing:
        raise ReportError(f"{where} is missing {', '.join(repr(k) for k in missing)}")


def _dumps(report: dict[str, Any]) -> str:
    """Strict JSON text: numpy scalars/arrays and paths converted, NaN/inf written as null."""
    try:
        return json.dumps(_jsonable(report), indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise ReportError(f"report is not JSON-serialisable: {exc}") from exc


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and type(obj).__module__ == "numpy":
        return _jsonable(obj.tolist())
    return obj
