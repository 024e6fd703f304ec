"""HTML view of a comparison made by bench.report.compare.compare: table, scatter, recommendation."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.report import plots as html_plots
from bench.report.compare import METRICS, reason_text
from bench.report.compare_render import (
    HEADERS,
    delta_text,
    flags_cell,
    metric_text,
    parity_text,
    row_notes,
    verified_cell,
)
from bench.report.html import DASH, esc, num, page, plot, recommendation_blocks, table

_DIGITS = {"p50": 2, "p95": 2, "p99": 2, "fps": 1, "peak_rss_mb": 1, "model_size_mb": 2,
           "AP": 3, "AP50": 3}


def render_compare_html(result: Mapping[str, Any]) -> str:
    """The comparison as one offline HTML page."""
    rows = list(result.get("rows") or [])
    body = ["<h1>edgebench compare</h1>", "<p class=\"meta\">Reports: " + esc("; ".join(
        f"{r['path']} (profile {r.get('profile') or '-'}, {r.get('status')}, {r.get('rows')} rows, "
        f"model {r.get('model') or '-'})"
        for r in result.get("reports") or ())) + "</p>"]
    if not html_plots.available():
        body.append(plot(None, ""))
    body += ["<h2>Results</h2>", _table(rows, int(result.get("models") or 1)),
             "<p class=\"meta\">Cells: value (delta vs the row's baseline: % for latency, FPS, "
             "memory and size; absolute for AP); n = timed iterations. Pareto: 'front' = no other row "
             "is at least as accurate and as fast while better on one.</p>",
             *(f"<p class=\"meta\">{esc(line)}</p>" for line in row_notes(dict(result)))]
    body += ["<h2>Accuracy vs p99 latency</h2>",
             plot(html_plots.scatter_svg(rows), str(result.get("pareto_note") or _NOT_PLACED))]
    body += ["<h2>Recommendation</h2>", *recommendation_blocks(result)]
    body += _class_drops(result)
    parity = [(r["label"], parity_text(r["parity"])) for r in rows if isinstance(r.get("parity"), dict)]
    if parity:
        body += ["<h2>Parity</h2>", table(("configuration", "parity"), parity)]
    return page("edgebench compare", body)


_NOT_PLACED = "no row has both AP50-95 and p99 (accuracy skipped or nothing ran)"


def _table(rows: list[Mapping[str, Any]], models: int = 1) -> str:
    if not rows:
        return f"<p>{DASH} (no results)</p>"
    model = models > 1  # several models: a column saying which row is which
    headers = (HEADERS[0], "model", *HEADERS[1:]) if model else HEADERS
    cells = [[r["label"], *([str(r.get("model") or DASH)] if model else []), _baseline(r),
              _dash(verified_cell(dict(r))), _dash(flags_cell(dict(r))), num(r.get("n"), 0),
              *(_metric(r, k) for k in METRICS), _pareto(r), _verdict(r)] for r in rows]
    return table(headers, cells, ["pick" if r.get("recommended") else "" for r in rows])


def _baseline(row: Mapping[str, Any]) -> str:
    if row.get("baseline") is None:
        return DASH if row.get("status") != "ok" else "none"
    return "(itself)" if row["baseline"] == row["label"] else str(row["baseline"])


def _dash(text: str) -> str:
    return DASH if text == "-" else text


def _metric(row: Mapping[str, Any], key: str) -> tuple[str, str]:
    text, css = num((row.get("metrics") or {}).get(key), _DIGITS[key])
    if text == DASH:
        return text, css
    plain = {"metrics": row.get("metrics") or {}, "deltas": row.get("deltas") or {},
             "p99_samples": row.get("p99_samples"), "baseline_data_note": row.get("baseline_data_note")}
    return metric_text(plain, key) + delta_text(plain, key), css


_PARETO: dict[object, str] = {True: "front", False: "dominated"}


def _pareto(row: Mapping[str, Any]) -> str:
    return _PARETO.get(row.get("pareto"), DASH)


def _verdict(row: Mapping[str, Any]) -> tuple[str, str]:
    if row.get("recommended"):
        return "recommended", "ok"
    if row.get("status") == "suspect":
        return "; ".join(str(x["message"]) for x in row.get("rejected") or ()) or "suspect", "warn"
    if row.get("status") != "ok":
        return f"{row.get('status')}: {row.get('error') or 'no reason recorded'}", "err"
    codes = [reason_text(x["code"]) for x in row.get("rejected") or ()]
    return ("not chosen: " + ", ".join(codes) if codes else DASH), ""


def _class_drops(result: Mapping[str, Any]) -> list[str]:
    rows = [r for r in result.get("rows") or () if r.get("per_class_drops")]
    if not rows:
        return []
    cells = [(r["label"], r.get("baseline"), d["class"], num(d["baseline"], 3), num(d["value"], 3),
              num(-d["drop"], 3)) for r in rows for d in r["per_class_drops"]]
    return [f"<h2>Per-class AP50-95 drops over {esc(result.get('per_class_drop'))}</h2>",
            table(("configuration", "baseline", "class", "baseline AP", "AP", "change"), cells)]
