"""Budget checks of one result row (p99, memory, mAP drop) and the profile's reference-FPS check.

A check whose input is missing (no latency, no accuracy, no baseline) is "unknown", never "pass":
a configuration is only known to meet a budget when it was measured against it.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from bench.report.rows import Accuracy, BudgetCheck, ReferenceCheck, Report, ResultRow
from edge_sdk.profiles import Budgets, Reference, load_profile

__all__ = ["BudgetCheck", "CHECK_LABELS", "check_row", "reference_check", "attach_checks",
           "fp32_baseline", "budgets_from", "resolve_budgets", "budget_text", "BUDGET_FLAGS",
           "verdict", "row_verdict", "row_p99", "row_memory", "row_ap", "ap_of", "as_float"]

PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"
#: check name -> short label used in verdicts ("ok; over budget: p99")
CHECK_LABELS = {"p99": "p99", "memory": "memory", "map_drop": "mAP drop"}
#: Budgets field -> the command-line flag that sets it
BUDGET_FLAGS = {"max_p99_ms": "--max-p99-ms", "max_map_drop": "--max-map-drop",
                "max_memory_mb": "--max-memory-mb"}


def row_p99(row: ResultRow) -> float | None:
    """p99 of the total latency in ms, or None."""
    total = row.total
    return as_float(total.p99) if total else None


def row_memory(row: ResultRow) -> float | None:
    """Peak RSS in MiB (sampled, else as reported by the OS), or None."""
    memory = row.memory
    if memory is None:
        return None
    value = as_float(memory.peak_rss_mb)
    return value if value is not None else as_float(memory.peak_rss_os_mb)


def ap_of(accuracy: Accuracy | None, ap50: bool = False) -> float | None:
    """AP50-95 (or AP50) of an accuracy record, or None."""
    if accuracy is None:
        return None
    return as_float(accuracy.AP50 if ap50 else accuracy.AP)


def row_ap(row: ResultRow, ap50: bool = False) -> float | None:
    """COCO AP50-95 (or AP50) of a row's labelled accuracy, or None."""
    return ap_of(row.accuracy, ap50)


def check_row(row: ResultRow, budgets: Budgets, baseline_row: ResultRow | None = None) -> list[BudgetCheck]:
    """One check per budget that is set; mAP drop is the baseline's AP50-95 minus the row's."""
    checks = []
    if budgets.max_p99_ms is not None:
        checks.append(_limit_check("p99", row_p99(row), budgets.max_p99_ms, "ms",
                                   "no total latency in the row"))
    if budgets.max_memory_mb is not None:
        checks.append(_limit_check("memory", row_memory(row), budgets.max_memory_mb, "MiB",
                                   "no peak RSS in the row"))
    if budgets.max_map_drop is not None:
        checks.append(_map_drop_check(row, baseline_row, budgets.max_map_drop))
    return checks


def _limit_check(name: str, value: float | None, limit: float, unit: str,
                 missing: str) -> BudgetCheck:
    label = CHECK_LABELS[name]
    if value is None:
        return BudgetCheck(name, limit, None, UNKNOWN, f"{label} unknown: {missing}")
    if value > limit:
        return BudgetCheck(name, limit, value, FAIL,
                           f"over {label}: {value:.2f} {unit} > {limit:g} {unit}")
    return BudgetCheck(name, limit, value, PASS, f"{label} {value:.2f} {unit} <= {limit:g} {unit}")


def _map_drop_check(row: ResultRow, baseline: ResultRow | None, limit: float) -> BudgetCheck:
    def unknown(why: str) -> BudgetCheck:
        return BudgetCheck("map_drop", limit, None, UNKNOWN, why)

    ap = row_ap(row)
    if ap is None:
        return unknown("missing mAP: the row has no AP50-95 and a mAP budget is set")
    if baseline is None:
        return unknown("mAP drop unknown: no baseline row to measure the AP50-95 drop against")
    base_ap = row_ap(baseline)
    if base_ap is None:
        return unknown(f"mAP drop unknown: the baseline {_name(baseline)} has no AP50-95")
    drop = base_ap - ap
    vs = f"(AP50-95 {ap:.3f} vs {base_ap:.3f} of {_name(baseline)})"
    if drop > limit + 1e-12:
        return BudgetCheck("map_drop", limit, drop, FAIL,
                           f"mAP drop too large: {drop:.3f} > {limit:g} {vs}")
    return BudgetCheck("map_drop", limit, drop, PASS, f"mAP drop {drop:.3f} <= {limit:g} {vs}")


def verdict(checks: Sequence[BudgetCheck] | None, proxy: bool = False) -> str:
    """A compact verdict of stored checks: "" (no budgets), "within budget",
    "over budget: p99, memory", "budget unknown: mAP drop", or both joined by "; ". With `proxy`
    (measured on another host than the profile's device) each says so: "within budget (proxy)"."""
    if not checks:
        return ""
    tag = " (proxy)" if proxy else ""
    failed = [CHECK_LABELS.get(c.name, c.name) for c in checks if c.status == FAIL]
    unknown = [CHECK_LABELS.get(c.name, c.name) for c in checks if c.status == UNKNOWN]
    parts = []
    if failed:
        parts.append(f"over budget{tag}: " + ", ".join(failed))
    if unknown:
        parts.append(("unknown: " if failed else f"budget unknown{tag}: ") + ", ".join(unknown))
    return "; ".join(parts) or f"within budget{tag}"


def row_verdict(row: ResultRow) -> str:
    """`verdict` of a row's budget checks, a proxy verdict when the row has a "proxy" flag."""
    return verdict(row.budget_checks, proxy=row.proxy)


def reference_check(row: ResultRow, reference: Reference | Mapping[str, Any] | None,
                    host_matches: bool) -> ReferenceCheck | None:
    """Is the row's FPS inside the profile's reference range? None when there is no reference.

    The check's status is "inside" | "below" | "above" | "not checked"; it is only checked on the
    profile's own hardware at the reference's precision and input size.
    """
    ref = _reference_dict(reference)
    if ref is None:
        return None
    lo, hi = (float(v) for v in ref["fps"])
    fps = as_float(row.fps)
    out = ReferenceCheck(checked=False, status="not checked", fps=fps, range=[lo, hi],
                         precision=ref.get("precision"), reason="")
    why = _why_not_checked(row, ref, host_matches)
    if why or fps is None:
        return dataclasses.replace(out, reason=why)
    status = "below" if fps < lo else "above" if fps > hi else "inside"
    reason = (f"{fps:.1f} FPS is {status} the reference range {lo:g}-{hi:g} FPS "
              f"({ref.get('precision')}, {ref.get('model', '?')}@{ref.get('imgsz', '?')})")
    return dataclasses.replace(out, checked=True, status=status, reason=reason)


def _why_not_checked(row: ResultRow, ref: Mapping[str, Any], host_matches: bool) -> str:
    precision = row.precision_used or row.precision
    if not row.ok or as_float(row.fps) is None:
        return "not checked: the row has no measured FPS"
    if not host_matches:
        return "not checked: this host is not the profile's device"
    if precision != ref.get("precision"):
        return (f"not checked: the reference is for {ref.get('precision')}, "
                f"this row ran {precision}")
    size = _max_side(row.imgsz)
    if size is not None and ref.get("imgsz") is not None and size != int(ref["imgsz"]):
        return f"not checked: the reference is at {ref['imgsz']} px, this row ran at {size} px"
    return ""


def fp32_baseline(rows: Sequence[ResultRow], row: ResultRow) -> ResultRow | None:
    """The first ok fp32 row with the row's backend (the row itself when it is one), or None."""
    if row.ok and row.precision == "fp32":
        return row
    for other in rows:
        if other.ok and other.precision == "fp32" and other.backend == row.backend:
            return other
    return None


def attach_checks(rows: Sequence[ResultRow], budgets: Budgets,
                  reference: Reference | Mapping[str, Any] | None, host_matches: bool) -> None:
    """Set `budget_checks` and `reference_check` on every ok row (None on the others)."""
    for row in rows:
        if not row.ok:
            row.budget_checks, row.reference_check = None, None
            continue
        row.budget_checks = check_row(row, budgets, fp32_baseline(rows, row))
        row.reference_check = reference_check(row, reference, host_matches)


def budgets_from(data: Budgets | Mapping[str, Any] | None) -> Budgets:
    """Budgets from a Budgets, a profile's plain `budgets` mapping, or None (no limits)."""
    if isinstance(data, Budgets):
        return data
    data = data or {}
    return Budgets(**{f.name: as_float(data.get(f.name)) for f in dataclasses.fields(Budgets)})


def resolve_budgets(flags: Mapping[str, float | None], profile_name: str | None,
                    reports: Sequence[Report]) -> tuple[Budgets, dict[str, str]]:
    """Each budget from `flags` (keys of BUDGET_FLAGS), else the named profile's budgets, else
    the reports' own profiles (the strictest when they differ); also says where each came from."""
    values: dict[str, float | None] = {}
    sources: dict[str, str] = {}
    profile = load_profile(profile_name) if profile_name else None
    for key, flag in BUDGET_FLAGS.items():
        if flags.get(key) is not None:
            values[key], sources[key] = flags[key], flag
        elif profile is not None:
            values[key] = getattr(profile.budgets, key)
            sources[key] = f"profile {profile.name}"
        else:
            values[key], sources[key] = _report_budget(key, reports)
    return Budgets(**values), {k: v for k, v in sources.items() if values[k] is not None}


def _report_budget(key: str, reports: Sequence[Report]) -> tuple[float | None, str]:
    found: list[tuple[str, float]] = []
    for r in reports:
        value = getattr(budgets_from((r.profile or {}).get("budgets")), key)
        if value is not None:
            found.append((r.profile_name or "?", value))
    if not found:
        return None, ""
    names = ", ".join(dict.fromkeys(name for name, _ in found))
    values = {value for _, value in found}
    if len(values) == 1:
        return values.pop(), f"the reports' profile ({names})"
    return min(values), f"the strictest of the reports' profiles ({names})"


def budget_text(budgets: Budgets) -> str:
    """The budgets in words, e.g. "p99 <= 100 ms, AP50-95 drop <= 0.02" (or "no budgets")."""
    parts = []
    if budgets.max_p99_ms is not None:
        parts.append(f"p99 <= {budgets.max_p99_ms:g} ms")
    if budgets.max_memory_mb is not None:
        parts.append(f"peak memory <= {budgets.max_memory_mb:g} MiB")
    if budgets.max_map_drop is not None:
        parts.append(f"AP50-95 drop <= {budgets.max_map_drop:g}")
    return ", ".join(parts) or "no budgets"


def _reference_dict(reference: Reference | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if reference is None:
        return None
    if isinstance(reference, Reference):
        return dataclasses.asdict(reference)
    return dict(reference) if reference.get("fps") else None


def _name(row: ResultRow) -> str:
    return f"{row.backend}/{row.precision}"


def _max_side(imgsz: Any) -> int | None:
    if isinstance(imgsz, (int, float)) and not isinstance(imgsz, bool):
        return int(imgsz)
    if isinstance(imgsz, (list, tuple)) and imgsz:
        return int(max(imgsz))
    return None


def as_float(value: Any) -> float | None:
    """A finite number as float; None for anything else (missing, NaN, inf, bool, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None  # NaN / inf count as missing
