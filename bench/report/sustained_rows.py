"""Typed "sustained" section of a report (see bench.report.sustained for the analysis rules).

JSON keys by status (unchanged from the dict version): an ok section has every field; a failed
one status, error, backend, precision, duration_s and window_s; a skipped one status, error and
duration_s.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.report.records import LatencyStats, Record

__all__ = ["Window", "Drift", "EarlyStopping", "SensorSource", "SustainedSection"]

_KEYS_BY_STATUS = {
    "failed": ("status", "error", "backend", "precision", "duration_s", "window_s"),
    "skipped": ("status", "error", "duration_s"),
}


@dataclass
class Window(Record):
    """One window of a sustained run: latency percentiles and the sensor readings inside it."""

    t0_s: float | None = None
    t_s: float | None = None
    n: int | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    cpu_mhz: float | None = None
    temp_c: float | None = None
    throttled: bool | None = None
    flags: list[str] = field(default_factory=list)
    steal_pct: float | None = None


@dataclass
class Drift(Record):
    """Last window against the first: ratios for p50/p99/CPU MHz, °C rise, p50 spread."""

    p50: float | None = None
    p99: float | None = None
    cpu_mhz: float | None = None
    temp_c_rise: float | None = None
    p50_spread: float | None = None
    windows: int = 0


@dataclass
class EarlyStopping(Record):
    """bench.measure.early_stop.early_stopping: is the run long enough to bound its percentile?"""

    percentile: float = 99.0
    confidence: float = 0.99
    n: int = 0
    min_queries: int = 0
    overlatency_allowed: int = -1
    enough_samples: bool = False
    estimate_ms: float | None = None
    empirical_ms: float | None = None


@dataclass
class SensorSource(Record):
    """Where one sensor quantity was read from, or why it could not be."""

    source: str | None = None
    reason: str | None = None


@dataclass
class SustainedSection(Record):
    """The report's "sustained" section: status "ok" | "failed" | "skipped"."""

    status: str | None = None
    error: str | None = None
    backend: str | None = None
    precision: str | None = None
    precision_used: str | None = None
    duration_s: float | None = None
    measured_s: float | None = None
    window_s: float | None = None
    iterations: int | None = None
    latency_ms: LatencyStats | None = None
    windows: list[Window] = field(default_factory=list)
    drift: Drift | None = None
    verdict: str | None = None
    verdict_reason: str | None = None
    early_stopping: EarlyStopping | None = None
    sensors: dict[str, SensorSource] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)

    NESTED = {"latency_ms": LatencyStats, "windows": Window, "drift": Drift, "early_stopping": EarlyStopping}
    NESTED_MAPS = {"sensors": SensorSource}

    @property
    def ok(self) -> bool:
        """Whether the sustained run measured."""
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """Every field for an ok section; the keys of its status for a failed or skipped one."""
        out = super().to_dict()
        keep = _KEYS_BY_STATUS.get(self.status or "")
        if keep is None:
            return out
        return {k: v for k, v in out.items() if k in keep or k in self.extra}
