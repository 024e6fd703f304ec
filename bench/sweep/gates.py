"""Sanity gates: a measured row whose numbers cannot be right is flagged "suspect", never "ok".

A suspect row keeps its numbers (tables show them) but compare never recommends it. The gates:

- zero detections on scored images that have labels (or, with --reference, reference boxes);
- detections, but AP50 0 on labelled boxes: nothing it finds is where the labels are (crushed scores,
  boxes in the wrong scale, a class mismatch slipping through);
- parity failed against the source model (`row.parity.passed is False`);
- AP collapsed against its reference: the same backend's fp32 row at the same input size in the
  run, or compare's baseline row. When the reference's AP50-95 is at least MIN_REFERENCE_AP, a row
  whose AP50-95 is below COLLAPSE_RATIO x the reference's is suspect. Below that floor the
  reference itself is too weak for a ratio to mean anything, and the gate does not apply.
"""
from __future__ import annotations

from collections.abc import Sequence

from bench.report.budgets import row_ap
from bench.report.rows import ResultRow

__all__ = ["MIN_REFERENCE_AP", "COLLAPSE_RATIO", "gate_row", "collapse_reason", "gate_collapse"]

#: The reference must reach this AP50-95 for the collapse gate to apply.
MIN_REFERENCE_AP = 0.05
#: A row below this fraction of its reference's AP50-95 has collapsed.
COLLAPSE_RATIO = 0.5
_COLLAPSE = "AP collapsed"


def gate_row(row: ResultRow, detections: int | None, label_boxes: int, reference_boxes: int = 0) -> None:
    """Flag a measured row suspect for zero detections (when there was something to find) or a
    failed parity check. `detections` is None when the row produced none to count (no accuracy pass)."""
    if not row.measured:
        return
    if detections == 0 and (label_boxes or reference_boxes):
        what = f"{label_boxes} labelled boxes" if label_boxes else f"{reference_boxes} reference boxes"
        row.add_flag("suspect", f"zero detections on images with {what}")
    elif detections and label_boxes and _ap50(row) == 0.0:
        row.add_flag("suspect", f"AP50 0.000 on {label_boxes} labelled boxes: none of its {detections} "
                                "detections is where a label is")
    parity = row.parity
    if parity is not None and parity.passed is False:
        why = "; ".join(parity.failures or []) or "outputs drift from the source model"
        row.add_flag("suspect", f"parity failed against the source model ({why})")


def _ap50(row: ResultRow) -> float | None:
    return row.accuracy.AP50 if row.accuracy is not None else None


def collapse_reason(ap: float | None, ref_ap: float | None, ref_name: str) -> str | None:
    """Why an AP50-95 of `ap` collapsed against `ref_ap` (the reference `ref_name`), or None."""
    if ap is None or ref_ap is None or ref_ap < MIN_REFERENCE_AP:
        return None
    if ap >= COLLAPSE_RATIO * ref_ap:
        return None
    return (f"{_COLLAPSE}: AP50-95 {ap:.3f} < {COLLAPSE_RATIO:.0%} of {ref_name}'s {ref_ap:.3f}")


def gate_collapse(rows: Sequence[ResultRow]) -> None:
    """Flag every measured row whose AP50-95 collapsed against the trusted fp32 row of its backend
    at its input size in `rows`. Idempotent: a row already flagged for it is left alone."""
    for row in rows:
        if not row.measured or row.precision == "fp32" or _has_collapse(row):
            continue
        ref = _fp32_reference(rows, row)
        if ref is None:
            continue
        reason = collapse_reason(row_ap(row), row_ap(ref), f"{ref.backend}/{ref.precision}")
        if reason:
            row.add_flag("suspect", reason)


def _fp32_reference(rows: Sequence[ResultRow], row: ResultRow) -> ResultRow | None:
    for other in rows:
        if (other.ok and other.precision == "fp32" and other.backend == row.backend
                and other.size_text == row.size_text):
            return other
    return None


def _has_collapse(row: ResultRow) -> bool:
    return any(f.kind == "suspect" and f.reason.startswith(_COLLAPSE) for f in row.flags or ())
