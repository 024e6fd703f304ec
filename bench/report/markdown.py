"""Human-readable views of a report: a Markdown summary and a fixed-width terminal table."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.report.budgets import verdict
from bench.report.rows import STAGES, LatencyStats, Parity, Report, ResultRow
from bench.report.sustained import markdown_lines as sustained_lines

STAGE_LABELS = {"preprocess": "pre", "inference": "infer", "postprocess": "post", "total": "total"}
HEADERS = (
    "backend", "precision asked/used", "threads", "imgsz", "FPS",
    *(f"{STAGE_LABELS[s]} p50/p95/p99 ms" for s in STAGES),
    "peak RSS MiB", "model MiB", "AP50-95", "AP50", "agreement mAP", "status",
)
#: Shorter headers for the terminal table (same columns as HEADERS).
TABLE_HEADERS = (
    "backend", "precision", "thr", "imgsz", "FPS", *(f"{STAGE_LABELS[s]} ms" for s in STAGES),
    "peak MiB", "model MiB", "AP", "AP50", "agree mAP", "status",
)
TABLE_FOOTER = "stage cells: p50/p95/p99 ms; precision: asked/used; AP = AP50-95; memory in MiB"
#: Column of the agreement mAP (AP50-95 against a reference's detections, not labels); shown
#: only when a row has one, its header naming the reference.
AGREEMENT_COLUMN = HEADERS.index("agreement mAP")
_NOTABLE_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile",
                  "avx_vnni", "neon", "asimd", "asimddp", "i8mm", "bf16", "sve")
_TABLE_REASON_CHARS = 60


def render_markdown(report: Report) -> str:
    """Markdown summary: title, environment, settings, results table, notes."""
    lines = [f"# edgebench report: {report.profile_name or 'no profile'}", ""]
    lines += [f"Created {report.created_utc} by edgebench "
              f"{report.tool_version}; status: **{report.status}**.", ""]
    lines += ["## Environment", "", *_environment_lines(report), ""]
    lines += ["## Results", "", *_markdown_table(report.results), ""]
    lines += sustained_lines(report.sustained)
    notes = _notes(report)
    if notes:
        lines += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    return "\n".join(lines)


def render_table(report: Report) -> str:
    """The results as a fixed-width table for a terminal (same columns as Markdown), with a
    footer line explaining the cells."""
    results = report.results
    keep = _columns(results)
    headers = [TABLE_HEADERS[i] for i in keep]
    rows = [_pick(result_cells(r, reason_chars=_TABLE_REASON_CHARS), keep) for r in results]
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    text_columns = {0, 1, len(headers) - 1}

    def fmt(cells: tuple[str, ...] | list[str]) -> str:
        parts = [c.ljust(w) if i in text_columns else c.rjust(w)
                 for i, (c, w) in enumerate(zip(cells, widths, strict=False))]
        return "  ".join(parts).rstrip()

    out = [fmt(headers), "  ".join("-" * w for w in widths)]
    out += [fmt(row) for row in rows]
    refs = _references(results)
    out.append(TABLE_FOOTER + (f"; agree mAP = agreement mAP vs {'; '.join(refs)} (not labelled mAP)"
                               if refs else ""))
    return "\n".join(out)


def result_cells(row: ResultRow, reason_chars: int | None = None) -> list[str]:
    """One result row as display strings, in HEADERS order."""
    stages = dict(row.latency_ms.stages()) if row.latency_ms else {}
    memory, accuracy, agreement = row.memory, row.accuracy, row.agreement
    return [
        str(row.backend),
        row.precision_text,
        _fmt(row.threads, 0),
        row.size_text or "-",
        _fmt(row.fps, 1),
        *(_stage(stages.get(s)) for s in STAGES),
        _fmt(memory.peak_rss_mb if memory else None, 1),
        _fmt(memory.model_size_mb if memory else None, 2),
        _fmt(accuracy.AP if accuracy else None, 3),
        _fmt(accuracy.AP50 if accuracy else None, 3),
        _fmt(agreement.AP if agreement else None, 3),
        _status(row, reason_chars),
    ]


def _markdown_table(results: list[ResultRow]) -> list[str]:
    if not results:
        return ["(no results)"]
    keep = _columns(results)
    refs = _references(results)
    headers = [f"agreement mAP vs {'; '.join(refs)}" if i == AGREEMENT_COLUMN else HEADERS[i]
               for i in keep]
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if i in (0, 1, len(headers) - 1) else "---:"
                            for i in range(len(headers))) + "|"]
    for row in results:
        cells = [c.replace("|", "\\|") for c in _pick(result_cells(row), keep)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _columns(results: list[ResultRow]) -> list[int]:
    """Indices of the columns to show: the agreement column only when a row has agreement."""
    has = any(r.agreement is not None for r in results)
    return [i for i in range(len(HEADERS)) if has or i != AGREEMENT_COLUMN]


def _pick(cells: list[str], keep: list[int]) -> list[str]:
    return [cells[i] for i in keep]


def _references(results: Sequence[ResultRow]) -> list[str]:
    """The distinct references of the rows' agreement mAP, in order of appearance."""
    refs = [str(r.agreement.reference or "?") for r in results if r.agreement is not None]
    return list(dict.fromkeys(refs))


def _environment_lines(report: Report) -> list[str]:
    env = report.environment or {}
    model, data, settings = report.model, report.data, report.settings
    versions = env.get("versions") or {}
    flags = [f for f in _NOTABLE_FLAGS if f in set(env.get("cpu_flags") or ())]
    sha = model.sha256 or env.get("model_sha256") or ""
    freq = env.get("cpu_freq_mhz") or {}
    return [
        f"- Host: {env.get('hostname', '?')} ({env.get('os_release') or env.get('os', '?')}, "
        f"{env.get('machine', '?')})",
        f"- CPU: {env.get('cpu_model', '?')}; {env.get('physical_cores', '?')} physical / "
        f"{env.get('logical_cores', '?')} logical cores; threads used {env.get('threads', '?')}; "
        f"flags: {', '.join(flags) or 'none notable'} ({len(env.get('cpu_flags') or ())} in all)",
        f"- Clock: {_fmt(freq.get('current'), 0)} MHz now; load average "
        f"{'/'.join(str(x) for x in env.get('load_avg') or ()) or '-'}; "
        f"temperature {_max_temp(env.get('temperatures_c'))}",
        f"- Python {env.get('python', '?')}; "
        + (", ".join(f"{k} {v}" for k, v in versions.items()) or "no versions recorded"),
        f"- Model: {_v(model.path)} (sha256 {sha[:12] or '-'}, "
        f"{_fmt(model.size_mb, 2)} MiB)",
        f"- Data: {data.path or '-'}, {data.images} images, "
        f"{len(data.label_issues or ())} label issues",
        f"- Settings: warm-up {_v(settings.warmup)}, at least "
        f"{_v(settings.min_iterations)} iterations and "
        f"{_v(settings.min_duration_s)} s "
        f"per configuration; percentiles: {_v(settings.percentile_method)}",
    ]


def _notes(report: Report) -> list[str]:
    notes = []
    if report.host_note:
        notes.append(str(report.host_note))
    if report.status == "partial":
        notes.append("The run did not finish: this report is partial.")
    notes += [str(n) for n in report.notes or []]
    for row in report.results:
        notes += _row_notes(row)
    for ref in _references(report.results):
        notes.append(f"agreement mAP vs {ref}: COCO AP50-95 of each configuration scored against "
                     "the reference configuration's own detections (score >= conf) on the same "
                     "images; it measures agreement with the reference, not accuracy against labels.")
    method = report.settings.percentile_method or "?"
    notes.append(f"Latencies in ms (percentile method: {method}); FPS = 1000 / mean total "
                 "latency, single stream; memory in MiB.")
    return notes


def _row_notes(row: ResultRow) -> list[str]:
    """Why a row did not run; else its precision change, checks, parity and delegation."""
    who = f"{row.backend} {row.precision_text}"
    if row.status in ("skipped", "failed"):
        return [f"{who}: {row.status}: {row.error or 'no reason recorded'}"]
    notes = []
    if row.precision_used and row.precision_used != row.precision:
        notes.append(f"{row.backend} asked for {row.precision} but ran {row.precision_used}.")
    notes += _check_notes(row)
    if row.parity:
        notes.append(f"{who}: {_parity_line(row.parity)}")
    if row.delegation and row.delegation.summary:
        notes.append(f"{who}: {row.delegation.summary}")
    return notes


def _parity_line(parity: Parity) -> str:
    """'parity PASS/FAIL (why) vs the source model: boxes max|d| .., scores cos ..'."""
    verdict = "PASS" if parity.passed else "FAIL (" + "; ".join(parity.failures or []) + ")"
    return (f"parity {verdict} vs the source model: boxes max|d| {_num(parity.box_max_abs, 3)} px, "
            f"scores cos {_num(parity.score_cosine, 5)}, detections {_q(parity.matched)}/"
            f"{_q(parity.ref_detections)} matched")


def _q(value: Any) -> str:
    return "?" if value is None else str(value)


def _num(value: Any, digits: int) -> str:
    return f"{value:.{digits}g}" if isinstance(value, (int, float)) else "?"


def _check_notes(row: ResultRow) -> list[str]:
    """Budget checks that did not pass, and the reference-FPS check, of an ok row."""
    who = f"{row.backend} {row.precision_text}"
    out = [f"{who}: {c.message}" for c in row.budget_checks or () if c.status != "pass"]
    ref = row.reference_check
    if ref and ref.reason:
        out.append(f"{who}: {ref.reason}" if ref.checked else f"{who}: reference FPS {ref.reason}")
    return out


def _status(row: ResultRow, reason_chars: int | None) -> str:
    """ok (with its flags and budget verdict), suspect (its flags, suspect first), or skipped/failed: why."""
    if row.status == "ok":
        parts = ["ok", *row.flag_texts(), verdict(row.budget_checks)]
    elif row.status == "suspect":
        parts = [*row.flag_texts("suspect"), *row.flag_texts("noisy"), *row.flag_texts("proxy")]
    else:
        return f"{row.status}: {_clip(str(row.error or 'no reason recorded'), reason_chars)}"
    return _clip("; ".join(p for p in parts if p) or str(row.status), reason_chars)


def _clip(text: str, chars: int | None) -> str:
    return text[: chars - 3] + "..." if chars is not None and len(text) > chars else text


def _stage(summary: LatencyStats | None) -> str:
    if summary is None or not summary.to_dict():
        return "-"
    return "/".join(_fmt(v, 2) for v in (summary.p50, summary.p95, summary.p99))


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{digits}f}"
    return str(value)


def _v(value: Any) -> str:
    return "-" if value is None else str(value)


def _max_temp(temps: dict[str, list[dict[str, Any]]] | None) -> str:
    values = [e["current"] for entries in (temps or {}).values() for e in entries
              if isinstance(e.get("current"), (int, float))]
    return f"{max(values):.0f} °C (hottest sensor)" if values else "not exposed"
