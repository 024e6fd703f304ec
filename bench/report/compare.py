"""`edgebench compare`: the rows of several reports side by side, with deltas against a baseline,
the Pareto front of accuracy (AP50-95) vs p99 latency, and one recommendation under budgets.

The result is plain data (see `compare`); bench.report.compare_render turns it into Markdown.

Accuracy basis: labelled mAP (row "accuracy") when any ok row has it; else, when every ok row
with an agreement mAP (row "agreement", scored against a reference's detections) names the same
reference, that agreement mAP. The metrics "AP"/"AP50", deltas, mAP-drop budget, per-class drops
and the Pareto front all use the basis only, so labelled and agreement mAP are never subtracted
from each other; a row holding only the other kind gets no AP and a note saying why.

Data sets: AP is only compared between rows scored on the same data set (same data hash, else same
path). A row whose baseline was scored on another data set gets no AP delta, no per-class drops and
no mAP-drop verdict (an "unknown" check saying why), is never "dominated" by a row of another data
set, and no Pareto front is drawn across data sets.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report.budgets import (
    BUDGET_FLAGS,
    ap_of,
    as_float,
    budget_text,
    check_row,
    resolve_budgets,
    row_ap,
    row_memory,
    row_p99,
)
from bench.report.compare_entries import Entry, Identity, assign_baselines, entries_of
from bench.report.compare_noise import noise_text, within_noise
from bench.report.markdown import p99_footnotes, sample_count
from bench.report.qat_advice import needs_qat, row_advice
from bench.report.rows import EMULATED, NOT_MEASURABLE, Accuracy, BudgetCheck, Report, ResultRow
from bench.report.writer import load_report
from bench.sweep.gates import collapse_reason
from edge_sdk.profiles import Budgets
from runtimes.errors import ReportError

__all__ = ["CompareOptions", "Metrics", "AccuracyBasis", "compare", "compare_files", "accuracy_basis", "METRICS",
           "reason_text"]

#: metric -> (how a delta is shown: "rel" in % or "abs", higher is better?)
METRICS = {"p50": ("rel", False), "p95": ("rel", False), "p99": ("rel", False),
           "fps": ("rel", True), "peak_rss_mb": ("rel", False), "model_size_mb": ("rel", False),
           "AP": ("abs", True), "AP50": ("abs", True)}
_CHECK_CODES = {("p99", "fail"): "over_p99", ("memory", "fail"): "over_memory",
                ("map_drop", "fail"): "map_drop", ("map_drop", "unknown"): "missing_map",
                ("p99", "unknown"): "missing_p99", ("memory", "unknown"): "missing_memory"}
#: rejection code -> the words of a row's verdict cell, where "code with spaces" would mislead
_REASON_TEXT = {"no_baseline": "no baseline for the AP50-95 drop (pass --baseline)",
                "baseline_missing_map": "its baseline has no AP50-95",
                "baseline_other_data": "its baseline was scored on another data set",
                "emulated": "emulated (timings not meaningful, not ranked)"}
_AP_KEYS = ("AP", "AP50")


@dataclass
class CompareOptions:
    """Baseline ("BACKEND/PRECISION[@IMGSZ]"; None = fp32 row of the same backend), budget
    flags (None = from --profile, else from the reports' profiles) and the per-class threshold."""

    baseline: str | None = None
    max_p99_ms: float | None = None
    max_map_drop: float | None = None
    max_memory_mb: float | None = None
    profile: str | None = None
    per_class_drop: float = 0.05


@dataclass(frozen=True)
class Metrics:
    """The figures a row is compared on (keys of METRICS); AP/AP50 are of the accuracy basis."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    fps: float | None = None
    peak_rss_mb: float | None = None
    model_size_mb: float | None = None
    AP: float | None = None
    AP50: float | None = None

    @classmethod
    def of(cls, row: ResultRow) -> Metrics:
        """The metrics of a row (its `accuracy` being the accuracy of the basis kind)."""
        total = row.total
        return cls(p50=as_float(total.p50) if total else None, p95=as_float(total.p95) if total else None,
                   p99=row_p99(row), fps=as_float(row.fps), peak_rss_mb=row_memory(row),
                   model_size_mb=as_float(row.memory.model_size_mb) if row.memory else None,
                   AP=row_ap(row), AP50=row_ap(row, ap50=True))


@dataclass(frozen=True)
class AccuracyBasis:
    """What the AP columns compare: "labelled" mAP, or "agreement" mAP against one reference."""

    kind: str
    reference: str | None = None

    @property
    def agreement(self) -> bool:
        """Whether the comparison scores agreement with a reference, not labels."""
        return self.kind == "agreement"


def compare_files(paths: Sequence[str | Path], opts: CompareOptions | None = None) -> dict[str, Any]:
    """Load and validate every report (ReportError on bad input), then `compare` them."""
    if not paths:
        raise ReportError("compare needs at least one report JSON")
    return compare([(str(p), load_report(p)) for p in paths], opts)


def compare(reports: Sequence[tuple[str, Report]], opts: CompareOptions | None = None) -> dict[str, Any]:
    """Compare (name, report) pairs; returns {"reports", "budgets", "per_class_drop", "rows",
    "pareto_front", "recommendation", "message"} as plain JSON-able data."""
    opts = opts or CompareOptions()
    flags = {k: getattr(opts, k) for k in BUDGET_FLAGS}
    budgets, sources = resolve_budgets(flags, opts.profile, [r for _, r in reports])
    entries = entries_of(reports)
    assign_baselines(entries, opts.baseline)
    basis = accuracy_basis([e.row for e in entries if e.ok])
    _gate_collapse(entries, basis)
    for e in entries:
        e.out = _row_out(e, budgets, opts.per_class_drop, basis)
    one_data_set = len({e.identity.data for e in entries}) <= 1
    if one_data_set:
        _mark_pareto(entries)
    pick = _choose(entries)
    mixed_note = "" if one_data_set else _MIXED_DATA
    message = _message(pick, entries, budgets) + (f"; {mixed_note}" if mixed_note else "")
    agreement = basis is not None and basis.agreement
    for e in entries:
        reasons = [{**r, "message": _agreement_words(r["message"])} for r in e.rejected] if agreement else e.rejected
        e.out.update(pareto=e.pareto, recommended=e is pick, rejected=reasons,
                     advice=row_advice(reports[e.report][1], e.row) if needs_qat(e.row, e.checks) else None)
    return {
        "reports": [{"path": name, "profile": r.profile_name, "status": r.status, "rows": len(r.results),
                     "model": Identity.of(r).text, "model_sha256": r.model.sha256,
                     "data_sha256": r.data.sha256, "scored_images": r.data.scored_images}
                    for name, r in reports],
        "models": len({(e.identity.model, e.identity.model_name) for e in entries}),
        "budgets": {k: {"value": getattr(budgets, k), "source": sources.get(k)} for k in BUDGET_FLAGS},
        "per_class_drop": opts.per_class_drop,
        "accuracy_basis": dataclasses.asdict(basis) if basis else None,
        "rows": [e.out for e in entries],
        "pareto_front": [e.label for e in entries if e.pareto],
        "recommendation": pick.label if pick else None,
        "message": _agreement_words(message) if agreement else message,
        "pareto_note": _agreement_words(mixed_note) if agreement else mixed_note,
        "p99_footnotes": p99_footnotes([e.row for e in entries]),
        "run_note": _run_note(reports, entries),
    }


_MIXED_DATA = ("the reports scored different data sets, so their AP50-95 is not comparable across them "
               "and no Pareto front is drawn")


def _run_note(reports: Sequence[tuple[str, Report]], entries: list[Entry]) -> str:
    """A warning when the measured rows come from separate runs (reports with different created_utc),
    else ''."""
    runs = {reports[e.report][1].created_utc or f"report {e.report}" for e in entries if e.row.measured}
    if len(runs) <= 1:
        return ""
    return (f"the rows come from {len(runs)} separate runs: latency ratios across separate runs are less "
            "reliable than within one run (compare configurations as ratios measured in the same run)")


def _other_data(e: Entry) -> bool:
    """Whether the entry's baseline was scored on another data set than the entry."""
    return e.baseline is not None and e.baseline.identity.data != e.identity.data


def _data_note(e: Entry, tail: str = ": no AP50-95 delta, mAP-drop check or per-class drops") -> str:
    """Why a row with a baseline of another data set gets no AP delta, or ''."""
    if e.baseline is None or not _other_data(e):
        return ""
    return (f"its baseline {e.baseline.label} was scored on another data set ({_data_text(e.baseline.identity)}; "
            f"this row: {_data_text(e.identity)}){tail}")


def _data_text(ident: Identity) -> str:
    data = ident.data
    if data is None:
        return "data set unknown"
    return f"data {data[5:]}" if data.startswith("path:") else f"data sha256 {data[:12]}"


def _gate_collapse(entries: list[Entry], basis: AccuracyBasis | None) -> None:
    """Flag (on a copy of the row) every ok row whose AP collapsed against its baseline (bench.sweep.gates)
    of the same data set."""
    for e in entries:
        base = e.baseline
        if not e.ok or base is None or base is e or _other_data(e):
            continue
        reason = collapse_reason(row_ap(_view(e.row, basis)), row_ap(_view(base.row, basis)), base.label)
        if reason:
            e.row = dataclasses.replace(e.row, flags=list(e.row.flags or []))
            e.row.add_flag("suspect", reason)


def accuracy_basis(rows: Sequence[ResultRow]) -> AccuracyBasis | None:
    """Labelled mAP when any row has it, else agreement mAP against the one reference of the rows
    that have it; None (no accuracy to compare, or agreement against several references)."""
    if any(row_ap(r) is not None for r in rows):
        return AccuracyBasis("labelled")
    refs = {str(r.agreement.reference) for r in rows if r.agreement is not None}
    return AccuracyBasis("agreement", refs.pop()) if len(refs) == 1 else None


def _view(row: ResultRow, basis: AccuracyBasis | None) -> ResultRow:
    """The row with `accuracy` set to its accuracy of the basis kind (None when it has none)."""
    if basis is None or not basis.agreement:
        return row if basis else dataclasses.replace(row, accuracy=None)
    agree = row.agreement
    same = agree is not None and str(agree.reference) == basis.reference
    return dataclasses.replace(row, accuracy=agree if same else None)


def _accuracy_note(row: ResultRow, basis: AccuracyBasis | None) -> str:
    """Why a row's accuracy is not compared, or ''."""
    agree = row.agreement
    if row_ap(row) is None and agree and basis and not basis.agreement:
        return f"has agreement mAP vs {agree.reference} only (no labels): not compared with labelled mAP"
    if agree and basis and basis.agreement and str(agree.reference) != basis.reference:
        return f"agreement mAP vs {agree.reference}: a different reference, not compared"
    if agree and basis is None:
        return "agreement mAP against different references across reports: not compared"
    return ""


def _agreement_words(text: str) -> str:
    """Name the AP of an agreement-basis comparison for what it is."""
    text = text.replace("AP50-95", "agreement mAP").replace("mAP drop", "agreement mAP drop")
    while "agreement agreement" in text:
        text = text.replace("agreement agreement", "agreement")
    return text


def _check_out(check: BudgetCheck, basis: AccuracyBasis | None) -> dict[str, Any]:
    """A check as plain data, its mAP-drop message reworded when the basis is agreement mAP."""
    out = check.to_dict()
    if check.name == "map_drop" and basis and basis.agreement:
        out["message"] = _agreement_words(check.message)
    return out


def _agreement_out(agree: Accuracy | None) -> dict[str, Any] | None:
    if agree is None:
        return None
    return {"reference": agree.reference, "AP": ap_of(agree), "AP50": ap_of(agree, ap50=True)}


def _row_out(e: Entry, budgets: Budgets, per_class_drop: float,
             basis: AccuracyBasis | None = None) -> dict[str, Any]:
    row, base = _view(e.row, basis), _view(e.baseline.row, basis) if e.baseline else None
    e.metrics = Metrics.of(row)
    e.checks = _checks(e, row, base, budgets) if e.ok else []
    same_data = base is not None and not _other_data(e)
    skip = () if same_data else _AP_KEYS
    return {
        "label": e.label, "report": e.report, "model": e.identity.text, "proxy": e.proxy, "verified": row.verified,
        **_sample_out(e.row), "noise": noise_text(e.row), "backend": row.backend,
        "precision": row.precision, "precision_label": row.precision_label, "quantization_route": row.quant_route,
        "precision_used": row.precision_used,
        "imgsz": row.imgsz, "threads": row.threads, "status": row.status,
        "error": row.error, "baseline": e.baseline.label if e.baseline else None,
        "baseline_note": e.note, "baseline_data_note": _data_note(e), "metrics": dataclasses.asdict(e.metrics),
        "deltas": _deltas(e.metrics, Metrics.of(base), skip) if base and e.baseline is not e else {},
        "per_class_drops": _class_drops(row, base, per_class_drop) if base and same_data else [],
        "agreement": _agreement_out(e.row.agreement),
        "accuracy_note": _accuracy_note(e.row, basis),
        "parity": row.parity.to_dict() if row.parity else None,
        "quantization": row.quantization.summary(row.layers) if row.quantization else None,
        "pareto": None, "dominated_by": None,
        "budget_checks": [_check_out(c, basis) for c in e.checks],
        "recommended": False, "rejected": [],
    }


def _sample_out(row: ResultRow) -> dict[str, Any]:
    """The row's flags ('kind: reason' and the distinct kinds), timed iterations `n` and the sample count
    behind its total p99 (bench.report.markdown.p99_text marks it when too few)."""
    total, n = row.total, sample_count(row)
    return {"flags": row.flag_texts(), "flag_kinds": list(dict.fromkeys(f.kind for f in row.flags or ())),
            "n": n, "p99_samples": (total.count if total else None) or n}


def _checks(e: Entry, row: ResultRow, base: ResultRow | None, budgets: Budgets) -> list[BudgetCheck]:
    """The budget checks of an ok row; against a baseline of another data set the mAP drop is unknown."""
    if not _other_data(e):
        return check_row(row, budgets, base)
    checks = check_row(row, budgets, None)
    why = f"mAP drop unknown: {_data_note(e, ', so their AP50-95 is not comparable')}"
    return [dataclasses.replace(c, message=why) if c.name == "map_drop" and row_ap(row) is not None else c
            for c in checks]


def _deltas(m: Metrics, b: Metrics, skip: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Each metric minus the baseline's (abs and rel), but those in `skip`."""
    out = {}
    for key in METRICS:
        mine, base = getattr(m, key), getattr(b, key)
        if key in skip:
            continue
        if mine is not None and base is not None:
            out[key] = {"abs": mine - base, "rel": (mine - base) / base if base else None}
    return out


def _class_drops(row: ResultRow, base: ResultRow, threshold: float) -> list[dict[str, Any]]:
    mine = (row.accuracy.per_class_ap if row.accuracy else None) or {}
    theirs = (base.accuracy.per_class_ap if base.accuracy else None) or {}
    drops = []
    for name, b in theirs.items():
        v = mine.get(name)
        if v is not None and as_float(v) is not None and as_float(b) is not None and b - v > threshold:
            drops.append({"class": name, "baseline": b, "value": v, "drop": b - v})
    return sorted(drops, key=lambda d: -d["drop"])


def _mark_pareto(entries: list[Entry]) -> None:
    """On the front: an ok row with AP and p99 that no other row matches or beats on both."""
    placed = [e for e in entries if e.placed]
    for e in placed:
        by = _dominator(e, placed)
        e.pareto = by is None
        e.out["dominated_by"] = by.label if by else None


def _dominator(e: Entry, others: list[Entry]) -> Entry | None:
    """The first of `others` scored on the same data set, at least as accurate and as fast as `e`, and
    better in one."""
    ap, p99 = e.metrics.AP, e.metrics.p99
    if not e.placed or ap is None or p99 is None:
        return None
    for o in others:
        o_ap, o_p99 = o.metrics.AP, o.metrics.p99
        if (o is not e and o.placed and o.identity.data == e.identity.data and o_ap is not None
                and o_p99 is not None and o_ap >= ap and o_p99 <= p99 and (o_ap > ap or o_p99 < p99)):
            return o
    return None


def _rank(e: Entry, by_ap: bool = True) -> tuple[float, float, float]:
    m = e.metrics
    ap = _or(m.AP, -math.inf) if by_ap else 0.0
    return (_or(m.p99, math.inf), -ap, _or(m.peak_rss_mb, math.inf))


def _choose(entries: list[Entry]) -> Entry | None:
    """The fastest (p99) row meeting every budget; ties: higher AP (only when every such row was scored
    on one data set), then less memory."""
    for e in entries:
        e.rejected = _budget_reasons(e)
    passing = [e for e in entries if not e.rejected]
    by_ap = len({e.identity.data for e in passing}) <= 1
    pick = min(passing, key=lambda e: _rank(e, by_ap)) if passing else None
    for e in passing:
        if pick is not None and e is not pick:
            e.rejected = _ranking_reasons(e, pick, _dominator(e, passing))
    return pick


def _budget_reasons(e: Entry) -> list[dict[str, str]]:
    if e.row.verified == NOT_MEASURABLE:  # whatever its status says, nothing of it was measured on its hardware
        why = e.row.error or "this host cannot run its backend"
        return [{"code": "not_measurable", "message": f"not measurable, never recommended: {why}"}]
    if e.row.verified == EMULATED:  # its accuracy is the ARM kernels', its timings the emulator's
        return [{"code": "emulated", "message": "emulated: accuracy and parity valid, timings not; never ranked "
                                                "by speed nor recommended"}]
    if e.row.status == "suspect":
        why = "; ".join(f.reason for f in e.row.flags or () if f.kind == "suspect") or "no reason recorded"
        return [{"code": "suspect", "message": f"suspect, never recommended: {why}"}]
    if not e.ok:
        status = str(e.row.status)
        return [{"code": status, "message": f"{status}: {e.row.error or 'no reason recorded'}"}]
    reasons = [_check_reason(e, c) for c in e.checks if c.status != "pass"]
    parity = e.row.parity
    if parity and parity.passed is False:
        why = "; ".join(parity.failures or []) or "outputs drift from the source model"
        reasons.append({"code": "parity_fail", "message": f"parity FAIL against the source model ({why})"})
    return reasons


def _check_reason(e: Entry, check: BudgetCheck) -> dict[str, str]:
    """The rejection of a check that did not pass; an unknown mAP drop says what is missing."""
    code = _CHECK_CODES.get((check.name, check.status), check.name)
    if code == "missing_map" and e.metrics.AP is not None:
        if e.baseline is None:
            why = e.note.removeprefix("no baseline: ")
            return {"code": "no_baseline", "message": f"{_REASON_TEXT['no_baseline']}: {why}"}
        code = "baseline_other_data" if _other_data(e) else "baseline_missing_map"
    return {"code": code, "message": check.message}


def reason_text(code: str) -> str:
    """The words of a rejection code in a row's verdict cell ("over p99", "no baseline for ...")."""
    return _REASON_TEXT.get(code, code.replace("_", " "))


def _ranking_reasons(e: Entry, pick: Entry, by: Entry | None) -> list[dict[str, str]]:
    """Why a row that meets every budget lost: dominated by another such row, then how it
    compares with the pick (slower, or the tie-breaks)."""
    m, p = e.metrics, pick.metrics
    reasons = []
    if by is not None:
        reasons.append({"code": "dominated", "message": f"dominated by {by.label}, which also meets "
                        "the budgets (AP50-95 as high or higher, p99 as low or lower)"})
    if m.p99 is None:
        reasons.append({"code": "missing_p99", "message": "no p99 latency to rank it by"})
    elif m.p99 != p.p99 and within_noise(e.row, pick.row):
        reasons.append({"code": "within_noise", "message": f"within noise of the pick: p99 {m.p99:.2f} ms vs "
                        f"{_f(p.p99, 2)} ms differ by less than the measured noise "
                        f"({noise_text(e.row)}; pick: {noise_text(pick.row)}), so they are not ranked"})
    elif m.p99 != p.p99:
        reasons.append({"code": "slower", "message": f"meets the budgets but is slower: p99 "
                                                     f"{m.p99:.2f} ms vs {_f(p.p99, 2)} ms"})
    elif e.identity.data == pick.identity.data and _or(m.AP, -math.inf) != _or(p.AP, -math.inf):
        reasons.append({"code": "lower_ap", "message": f"same p99 as the pick, lower AP50-95 "
                                                       f"({_f(m.AP, 3)} vs {_f(p.AP, 3)})"})
    elif _or(m.peak_rss_mb, math.inf) != _or(p.peak_rss_mb, math.inf):
        reasons.append({"code": "more_memory", "message": f"same p99 and AP50-95 as the pick, more "
                        f"memory ({_f(m.peak_rss_mb, 1)} vs {_f(p.peak_rss_mb, 1)} MiB)"})
    else:
        reasons.append({"code": "tie", "message": "ties the pick on p99, AP50-95 and memory; "
                                                  "the pick is listed first"})
    return reasons


def _message(pick: Entry | None, entries: list[Entry], budgets: Budgets) -> str:
    limits = budget_text(budgets)
    if pick is None:
        if not any(e.row.measured for e in entries):
            return "no configuration ran (every row failed or was skipped); nothing is recommended"
        if not any(e.ok for e in entries):
            return "every configuration that ran is suspect (see each row's reason); nothing is recommended"
        return f"no configuration meets the budgets ({limits}); nothing is recommended"
    n = sum(1 for e in entries if not _budget_reasons(e))
    m = pick.metrics
    model = f", model {pick.identity.text}" if len({x.identity for x in entries}) > 1 else ""
    head = (f"recommended: {pick.label} (p99 {_f(m.p99, 2)} ms, AP50-95 {_f(m.AP, 3)}, "
            f"peak {_f(m.peak_rss_mb, 1)} MiB{model})")
    tail = _caveats(pick, entries)
    if limits == "no budgets":
        return (f"{head}: the fastest by p99 of {n} rows; no budgets were set, so accuracy was "
                f"not weighed (pass --max-map-drop or --profile){tail}")
    return f"{head}: the fastest by p99 of {n} meeting {limits}{tail}"


def _caveats(pick: Entry, entries: list[Entry]) -> str:
    """What the recommendation cannot claim: rows within noise of it, a proxy measurement."""
    tail = ""
    tied = [e.label for e in entries if e is not pick and any(r["code"] == "within_noise" for r in e.rejected)]
    if tied:
        tail += f"; within noise of it, not ranked: {', '.join(tied)}"
    if pick.proxy:
        tail += "; measured on a proxy host, not on the profile's device"
    return tail


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _f(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
