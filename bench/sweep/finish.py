"""The end of a run or sweep: gate the rows against each other, attach the budget checks, set the report's
status, and the notes a command prints after its table."""
from __future__ import annotations

from typing import Protocol

from bench.report.budgets import attach_checks
from bench.report.qat_advice import report_advice
from bench.report.rows import Report
from bench.sweep.gates import gate_collapse
from edge_sdk.profiles import DeviceProfile

NOTHING_MEASURED = ("nothing was measured: every configuration was skipped or failed (see each row's "
                    "reason); this report is partial")
#: the same, when some rows could not be measured on this host at all (their artifacts were checked instead)
NOT_MEASURABLE_HERE = ("nothing was measured: latency and accuracy of {} are not measurable on this host (see "
                       "each row: what was converted and checked, and what is missing); this report is partial")


class _HasProfile(Protocol):
    """A run's context (bench.sweep.run.RunContext), as far as finishing needs it."""

    @property
    def profile(self) -> DeviceProfile: ...


def finish_report(report: Report, ctx: _HasProfile, matches: bool) -> None:
    """Gate the rows against each other, attach the budget checks and set the status: "complete",
    or "partial" with a note when no configuration measured (every row skipped or failed)."""
    gate_collapse(report.results)
    attach_checks(report.results, ctx.profile.budgets, ctx.profile.reference, matches)
    if any(r.measured for r in report.results):
        report.status = "complete"
        return
    report.status = "partial"
    report.notes = [*(report.notes or []), nothing_measured(report)]


def nothing_measured(report: Report) -> str:
    """NOTHING_MEASURED, or NOT_MEASURABLE_HERE naming the backends this host cannot run."""
    backends = list(dict.fromkeys(r.backend for r in report.results if r.artifact_check is not None))
    return NOT_MEASURABLE_HERE.format(", ".join(backends)) if backends else NOTHING_MEASURED


def terminal_notes(report: Report) -> list[str]:
    """The lines a command prints after its table: what the data set was used for, an allowed class
    mismatch, what this host cannot run (and what stands in for it), why nothing can be trusted (nothing
    measured, or every measured row suspect), and the QAT command for a PTQ row over the mAP-drop budget."""
    notes = [n for n in report.notes or () if n.startswith(("no --data:", "class mismatch allowed", "class map"))]
    notes += [n for n in report.notes or () if not n.startswith("nothing was measured")
              and ("cannot run on this host" in n or "not measurable on this host" in n)]
    if not any(r.measured for r in report.results):
        return [*notes, nothing_measured(report)]
    if not report.ok_rows:
        notes.append("every measured configuration is suspect (see the status column): none can be trusted")
    return notes + report_advice(report)  # a PTQ row over the mAP-drop budget: the QAT command
