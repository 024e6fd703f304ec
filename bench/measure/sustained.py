"""Sustained mode: single-stream for a fixed duration, split into windows with sensor readings.

The timed loop is bench.measure.timing's BenchLoop around the same iteration `edgebench run` times
(bench.measure.runner.detector_step); its progress callback marks window ends and reads the sensors
between iterations, so sensor reads are never inside a timed iteration. `run_sustained` runs in
a child process (bench.sweep.isolate); `sustained_section` is the parent side that makes the report's
"sustained" section (see bench.report.sustained for the windows, drift and verdict rules).
"""
from __future__ import annotations

import sys
from collections.abc import Callable

from bench.measure.early_stop import early_stopping
from bench.measure.runner import MAX_TIMING_FRAMES, MeasureSpec, detector_step, open_detector
from bench.measure.thermal import SensorProbe, SensorReading
from bench.measure.timing import BenchLoop, summarize
from bench.report.records import LatencyStats
from bench.report.sustained import THRESHOLDS, analyse, default_window_s
from bench.report.sustained_rows import EarlyStopping, SensorSource, SustainedSection
from bench.sweep.isolate import run_isolated
from edge_sdk.frames import read_image

#: Cheap sensor reads (sysfs, psutil) per window; the external tools run once per window end.
READS_PER_WINDOW = 4
_BAR = 24


class WindowTracker:
    """BenchLoop progress callback: records (iterations, seconds) at each window end, reads the
    sensors (slow sources at window ends only) and draws a progress bar."""

    def __init__(self, probe: SensorProbe, duration_s: float, window_s: float,
                 show: Callable[[int, float, int], None] | None = None) -> None:
        self.probe, self.duration_s, self.window_s, self.show = probe, duration_s, window_s, show
        self.boundaries: list[tuple[int, float]] = []
        self.readings: list[SensorReading] = []
        self._next_end, self._next_read = window_s, window_s / READS_PER_WINDOW

    def start(self) -> None:
        """The reading at t = 0 (before warm-up), which also primes steal-time accounting."""
        self.readings.append(self.probe.read(0.0, slow=True))

    def __call__(self, n: int, elapsed_s: float) -> None:
        if elapsed_s >= self._next_end or elapsed_s >= self.duration_s:
            self.boundaries.append((n, elapsed_s))
            self.readings.append(self.probe.read(elapsed_s, slow=True))
            while self._next_end <= elapsed_s:
                self._next_end += self.window_s
            self._next_read = elapsed_s + self.window_s / READS_PER_WINDOW
        elif elapsed_s >= self._next_read:
            self.readings.append(self.probe.read(elapsed_s, slow=False))
            self._next_read = elapsed_s + self.window_s / READS_PER_WINDOW
        if self.show:
            self.show(n, elapsed_s, len(self.boundaries))

    def finish(self, iterations: int, duration_s: float) -> None:
        """Close the last window if the loop stopped between window ends."""
        if not self.boundaries or self.boundaries[-1][0] != iterations:
            self.boundaries.append((iterations, duration_s))
            self.readings.append(self.probe.read(duration_s, slow=True))


def run_sustained(spec: MeasureSpec, duration_s: float, window_s: float | None = None) -> SustainedSection:
    """Time `spec` single-stream for `duration_s` seconds; the report's "sustained" section."""
    window_s = window_s or default_window_s(duration_s)
    probe = SensorProbe()
    det = open_detector(spec)
    frames = [read_image(p) for p in spec.timing_images[:MAX_TIMING_FRAMES]]
    tracker = WindowTracker(probe, duration_s, window_s, _bar_printer(spec.label, duration_s))
    tracker.start()
    loop = BenchLoop(spec.warmup, 1, duration_s, max_duration_s=duration_s,
                     progress_interval_s=min(0.1, window_s / 10))
    result = loop.run(detector_step(det, frames), progress=tracker)
    tracker.finish(result.iterations, result.duration_s)
    samples_ns = result.timer.samples()["total"]
    totals_ms = [v / 1e6 for v in samples_ns]
    found = analyse(totals_ms, tracker.boundaries, tracker.readings)
    return SustainedSection(
        status="ok", error=None, backend=spec.backend, precision=spec.precision,
        precision_used=det.runtime.precision_used,
        duration_s=duration_s, measured_s=result.duration_s, window_s=window_s,
        iterations=result.iterations, latency_ms=LatencyStats.from_dict(summarize(samples_ns, fps=True)),
        windows=found.windows, drift=found.drift, verdict=found.verdict, verdict_reason=found.verdict_reason,
        early_stopping=EarlyStopping.from_dict(early_stopping(totals_ms)),
        sensors={k: SensorSource.from_dict(v) for k, v in probe.sources().items()}, thresholds=dict(THRESHOLDS),
    )


def sustained_section(spec: MeasureSpec, duration_s: float, window_s: float | None,
                      timeout_s: float) -> SustainedSection:
    """Run `run_sustained` in a child; a crash, hang or error becomes a section with its error."""
    outcome = run_isolated(run_sustained, spec, duration_s, window_s, timeout_s=duration_s + timeout_s)
    if outcome.status == "ok":
        section: SustainedSection = outcome.value
        return section
    return SustainedSection(status="failed", error=f"{outcome.status}: {outcome.error}", backend=spec.backend,
                            precision=spec.precision, duration_s=duration_s, window_s=window_s)


def skipped_section(duration_s: float, reason: str) -> SustainedSection:
    """The section of a sustained run that could not start (e.g. no precision ran)."""
    return SustainedSection(status="skipped", error=reason, duration_s=duration_s)


def _bar_printer(label: str, duration_s: float) -> Callable[[int, float, int], None] | None:
    """A one-line progress bar over the duration on stderr (only when it is a terminal)."""
    if not sys.stderr.isatty():
        return None

    def show(n: int, elapsed_s: float, windows: int) -> None:
        done = min(1.0, elapsed_s / duration_s) if duration_s else 1.0
        bar = "#" * int(done * _BAR) + "-" * (_BAR - int(done * _BAR))
        sys.stderr.write(f"\r  {label:<24} sustained [{bar}] {elapsed_s:5.0f}/{duration_s:.0f} s "
                         f"{n:>7} it, {windows} windows ")
        if done >= 1.0:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show
