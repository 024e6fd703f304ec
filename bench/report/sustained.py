"""Sustained-run analysis (pure functions): windows, drift, verdict, and the Markdown lines.

Verdict rules, checked in this order (thresholds are the module constants below):

1. **thermally throttled** - a throttle flag was seen in any window (vcgencmd bits 1-3 or a
   newly set sticky bit 17-19 on a Pi, an x86 thermal_throttle counter rising), or the p50
   drifted up by more than STABLE_DRIFT while the hottest sensor reached HOT_C or rose by
   TEMP_RISE_C over the run.
2. **frequency-scaled** - the p50 moved by more than STABLE_DRIFT and the CPU clock moved by at
   least FREQ_CHANGE the opposite way (clock down, latency up; or the governor ramping up).
3. **noisy neighbour** - the latency moved without a clock or temperature cause: the p50 drifted
   by more than STABLE_DRIFT, window p50s spread by more than SPREAD, a window's p99/p50 grew
   past TAIL_BLOWUP times the first window's, or steal time reached STEAL_PCT in a window.
4. **stable** - none of the above: p50 drift within STABLE_DRIFT.

Drift is last window / first window (p50, p99, CPU MHz) and last - first for temperature.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bench.measure.thermal import SensorReading
from bench.measure.timing import PERCENTILE_METHOD
from bench.report.sustained_rows import Drift, SustainedSection, Window

STABLE_DRIFT = 0.05
FREQ_CHANGE = 0.05
HOT_C = 80.0
TEMP_RISE_C = 10.0
SPREAD = 0.10
TAIL_BLOWUP = 1.5
STEAL_PCT = 2.0
VERDICTS = ("stable", "thermally throttled", "frequency-scaled", "noisy neighbour")
THRESHOLDS = {"stable_drift": STABLE_DRIFT, "freq_change": FREQ_CHANGE, "hot_c": HOT_C,
              "temp_rise_c": TEMP_RISE_C, "spread": SPREAD, "tail_blowup": TAIL_BLOWUP, "steal_pct": STEAL_PCT}


@dataclass
class Analysis:
    """What `analyse` finds in one sustained run."""

    windows: list[Window] = field(default_factory=list)
    drift: Drift | None = None
    verdict: str | None = None
    verdict_reason: str = ""


def default_window_s(duration_s: float) -> float:
    """duration / 20, kept between 0.5 s and 10 s."""
    return min(10.0, max(0.5, duration_s / 20.0))


def build_windows(latencies_ms: Sequence[float], boundaries: Sequence[tuple[int, float]],
                  readings: Sequence[SensorReading]) -> list[Window]:
    """Per-window stats. `boundaries` are (iterations done, seconds) at each window's end, in
    order; a reading belongs to the window whose (start, end] holds its t_s (t_s 0 to the first).
    Empty windows are dropped."""
    lat = np.asarray(latencies_ms, dtype=np.float64)
    out, n0, t0 = [], 0, 0.0
    for i, (n1, t1) in enumerate(boundaries):
        mine = [r for r in readings if (t0 < r.t_s <= t1) or (i == 0 and r.t_s <= t1)]
        if n1 > n0:
            out.append(_window(lat[n0:n1], t0, t1, mine))
        n0, t0 = n1, t1
    return out


def _window(lat: np.ndarray, t0: float, t1: float, readings: list[SensorReading]) -> Window:
    p50, p99 = np.percentile(lat, (50, 99), method=PERCENTILE_METHOD)
    mhz = [r.cpu_mhz for r in readings if r.cpu_mhz is not None]
    temps = [r.temp_c for r in readings if r.temp_c is not None]
    flags = [r.throttled for r in readings if r.throttled is not None]
    steal = [r.steal_pct for r in readings if r.steal_pct is not None]
    return Window(
        t0_s=round(t0, 3), t_s=round(t1, 3), n=int(lat.size),
        p50_ms=float(p50), p99_ms=float(p99), mean_ms=float(lat.mean()),
        cpu_mhz=float(np.mean(mhz)) if mhz else None,
        temp_c=float(max(temps)) if temps else None,
        throttled=any(flags) if flags else None,
        flags=sorted({f for r in readings for f in r.flags or ()}),
        steal_pct=float(max(steal)) if steal else None,
    )


def drift(windows: Sequence[Window]) -> Drift:
    """Last window against the first: ratios for p50/p99/CPU MHz, °C difference, p50 spread."""
    first, last = windows[0], windows[-1]
    p50s = [w.p50_ms for w in windows if w.p50_ms is not None]
    return Drift(
        p50=_ratio(last.p50_ms, first.p50_ms),
        p99=_ratio(last.p99_ms, first.p99_ms),
        cpu_mhz=_ratio(last.cpu_mhz, first.cpu_mhz),
        temp_c_rise=(last.temp_c - first.temp_c) if last.temp_c is not None and first.temp_c is not None else None,
        p50_spread=_ratio(max(p50s), min(p50s)) if p50s else None,
        windows=len(windows),
    )


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def verdict(windows: Sequence[Window], d: Drift) -> tuple[str, str]:
    """(verdict, one-line reason) by the rules of the module docstring."""
    d50 = (d.p50 or 1.0) - 1.0
    moved = f"p50 {_pct(d50)} last vs first window"
    throttled = [w for w in windows if w.throttled]
    if throttled:
        flags = sorted({f for w in throttled for f in w.flags or ()})
        return "thermally throttled", (f"throttling seen in {len(throttled)} of {len(windows)} windows "
                                       f"({', '.join(flags) or 'flag set'}); {moved}")
    temps = [w.temp_c for w in windows if w.temp_c is not None]
    if d50 > STABLE_DRIFT and temps and (max(temps) >= HOT_C or max(temps) - temps[0] >= TEMP_RISE_C):
        return "thermally throttled", f"{moved} while the hottest sensor went {temps[0]:.0f} -> {max(temps):.0f} °C"
    f = d.cpu_mhz
    if abs(d50) > STABLE_DRIFT and f is not None and abs(f - 1.0) >= FREQ_CHANGE and (f - 1.0) * d50 < 0:
        return "frequency-scaled", f"{moved} while the CPU clock moved {_pct(f - 1.0)}"
    noisy = _noise(windows, d, d50)
    if noisy:
        return "noisy neighbour", f"{noisy}, with no clock or temperature change to explain it"
    return "stable", f"{moved} (within ±{STABLE_DRIFT:.0%})" + ("" if len(windows) > 1 else "; one window only")


def _noise(windows: Sequence[Window], d: Drift, d50: float) -> str:
    if abs(d50) > STABLE_DRIFT:
        return f"p50 {_pct(d50)} last vs first window"
    if d.p50_spread is not None and d.p50_spread - 1.0 > SPREAD:
        return f"window p50s spread {_pct(d.p50_spread - 1.0)}"
    tails = [w.p99_ms / w.p50_ms for w in windows if w.p99_ms is not None and w.p50_ms]
    if tails and max(tails) > TAIL_BLOWUP * tails[0]:
        return f"a window's p99/p50 grew to {max(tails):.2f} from {tails[0]:.2f}"
    steal = [w.steal_pct for w in windows if w.steal_pct is not None]
    if steal and max(steal) >= STEAL_PCT:
        return f"steal time reached {max(steal):.1f} %"
    return ""


def _pct(x: float) -> str:
    return f"{x:+.1%}"


def analyse(latencies_ms: Sequence[float], boundaries: Sequence[tuple[int, float]],
            readings: Sequence[SensorReading]) -> Analysis:
    """windows, drift, verdict and verdict_reason of one sustained run."""
    windows = build_windows(latencies_ms, boundaries, readings)
    if not windows:
        return Analysis(verdict_reason="no timed iteration")
    d = drift(windows)
    name, reason = verdict(windows, d)
    return Analysis(windows, d, name, reason)


def markdown_lines(section: SustainedSection | None) -> list[str]:
    """The "Sustained run" section of report.md (empty when the report has none)."""
    if section is None:
        return []
    head = ["## Sustained run", ""]
    if not section.ok:
        return head + [f"- {section.status or '?'}: {section.error or 'no reason recorded'}", ""]
    d, es = section.drift or Drift(), section.early_stopping
    lines = [f"- {section.backend}/{section.precision}, {section.measured_s or 0:.0f} s "
             f"in {len(section.windows)} windows of {section.window_s} s: "
             f"**{section.verdict}** ({section.verdict_reason})",
             f"- Drift last/first window: p50 x{_num(d.p50)}, p99 x{_num(d.p99)}, "
             f"CPU clock x{_num(d.cpu_mhz)}, temperature {_num(d.temp_c_rise, 1)} °C"]
    if es:
        lines.append(f"- Early stopping (p{es.percentile:g} at {es.confidence:.0%} confidence): "
                     + (f"{es.n} samples, bound {es.estimate_ms:.2f} ms (empirical {es.empirical_ms:.2f} ms)"
                        if es.enough_samples else
                        f"not enough samples ({es.n} < {es.min_queries})"))
    missing = [f"{k}: {v.reason}" for k, v in section.sensors.items() if not v.source]
    if missing:
        lines.append("- Sensors not available: " + "; ".join(missing))
    return head + lines + [""]


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"
