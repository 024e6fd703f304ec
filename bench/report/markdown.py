"""Human-readable views of a report: a Markdown summary and a fixed-width terminal table."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.measure.early_stop import P99_MIN_SAMPLES, p99_is_estimate
from bench.report.budgets import row_verdict
from bench.report.qat_advice import report_advice
from bench.report.rows import (
    DEVICE,
    EMULATED,
    HOST_PROXY,
    NOT_MEASURABLE,
    STAGES,
    DataInfo,
    LatencyStats,
    Parity,
    Report,
    ResultRow,
)
from bench.report.sustained import markdown_lines as sustained_lines

STAGE_LABELS = {"preprocess": "pre", "inference": "infer", "postprocess": "post", "total": "total"}
HEADERS = (
    "backend", "precision asked/used", "threads", "imgsz", "FPS", "n",
    *(f"{STAGE_LABELS[s]} p50/p95/p99 ms" for s in STAGES),
    "peak RSS MiB", "model MiB", "AP50-95", "AP50", "agreement mAP", "verified on hardware", "status",
)
#: Shorter headers for the terminal table (same columns as HEADERS).
TABLE_HEADERS = (
    "backend", "precision", "thr", "imgsz", "FPS", "n", *(f"{STAGE_LABELS[s]} ms" for s in STAGES),
    "peak MiB", "model MiB", "AP", "AP50", "agree mAP", "verified", "status",
)
TABLE_FOOTER = ("stage cells: p50/p95/p99 ms; n = timed iterations; precision: asked/used; AP = AP50-95; "
                "memory in MiB")
#: Mark of a p99 from fewer samples than the early-stopping rule needs (bench.measure.early_stop).
P99_MARK = "*"
P99_FOOTNOTE = f"{P99_MARK} p99 from fewer than {P99_MIN_SAMPLES} samples: an estimate"
#: Flags that qualify a measured row (bench.sweep.qualify) rather than distrust it.
QUALIFIER_FLAGS = ("noisy", "proxy")
#: Column of the agreement mAP (AP50-95 against a reference's detections, not labels); shown
#: only when a row has one, its header naming the reference.
AGREEMENT_COLUMN = HEADERS.index("agreement mAP")
#: What each "verified on hardware" value means (bench.report.rows.VERIFIED).
VERIFIED_MEANING = {
    DEVICE: "measured on the profile's own device kind",
    HOST_PROXY: "measured on this host standing in for the profile's device (another CPU, GPU or engine)",
    NOT_MEASURABLE: "this host cannot run the backend (no device, driver or OS for it): nothing timed or scored",
    EMULATED: "run under CPU emulation of the profile's architecture (edgebench emulate): accuracy and parity "
              "are the ARM kernels', timings are not (latency, FPS and peak memory left out)",
}
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
    text_columns = {0, 1, len(headers) - 2, len(headers) - 1}

    def fmt(cells: tuple[str, ...] | list[str]) -> str:
        parts = [c.ljust(w) if i in text_columns else c.rjust(w)
                 for i, (c, w) in enumerate(zip(cells, widths, strict=False))]
        return "  ".join(parts).rstrip()

    out = [fmt(headers), "  ".join("-" * w for w in widths)]
    out += [fmt(row) for row in rows]
    refs = _references(results)
    out.append(TABLE_FOOTER + (f"; agree mAP = agreement mAP vs {'; '.join(refs)} (not labelled mAP)"
                               if refs else ""))
    out += p99_footnotes(results) + flag_lines(results) + reason_lines(results)
    return "\n".join(out)


def result_cells(row: ResultRow, reason_chars: int | None = None) -> list[str]:
    """One result row as display strings, in HEADERS order."""
    stages = dict(row.latency_ms.stages()) if row.latency_ms else {}
    memory, accuracy, agreement = row.memory, row.accuracy, row.agreement
    n = sample_count(row)
    return [
        str(row.backend),
        row.precision_text,
        _fmt(row.threads, 0),
        row.size_text or "-",
        _fmt(row.fps, 1),
        _fmt(n, 0),
        *(_stage(stages.get(s), n) for s in STAGES),
        _fmt(memory.peak_rss_mb if memory else None, 1),
        _fmt(memory.model_size_mb if memory else None, 2),
        _fmt(accuracy.AP if accuracy else None, 3),
        _fmt(accuracy.AP50 if accuracy else None, 3),
        _fmt(agreement.AP if agreement else None, 3),
        row.verified or "-",
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
             "|" + "|".join("---" if i in (0, 1, len(headers) - 2, len(headers) - 1) else "---:"
                            for i in range(len(headers))) + "|"]
    for row in results:
        cells = [c.replace("|", "\\|") for c in _pick(result_cells(row), keep)]
        lines.append("| " + " | ".join(cells) + " |")
    notes = p99_footnotes(results)
    return [*lines, "", *notes] if notes else lines


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
        f"- Data: {data.path or '-'}, {_data_text(data)}, {len(data.label_issues or ())} label issues",
        f"- Settings: warm-up {_v(settings.warmup)}, at least "
        f"{_v(settings.min_iterations)} iterations and "
        f"{_v(settings.min_duration_s)} s "
        f"per configuration; percentiles: {_v(settings.percentile_method)}",
    ]


def _notes(report: Report) -> list[str]:
    notes = []
    if report.host_note:
        notes.append(str(report.host_note))
    if report.status == "partial" and any(r.measured for r in report.results):
        notes.append("The run did not finish: this report is partial.")
    notes += [str(n) for n in report.notes or []]
    for row in report.results:
        notes += _row_notes(row)
    notes += report_advice(report)
    for ref in _references(report.results):
        notes.append(f"agreement mAP vs {ref}: COCO AP50-95 of each configuration scored against "
                     "the reference configuration's own detections (score >= conf) on the same "
                     "images; it measures agreement with the reference, not accuracy against labels.")
    notes += verified_notes(report.results)
    method = report.settings.percentile_method or "?"
    notes.append(f"Latencies in ms (percentile method: {method}); FPS = 1000 / mean total "
                 "latency, single stream; memory in MiB.")
    return notes


def verified_notes(results: Sequence[ResultRow]) -> list[str]:
    """What the "verified on hardware" values of these rows mean (none when no row records one)."""
    seen = [v for v in VERIFIED_MEANING if any(r.verified == v for r in results)]
    if not seen:
        return []
    return ["Verified on hardware: " + "; ".join(f"{v} = {VERIFIED_MEANING[v]}" for v in seen) + "."]


def _row_notes(row: ResultRow) -> list[str]:
    """Why a row did not run (and what was checked of its artifact); else its precision change, checks, parity
    and delegation."""
    who = f"{row.backend} {row.precision_text}"
    if row.status in ("skipped", "failed"):
        notes = [f"{who}: {row.status}: {row.error or 'no reason recorded'}"]
        if row.artifact_check is not None:
            notes.append(f"{who}: {row.artifact_check.summary()} ({row.artifact or 'artifact'}; sha256 "
                         f"{_short(row.artifact_sha256)}); prediction: {row.artifact_check.prediction or '?'}; "
                         f"device plan: {row.artifact_check.compute_plan or '?'}")
        return notes
    notes = []
    if row.precision_used and row.precision_used != row.precision:
        notes.append(f"{row.backend} asked for {row.precision} but ran {row.precision_used}.")
    notes += _check_notes(row)
    if row.parity:
        notes.append(f"{who}: {_parity_line(row.parity)}")
    if row.quantization:
        notes.append(f"{who}: {row.quantization.summary(row.layers)}")
    if row.delegation and row.delegation.summary:
        notes.append(f"{who}: {row.delegation.summary}")
    parts = row.latency_ms.inference_parts() if row.latency_ms else {}
    if parts:
        notes.append(f"{who}: inference on the device, p50: " + ", ".join(
            f"{name} {stats.p50:.2f} ms" for name, stats in parts.items() if stats.p50 is not None))
    if row.source_sha256:
        notes.append(f"{who}: artifact sha256 {_short(row.artifact_sha256)}, converted from sha256 "
                     f"{_short(row.source_sha256)}")
    return notes


def _data_text(data: DataInfo) -> str:
    """'30 of 300 images scored (sha256 ...)', or 'N images' when the report does not say what was scored."""
    if data.scored_images is None:
        return f"{data.images} images"
    if not data.scored_images:
        return f"{data.images} images, none scored (timing only)"
    return f"{data.scored_images} of {data.images} images scored (sha256 {_short(data.sha256)})"


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "-"


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
    """ok (with its flags and budget verdict), suspect (its flags, suspect first), or skipped/failed: why.
    With `reason_chars` (the terminal) noisy/proxy flags are named by kind; `flag_lines` gives their reasons."""
    qualifiers = _qualifiers(row, compact=reason_chars is not None)
    if row.status == "ok":
        parts = ["ok", *row.flag_texts("suspect"), *qualifiers, row_verdict(row)]
    elif row.status == "suspect":
        parts = [*row.flag_texts("suspect"), *qualifiers]
    else:
        return f"{row.status}: {_clip(str(row.error or 'no reason recorded'), reason_chars)}"
    return _clip("; ".join(p for p in parts if p) or str(row.status), reason_chars)


def _qualifiers(row: ResultRow, compact: bool) -> list[str]:
    """The row's noisy and proxy flags: 'kind: reason' each, or just the kinds when `compact`."""
    if compact:
        return [kind for kind in QUALIFIER_FLAGS if row.flag_texts(kind)]
    return [text for kind in QUALIFIER_FLAGS for text in row.flag_texts(kind)]


def flag_lines(results: Sequence[ResultRow]) -> list[str]:
    """'configs: kind: reason' for each distinct noisy/proxy flag (the terminal table names only the kinds)."""
    configs: dict[str, list[str]] = {}
    for row in results:
        for kind in QUALIFIER_FLAGS:
            for text in row.flag_texts(kind):
                configs.setdefault(text, []).append(row.config)
    return [f"{', '.join(names)}: {text}" for text, names in configs.items()]


def reason_lines(results: Sequence[ResultRow], chars: int = _TABLE_REASON_CHARS) -> list[str]:
    """'config: status: reason' in full for each skipped/failed row whose reason the terminal table cut."""
    return [f"{row.config}: {row.status}: {row.error}" for row in results
            if row.status not in ("ok", "suspect") and len(str(row.error or "")) > chars]


def _clip(text: str, chars: int | None) -> str:
    return text[: chars - 3] + "..." if chars is not None and len(text) > chars else text


def _stage(summary: LatencyStats | None, n: int | None = None) -> str:
    """'p50/p95/p99' in ms, the p99 marked when it came from too few samples (the stage's count, else n)."""
    if summary is None or not summary.to_dict():
        return "-"
    return "/".join([_fmt(summary.p50, 2), _fmt(summary.p95, 2), p99_text(summary.p99, summary.count or n)])


def p99_text(p99: float | None, count: int | None, digits: int = 2) -> str:
    """The p99 with P99_MARK when `count` is below the early-stopping minimum (P99_MIN_SAMPLES)."""
    text = _fmt(p99, digits)
    return text + P99_MARK if p99 is not None and p99_is_estimate(count) else text


def sample_count(row: ResultRow) -> int | None:
    """The row's timed iterations (the total stage's count when the row does not say)."""
    total = row.total
    return row.iterations if row.iterations is not None else (total.count if total else None)


def p99_footnotes(results: Sequence[ResultRow]) -> list[str]:
    """[P99_FOOTNOTE] when a measured row's p99 is an estimate, else []."""
    marked = any(r.measured and r.total and r.total.p99 is not None
                 and p99_is_estimate(r.total.count or sample_count(r)) for r in results)
    return [P99_FOOTNOTE] if marked else []


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
