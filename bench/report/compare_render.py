"""Markdown view of a comparison made by bench.report.compare.compare."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.report.compare import METRICS, reason_text
from bench.report.markdown import p99_text
from bench.report.rows import EMULATED, NOT_MEASURABLE

HEADERS = ("configuration", "baseline", "verified", "flags", "n", "p50 ms", "p95 ms", "p99 ms", "FPS", "peak MiB",
           "model MiB", "AP50-95", "AP50", "Pareto", "verdict")
#: The AP delta cell of a row whose baseline was scored on another data set (see its note).
NO_DELTA = "—"
_DIGITS = {"p50": 2, "p95": 2, "p99": 2, "fps": 1, "peak_rss_mb": 1, "model_size_mb": 2,
           "AP": 3, "AP50": 3}
_PARITY_KEYS = (("box_max_abs", "boxes max|d| {:.3g} px"), ("box_cosine", "boxes cos {:.5f}"),
                ("score_max_abs", "scores max|d| {:.3g}"), ("score_cosine", "scores cos {:.5f}"),
                ("match_rate", "matched {:.1%}"), ("mean_iou", "IoU {:.3f}"),
                ("class_agreement", "class agreement {:.3f}"))


def render_compare_markdown(result: dict[str, Any]) -> str:
    """The comparison as Markdown: table, recommendation, rejections, per-class drops, parity."""
    lines = ["# edgebench compare", ""]
    lines += ["- Reports: " + "; ".join(
        f"{r['path']} (profile {r['profile'] or '-'}, {r['status']}, {r['rows']} rows{_identity(r)})"
        for r in result["reports"])]
    lines += [f"- Budgets: {_budgets(result['budgets'])}", ""]
    lines += ["## Results", "", *_table(result["rows"], result.get("accuracy_basis"), result.get("models", 1)), "",
              *_footer(result), ""]
    lines += ["## Recommendation", "", result["message"], ""]
    rejected = [r for r in result["rows"] if r["rejected"]]
    if rejected:
        lines += ["## Not chosen", ""]
        lines += [f"- {r['label']}: " + "; ".join(x["message"] for x in r["rejected"]) + advice_text(r)
                  for r in rejected]
        lines.append("")
    lines += _class_drops(result)
    lines += _parity(result["rows"])
    return "\n".join(lines)


def advice_text(row: Mapping[str, Any]) -> str:
    """'; <the QAT advice>' after a PTQ row's rejections when its mAP drop failed (bench.report.qat_advice), else ''."""
    return f"; {row['advice']}" if row.get("advice") else ""


def _identity(report: dict[str, Any]) -> str:
    """', model m.onnx (sha256 ..), 30 images scored (sha256 ..)' as far as the report says."""
    out = f", model {report['model']}" if report.get("model") else ""
    if report.get("scored_images") is not None:
        data = report.get("data_sha256")
        out += f", {report['scored_images']} images scored" + (f" (sha256 {data[:12]})" if data else "")
    return out


def _budgets(budgets: dict[str, dict[str, Any]]) -> str:
    words = {"max_p99_ms": "p99 <= {:g} ms", "max_memory_mb": "peak memory <= {:g} MiB",
             "max_map_drop": "AP50-95 drop <= {:g}"}
    parts = [f"{words[k].format(b['value'])} (from {b['source']})"
             for k, b in budgets.items() if b["value"] is not None]
    return "; ".join(parts) or "none (no flags, no --profile, no budgets in the reports)"


def table_headers(basis: dict[str, Any] | None, models: int = 1) -> list[str]:
    """HEADERS with an imgsz column (and a model column when the reports hold several models), and
    the AP columns named after the accuracy basis ("agreement mAP vs REF" when the comparison scores
    agreement, not labels)."""
    headers = [HEADERS[0], *(["model"] if models > 1 else []), "imgsz", *HEADERS[1:]]
    if basis and basis.get("kind") == "agreement":
        ref = basis.get("reference")
        headers = [{"AP50-95": f"agreement mAP vs {ref}", "AP50": f"agreement AP50 vs {ref}"}.get(h, h)
                   for h in headers]
    return headers


def _table(rows: list[dict[str, Any]], basis: dict[str, Any] | None = None, models: int = 1) -> list[str]:
    if not rows:
        return ["(no results)"]
    headers = table_headers(basis, models)
    text = 6 if models > 1 else 5  # configuration, [model], imgsz, baseline, verified, flags
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---" if i < text or i >= len(headers) - 2 else "---:"
                          for i in range(len(headers))) + "|"]
    for row in rows:
        model = [str(row.get("model") or "-")] if models > 1 else []
        cells = [row["label"], *model, _imgsz(row.get("imgsz")), _baseline_cell(row), verified_cell(row),
                 flags_cell(row),
                 _count(row.get("n")), *(_metric(row, k) for k in METRICS), _pareto(row), _verdict(row)]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return out


def _imgsz(value: Any) -> str:
    if isinstance(value, (list, tuple)) and value:
        return str(value[0]) if len(set(value)) == 1 else "x".join(str(v) for v in value)
    return "-" if value is None else str(value)


def _baseline_cell(row: dict[str, Any]) -> str:
    if row["baseline"] is None:
        return "-" if row["status"] != "ok" else "none"
    return "(itself)" if row["baseline"] == row["label"] else row["baseline"]


def verified_cell(row: dict[str, Any]) -> str:
    """The row's "verified on hardware" (device, host proxy, not measurable), '-' when its report has none."""
    return str(row.get("verified") or "-")


def flags_cell(row: dict[str, Any]) -> str:
    """The kinds of a row's flags ('noisy, proxy'), '-' when none; their reasons are in `notes`."""
    return ", ".join(row.get("flag_kinds") or ()) or "-"


def _count(value: Any) -> str:
    return "-" if value is None else str(value)


def metric_text(row: dict[str, Any], key: str) -> str:
    """A metric's value ('-' when missing), the p99 marked when it is an estimate from too few samples."""
    value = row["metrics"].get(key)
    if key == "p99":
        return p99_text(value, row.get("p99_samples"), _DIGITS[key])
    return "-" if value is None else f"{value:.{_DIGITS[key]}f}"


def delta_text(row: dict[str, Any], key: str) -> str:
    """' (+0.010)' / ' (-50%)' against the row's baseline, ' (—)' for AP against another data set's
    baseline, else ''."""
    delta = row["deltas"].get(key)
    kind, _ = METRICS[key]
    if not delta:
        return f" ({NO_DELTA})" if kind == "abs" and row.get("baseline_data_note") else ""
    if kind == "abs":
        return f" ({delta['abs']:+.{_DIGITS[key]}f})"
    return f" ({delta['rel']:+.0%})" if delta["rel"] is not None else ""


def _metric(row: dict[str, Any], key: str) -> str:
    value = row["metrics"].get(key)
    agree = row.get("agreement")
    if value is None and key == "AP" and agree and agree.get("AP") is not None:
        return f"agreement mAP vs {agree['reference']}: {agree['AP']:.3f} (not compared)"
    if value is None:
        return "-"
    return metric_text(row, key) + delta_text(row, key)


def _pareto(row: dict[str, Any]) -> str:
    return {True: "front", False: "dominated", None: "-"}[row["pareto"]]


def _verdict(row: dict[str, Any]) -> str:
    if row["recommended"]:
        return "**recommended**"
    if row.get("verified") == NOT_MEASURABLE:
        return NOT_MEASURABLE
    if row["status"] != "ok":
        return str(row["status"])
    codes = [reason_text(x["code"]) for x in row["rejected"]]
    return "not chosen: " + ", ".join(codes) if codes else "-"


def _footer(result: dict[str, Any]) -> list[str]:
    notes = sorted({r["baseline_note"] for r in result["rows"] if r["baseline_note"]})
    return [*_basis_lines(result), 
        "Cells: value (delta vs the row's baseline: % for latency, FPS, memory and size; "
        "absolute for AP). Latency is the total per frame; AP on COCO's 0..1 scale; n = timed iterations.",
        "Pareto: 'front' = no other row is at least as accurate (AP50-95) and at least as fast "
        "(p99) while better on one; rows without both figures are not placed.",
        "Baselines: " + ("; ".join(notes) if notes else "none"),
        *_flag_lines(result["rows"]),
        *row_notes(result),
    ]


def row_notes(result: dict[str, Any]) -> list[str]:
    """Notes under the table: rows whose baseline was scored on another data set, each row's flag
    reasons, the p99-estimate footnote and, for rows of separate runs, the caution on latency ratios."""
    rows = result["rows"]
    lines = [f"{r['label']}: {r['baseline_data_note']}" for r in rows if r.get("baseline_data_note")]
    lines += [f"{r['label']}: {text}" for r in rows for text in r.get("flags") or ()]
    lines += list(result.get("p99_footnotes") or ())
    run_note = result.get("run_note")
    return [*lines, f"Runs: {run_note}."] if run_note else lines


def _flag_lines(rows: list[dict[str, Any]]) -> list[str]:
    """What suspect, proxy and within-noise rows mean, when there are any."""
    lines = []
    if any(r["status"] == "suspect" for r in rows):
        lines.append("suspect: measured, but a sanity gate says its numbers cannot be trusted (zero "
                     "detections, failed parity or collapsed AP); shown, never recommended.")
    if any(r.get("proxy") for r in rows):
        lines.append("[proxy]: measured on another host than the profile's device (verified on hardware: host "
                     "proxy); not a native measurement.")
    if any(r.get("verified") == NOT_MEASURABLE for r in rows):
        lines.append(f"{NOT_MEASURABLE}: the host that ran the report cannot run the backend (no device, driver "
                     "or OS for it); nothing of the row was timed or scored; never recommended.")
    if any(r.get("verified") == EMULATED for r in rows):
        lines.append(f"{EMULATED}: run under CPU emulation of the profile's architecture (edgebench emulate): "
                     "accuracy and parity are the ARM kernels'; timings are not meaningful and were left out; "
                     "never ranked by speed.")
    if any(x["code"] == "within_noise" for r in rows for x in r["rejected"]):
        lines.append("within noise: the p99s differ by less than the wider row's noise band (window p50 "
                     "spread x p99 when measured, else p99 - p50), so the two are not ranked.")
    return lines


def _basis_lines(result: dict[str, Any]) -> list[str]:
    """What the AP columns hold, and the rows whose accuracy is not compared."""
    basis = result.get("accuracy_basis")
    lines = []
    if basis and basis.get("kind") == "agreement":
        lines.append(f"AP columns: agreement mAP vs {basis['reference']}: each row's detections scored "
                     "against the reference configuration's own detections, not against labels.")
    lines += [f"{r['label']}: {r['accuracy_note']}" for r in result["rows"] if r.get("accuracy_note")]
    return lines


def _class_drops(result: dict[str, Any]) -> list[str]:
    rows = [r for r in result["rows"] if r["per_class_drops"]]
    if not rows:
        return []
    lines = [f"## Per-class AP50-95 drops over {result['per_class_drop']:g}", ""]
    for r in rows:
        drops = ", ".join(f"{d['class']} {d['baseline']:.3f} -> {d['value']:.3f} "
                          f"(-{d['drop']:.3f})" for d in r["per_class_drops"])
        lines.append(f"- {r['label']} vs {r['baseline']}: {drops}")
    return [*lines, ""]


def _parity(rows: list[dict[str, Any]]) -> list[str]:
    shown = [r for r in rows if isinstance(r.get("parity"), dict)]
    if not shown:
        return []
    return ["## Parity", "", *(f"- {r['label']}: {parity_text(r['parity'])}" for r in shown), ""]


def parity_text(parity: dict[str, Any]) -> str:
    """One line of a row's parity stats (known keys formatted, verdict first)."""
    parts = []
    if "passed" in parity:
        parts.append("PASS" if parity["passed"] else
                     "FAIL (" + "; ".join(map(str, parity.get("failures") or ())) + ")")
    for key, fmt in _PARITY_KEYS:
        value = parity.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(fmt.format(value))
    return ", ".join(parts) or "recorded, no known fields"
