"""A report as one self-contained HTML file: inline CSS, plots as inline SVG, nothing fetched.

Sections: summary table, latency CDF/histogram, accuracy vs p99 with the Pareto front and the
recommendation (bench.report.compare on this one report), per-class AP before/after quantization, PR / F1
curves and the confusion matrix per measured row (bench.report.html_curves), the sustained-run trace
(when the report has "sustained"), notes and the environment. Missing figures render as "—"; every
text is escaped. Plots need matplotlib (`edgebench[report]`); without it the page keeps its tables and
says so.
"""
from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.report import plots as html_plots
from bench.report.budgets import FAIL
from bench.report.compare import compare
from bench.report.compare_render import advice_text, parity_text
from bench.report.markdown import (  # shared wording with report.md
    _environment_lines,
    _notes,
    _status,
    p99_footnotes,
    p99_text,
    sample_count,
)
from bench.report.rows import DEVICE, EMULATED, HOST_PROXY, NOT_MEASURABLE, Parity, Report, ResultRow
from bench.report.sustained import markdown_lines
from bench.report.sustained_rows import SustainedSection
from edge_sdk.atomic import write_text_atomic
from runtimes.errors import ReportError

__all__ = ["render_html", "write_html_report", "page", "table", "DASH", "NO_PLOTS"]

DASH = "—"
NO_PLOTS = ("Plots need matplotlib, which is not installed: "
            "pip install 'edgebench[report]'. The tables below are complete.")
SUMMARY_HEADERS = ("backend", "precision", "imgsz", "threads", "status", "FPS", "n", "p50 ms", "p95 ms", "p99 ms",
                   "peak MiB", "model MiB", "AP50-95", "AP50", "verified on hardware", "parity")
_SELF = "report.json"
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1320px;padding:16px 28px;color:#1d2127;background:#fff}
h1{font-size:22px;margin:8px 0 2px}h2{font-size:17px;margin:26px 0 8px;
border-bottom:1px solid #d8dce2;padding-bottom:3px}h3{font-size:14px;margin:14px 0 4px}
.meta{color:#5b6370;margin:0 0 10px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border:1px solid #d8dce2;padding:3px 8px;vertical-align:top}
th{background:#f1f3f6;text-align:left;white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.err{color:#a11d2b;max-width:420px}td.ok{color:#216e2b}td.warn{color:#8a5a00}
tr.pick td{background:#eef8ef}
.note{background:#fff7e0;border-left:4px solid #e0a800;padding:6px 10px;margin:8px 0}
.plot svg{max-width:100%;height:auto}.side{display:flex;gap:18px;align-items:flex-start}
.side .plot{flex:0 1 auto;min-width:0}.side table{flex:none}ul{margin:4px 0 8px 20px;padding:0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:4px 0}
dt{font-weight:600;color:#3b424d}dd{margin:0}
"""


def esc(value: Any) -> str:
    """Escaped text of any value (None as the dash)."""
    return DASH if value is None else html.escape(str(value), quote=True)


def page(title: str, body: Iterable[str]) -> str:
    """A complete HTML document with the inline stylesheet."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\"><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]],
          row_classes: Sequence[str] | None = None) -> str:
    """An HTML table; a cell is a value (escaped; numbers right-aligned) or (text, css class)."""
    out = ["<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers)
           + "</tr></thead><tbody>"]
    for i, cells in enumerate(rows):
        cls = row_classes[i] if row_classes and row_classes[i] else ""
        out.append(f"<tr class=\"{cls}\">" if cls else "<tr>")
        for cell in cells:
            text, css = cell if isinstance(cell, tuple) else (cell, "")
            out.append(f"<td class=\"{css}\">{esc(text)}</td>" if css else f"<td>{esc(text)}</td>")
        out.append("</tr>")
    return "".join(out) + "</tbody></table>"


def num(value: Any, digits: int) -> tuple[str, str]:
    """A right-aligned number cell, the dash when missing."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        return f"{value:.{digits}f}", "n"
    return DASH, "n"


def plot(svg: str | None, missing: str) -> str:
    """A plot block, or a note saying why there is none."""
    if svg:
        return f"<div class=\"plot\">{svg}</div>"
    return f"<p class=\"note\">{esc(NO_PLOTS if not html_plots.available() else missing)}</p>"


def render_html(report: Report) -> str:
    """The whole report as one offline HTML page (see the module docstring)."""
    rows = report.results
    name = report.profile_name or "no profile"
    body = [f"<h1>edgebench report: {esc(name)}</h1>",
            f"<p class=\"meta\">Created {esc(report.created_utc)} by edgebench "
            f"{esc(report.tool_version)}; status: <b>{esc(report.status)}</b>; "
            f"{len(rows)} configuration(s).</p>"]
    if not html_plots.available():
        body.append(f"<p class=\"note\">{esc(NO_PLOTS)}</p>")
    chosen = _compare_self(report)
    body += ["<h2>Summary</h2>", _summary_table(rows, chosen), *_parity_table(rows)]
    body += _latency_section(rows)
    body += _tradeoff_section(chosen)
    body += _class_ap_section(rows)
    from bench.report.html_curves import curves_section  # imported here: it uses this module's helpers

    body += curves_section(rows)
    if report.sustained is not None:
        body += _sustained_section(report.sustained)
    body += ["<h2>Notes</h2>", _list(_notes(report))]
    body += ["<h2>Environment</h2>", _environment(report, rows)]
    return page(f"edgebench report: {name}", body)


def write_html_report(report: Report, out_dir: str | Path, stem: str = "report") -> Path:
    """Render and write `<stem>.html` into `out_dir` atomically; returns its path."""
    text = render_html(report)
    path = Path(out_dir) / f"{stem}.html"
    try:
        return write_text_atomic(path, text)
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from exc


def config_label(row: ResultRow) -> str:
    """backend/precision@size of a row."""
    return row.config


def _compare_self(report: Report) -> dict[str, Any] | None:
    """bench.report.compare on this report alone (Pareto front, budgets, pick), labels without the file
    name; None (and the page says so) if the report cannot be compared."""
    try:
        result = compare([(_SELF, report)])
    except (ReportError, KeyError, TypeError, ValueError) as exc:
        return {"error": f"no recommendation: {exc}", "rows": []}
    strip = f"{_SELF}: "
    for r in result["rows"]:
        r["label"] = r["label"].removeprefix(strip)
        for reason in r["rejected"]:
            reason["message"] = reason["message"].replace(strip, "")
    result["message"] = result["message"].replace(strip, "")
    return result


def _summary_table(rows: list[ResultRow], chosen: Mapping[str, Any] | None) -> str:
    if not rows:
        return "<p>(no results)</p>"
    picked = [bool(r.get("recommended")) for r in (chosen or {}).get("rows") or ()]
    picked += [False] * (len(rows) - len(picked))
    notes = "".join(f"<p class=\"meta\">{esc(n)}</p>" for n in p99_footnotes(rows))
    return table(SUMMARY_HEADERS, (_summary_cells(r) for r in rows),
                 ["pick" if p else "" for p in picked]) + notes


def _summary_cells(row: ResultRow) -> list[Any]:
    total, memory, acc = row.total, row.memory, row.accuracy
    used, asked = row.precision_used, row.precision_label
    precision = asked if not used or used == row.precision else f"{asked} (ran {used})"
    size = row.imgsz
    return [row.backend, precision,
            "x".join(map(str, size)) if isinstance(size, (list, tuple)) else size,
            num(row.threads, 0), _status_cell(row), num(row.fps, 1), num(sample_count(row), 0),
            *(num(v, 2) for v in ((total.p50, total.p95) if total else (None,) * 2)), _p99_cell(row),
            num(memory.peak_rss_mb if memory else None, 1), num(memory.model_size_mb if memory else None, 2),
            num(acc.AP if acc else None, 3), num(acc.AP50 if acc else None, 3), _verified_cell(row),
            _parity_cell(row.parity)]


def _verified_cell(row: ResultRow) -> tuple[str, str] | str:
    """device / host proxy (warn) / not measurable (err); the dash for a row of a report without the field."""
    css = {DEVICE: "ok", HOST_PROXY: "warn", NOT_MEASURABLE: "err", EMULATED: "warn"}.get(str(row.verified))
    return (str(row.verified), css) if css else DASH


def _p99_cell(row: ResultRow) -> tuple[str, str]:
    """The total p99, marked when it came from fewer samples than the early-stopping rule needs."""
    total = row.total
    p99 = total.p99 if total else None
    if not isinstance(p99, (int, float)):
        return DASH, "n"
    return p99_text(p99, (total.count if total else None) or sample_count(row)), "n"


def _status_cell(row: ResultRow) -> tuple[str, str]:
    """report.md's status text (flags with their reasons, the budget verdict); warn on any flag or overrun."""
    if not row.measured:
        return _status(row, None), "err"
    warn = bool(row.flags) or any(c.status == FAIL for c in row.budget_checks or ())
    return _status(row, None), ("warn" if warn else "ok")


def _parity_cell(parity: Parity | None) -> tuple[str, str] | str:
    """PASS / FAIL (the figures are in the parity table under the summary)."""
    if parity is None:
        return DASH
    if parity.passed is None:
        return "recorded"
    return ("PASS", "ok") if parity.passed else ("FAIL", "err")


def _parity_table(rows: list[ResultRow]) -> list[str]:
    shown = [(config_label(r), parity_text(r.parity.to_dict())) for r in rows if r.parity is not None]
    if not shown:
        return []
    return ["<h3>Parity of converted artifacts vs the source model</h3>",
            table(("configuration", "parity"), shown)]


def _latency_section(rows: list[ResultRow]) -> list[str]:
    samples = {config_label(r): (r.latency_samples_ms.total if r.latency_samples_ms else None) or []
               for r in rows if r.measured}
    svg = html_plots.latency_svg(samples)
    missing = ("no per-iteration latencies stored in this report (written by an older edgebench, "
               "or no configuration ran): see the percentiles in the summary")
    return ["<h2>Latency distribution (total per frame)</h2>", plot(svg, missing)]


def _tradeoff_section(chosen: Mapping[str, Any] | None) -> list[str]:
    out = ["<h2>Accuracy vs p99 latency, recommendation</h2>"]
    if chosen is None or "error" in chosen:
        return out + [f"<p class=\"note\">{esc((chosen or {}).get('error'))}</p>"]
    out.append(plot(html_plots.scatter_svg(chosen["rows"]),
                    "no configuration has both AP50-95 and p99 (accuracy skipped or none ran)"))
    return out + recommendation_blocks(chosen)


def recommendation_blocks(result: Mapping[str, Any]) -> list[str]:
    """The budgets, the recommendation message and why each other row was not chosen."""
    budgets = [f"{k}: {b['value']:g} (from {b.get('source') or '?'})"
               for k, b in (result.get("budgets") or {}).items() if b.get("value") is not None]
    out = [f"<p><b>Budgets:</b> {esc('; '.join(budgets) or 'none set')}</p>",
           f"<p><b>{esc(result.get('message'))}</b></p>"]
    lost = [f"{r['label']}: " + "; ".join(x["message"] for x in r["rejected"]) + advice_text(r)
            for r in result.get("rows") or () if r.get("rejected")]
    if lost:
        out += ["<h3>Not chosen</h3>", _list(lost)]
    return out


def _class_ap_section(rows: list[ResultRow]) -> list[str]:
    groups: dict[str, dict[str, Mapping[str, float]]] = {}
    for r in rows:
        aps = r.accuracy.per_class_ap if r.measured and r.accuracy else None
        if isinstance(aps, Mapping) and aps:
            label = config_label(r).split("/", 1)[1]
            groups.setdefault(str(r.backend), {})[label] = aps
    out = ["<h2>Per-class AP50-95 before / after quantization</h2>"]
    if not groups:
        return out + [f"<p>{DASH} no per-class AP in this report (accuracy not measured)</p>"]
    for backend, bars in groups.items():
        bars = dict(sorted(bars.items(), key=lambda kv: not kv[0].startswith("fp32")))
        title = f"{backend}: " + " vs ".join(bars)
        classes = list(dict.fromkeys(c for v in bars.values() for c in v))
        out.append("<div class=\"side\">" + plot(html_plots.class_ap_svg(title, bars), "nothing to draw")
                   + table(("class", *bars), ([c, *(num(v.get(c), 3) for v in bars.values())]
                                              for c in classes)) + "</div>")
    return out


def _sustained_section(sustained: SustainedSection) -> list[str]:
    out = ["<h2>Sustained run</h2>"]
    lines = [ln.removeprefix("- ").replace("**", "") for ln in _sustained_lines(sustained)
             if ln.startswith("- ")]
    if lines:
        out.append(_list(lines))
    if sustained.status in (None, "ok"):
        out.append(plot(html_plots.sustained_svg(sustained.windows), "no windows recorded"))
    return out


def _sustained_lines(sustained: SustainedSection) -> list[str]:
    """report.md's sustained lines (bench.report.sustained), or the section's plain scalars."""
    try:
        return markdown_lines(sustained)
    except (TypeError, ValueError):  # a section written by another version
        return [f"- {k}: {v}" for k, v in sustained.to_dict().items() if not isinstance(v, (dict, list))]


def _environment(report: Report, rows: list[ResultRow]) -> str:
    parts = [line.removeprefix("- ").split(": ", 1) for line in _environment_lines(report)]
    items = [(p[0], p[1]) if len(p) == 2 else ("Software", p[0]) for p in parts]
    for r in rows:
        if r.engine_versions:
            items.append((f"engines of {config_label(r)}", ", ".join(f"{k} {v}" for k, v in r.engine_versions.items())))
    if report.command:
        items.append(("Command", " ".join(map(str, report.command))))
    return _deflist(items)


def _deflist(items: Iterable[tuple[Any, Any]]) -> str:
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items) + "</dl>"


def _list(items: Iterable[Any]) -> str:
    return "<ul>" + "".join(f"<li>{esc(x)}</li>" for x in items) + "</ul>"
