"""Marking a report made under emulation: every row says so, and nothing of its timing stands as a measurement.

Timings, FPS, peak memory and the budget checks built on them are dropped from the rows (qemu translates
every instruction, so they describe the emulator, not the device); accuracy, agreement, parity and the
precision the engine used stay: those come from the ARM kernels themselves."""
from __future__ import annotations

from typing import Any

from bench.report.rows import EMULATED, NOT_MEASURABLE, Memory, Report, ResultRow

#: budget checks that stay meaningful under emulation
KEPT_CHECKS = ("map_drop",)
#: row flags about timing (noise) or the host standing in (the row's `verified` says emulated instead)
DROPPED_FLAGS = ("noisy", "proxy")


def emulation_note(arch: str, cpu: str, qemu: str) -> str:
    """'emulated arm64 (cortex-a76 under qemu 7.2.22): accuracy and parity valid, timings not'."""
    return f"emulated {arch} ({cpu} under qemu {qemu}): accuracy and parity valid, timings not"


def mark_row(row: ResultRow, facts: dict[str, Any]) -> None:
    """Mark one row as emulated and drop what emulation cannot measure (a row that could not run stays as is)."""
    if row.verified != NOT_MEASURABLE:
        row.verified = EMULATED
    row.extra["emulation"] = dict(facts)
    row.latency_ms = None
    row.fps = None
    row.latency_samples_ms = None
    row.stability = None
    row.reference_check = None
    if row.memory is not None:
        row.memory = Memory(model_size_mb=row.memory.model_size_mb)
    if row.budget_checks is not None:
        row.budget_checks = [c for c in row.budget_checks if c.name in KEPT_CHECKS]
    if row.flags is not None:
        row.flags = [f for f in row.flags if f.kind not in DROPPED_FLAGS] or None


def relocate(report: Report, inner: str, out: str) -> None:
    """Artifact paths written inside (`inner`/...) as they are on the host (`out`/...)."""
    for row in report.results:
        if row.artifact and row.artifact.startswith(inner.rstrip("/") + "/"):
            row.artifact = out.rstrip("/") + row.artifact[len(inner.rstrip("/")):]


def mark_emulated(report: Report, arch: str, cpu: str, qemu: str, wall_s: float | None = None) -> Report:
    """Mark every row and the report (a note, `environment.emulation`); returns the same report."""
    note = emulation_note(arch, cpu, qemu)
    facts: dict[str, Any] = {"arch": arch, "cpu": cpu, "qemu": qemu, "note": note}
    if wall_s is not None:
        facts["wall_s"] = round(wall_s, 1)
    for row in report.results:
        mark_row(row, {k: v for k, v in facts.items() if k != "wall_s"})
    report.environment = {**report.environment, "emulation": facts}
    report.notes = [note + " (latency, FPS and peak memory are left out: they time the emulator)",
                    *(report.notes or [])]
    return report
