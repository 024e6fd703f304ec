"""Run stability, measured in the child that times the loop: was the latency steady, and the host quiet?

Three figures, each with a limit (a row past any one is flagged "noisy" by bench.sweep.qualify):

- **window p50 spread**: the timed loop's per-iteration totals split into WINDOWS consecutive windows
  of equal count; spread = (max p50 - min p50) / median of the window p50s. Over SPREAD_LIMIT (10 %)
  the latency moved during the run. Needs MIN_WINDOW_SAMPLES per window, else it is not computed.
- **steal time**: the share of all CPU time the hypervisor gave to other guests (/proc/stat "steal"
  jiffies over all jiffies of the aggregate "cpu" line). At STEAL_LIMIT_PCT (2 %) or more during the
  run, a neighbour took the CPU away.
- **load**: the 1-minute load average (/proc/loadavg) read right after the timed loop. It includes
  the bench's own threads (at most the cores), so a load above the logical core count means more
  runnable work than CPUs: something else competed for them.

The limits are those of the sustained-run verdict (bench.report.sustained: SPREAD, STEAL_PCT).
"Before" figures cover the child from its start to the warm-up (model load); "during" figures the
warm-up and the timed loop. Off Linux (no /proc) load and steal are "unknown", never guessed.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.measure.timing import PERCENTILE_METHOD

WINDOWS = 5
MIN_WINDOW_SAMPLES = 10
SPREAD_LIMIT = 0.10
STEAL_LIMIT_PCT = 2.0
#: Fewer jiffies than this (all CPUs together) between two reads: too short to give a steal share.
MIN_JIFFIES = 20
PROC_LOADAVG = "/proc/loadavg"
PROC_STAT = "/proc/stat"
_STEAL_FIELD = 7  # user nice system idle iowait irq softirq steal (guest is inside user)


def window_p50s(samples: Sequence[float], windows: int = WINDOWS,
                min_per_window: int = MIN_WINDOW_SAMPLES) -> list[float]:
    """p50 of each of `windows` consecutive equal-count windows; [] when a window would have too few."""
    if windows < 1 or len(samples) < windows * min_per_window:
        return []
    parts = np.array_split(np.asarray(samples, dtype=np.float64), windows)
    return [float(np.percentile(p, 50, method=PERCENTILE_METHOD)) for p in parts]


def p50_spread(p50s: Sequence[float]) -> float | None:
    """(max - min) / median of the window p50s; None for fewer than two windows or a zero median."""
    if len(p50s) < 2:
        return None
    median = float(np.median(p50s))
    return (max(p50s) - min(p50s)) / median if median > 0 else None


def parse_loadavg(text: str) -> float | None:
    """The 1-minute load average of /proc/loadavg text, or None when it does not parse."""
    try:
        return float(text.split()[0])
    except (IndexError, ValueError):
        return None


def parse_cpu_jiffies(text: str) -> tuple[int, int] | None:
    """(steal, total) jiffies of the aggregate "cpu" line of /proc/stat text, or None."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            try:
                values = [int(v) for v in parts[1:_STEAL_FIELD + 2]]
            except ValueError:
                return None
            steal = values[_STEAL_FIELD] if len(values) > _STEAL_FIELD else 0
            return steal, sum(values)
    return None


def steal_pct(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Steal time between two (steal, total) reads as % of all CPU time; None when unknown or too short."""
    if before is None or after is None:
        return None
    total = after[1] - before[1]
    if total < MIN_JIFFIES:
        return None
    return 100.0 * max(0, after[0] - before[0]) / total


@dataclass(frozen=True)
class HostSample:
    """One read of the host's load and CPU jiffies (None where this host does not expose them)."""

    load_1m: float | None
    jiffies: tuple[int, int] | None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace")
    except OSError:
        return None


def sample_host(loadavg: str = PROC_LOADAVG, stat: str = PROC_STAT) -> HostSample:
    """Read the load average and the aggregate CPU jiffies now (cheap file reads)."""
    load_text, stat_text = _read(loadavg), _read(stat)
    return HostSample(parse_loadavg(load_text) if load_text else None,
                      parse_cpu_jiffies(stat_text) if stat_text else None)


def stability(totals_ms: Sequence[float], start: HostSample, loop_start: HostSample, end: HostSample,
              cores: int | None = None) -> dict[str, Any]:
    """The row's "stability" entry: window p50s and spread, load and steal before and during the run."""
    p50s = window_p50s(totals_ms)
    spread = p50_spread(p50s)
    known = start.load_1m is not None or start.jiffies is not None
    return {
        "windows": len(p50s), "window_p50_ms": [round(v, 4) for v in p50s],
        "p50_spread": None if spread is None else round(spread, 4),
        "load_before": start.load_1m, "load_during": end.load_1m,
        "cores": cores if cores is not None else os.cpu_count(),
        "steal_before_pct": _round(steal_pct(start.jiffies, loop_start.jiffies)),
        "steal_during_pct": _round(steal_pct(loop_start.jiffies, end.jiffies)),
        "host_source": "/proc/loadavg, /proc/stat" if known else "unknown: no /proc/loadavg or /proc/stat",
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def noise_reasons(spread: float | None, steal_during_pct: float | None, load_during: float | None,
                  cores: int | None, p50s: Sequence[float] = ()) -> list[str]:
    """One reason (with its figures and limit) per figure past its limit; [] for a steady, quiet run."""
    out = []
    if spread is not None and spread > SPREAD_LIMIT:
        span = f" ({min(p50s):.2f}-{max(p50s):.2f} ms)" if p50s else ""
        out.append(f"p50 spread {spread:.1%} across {len(p50s) or WINDOWS} windows{span} "
                   f"> {SPREAD_LIMIT:.0%}")
    if steal_during_pct is not None and steal_during_pct >= STEAL_LIMIT_PCT:
        out.append(f"CPU steal {steal_during_pct:.1f}% during the run >= {STEAL_LIMIT_PCT:g}%")
    if load_during is not None and cores and load_during > cores:
        out.append(f"load {load_during:.2f} during the run > {cores} cores")
    return out
