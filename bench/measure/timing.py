"""Latency measurement: per-stage timers, the warm-up + measure loop, summary statistics.

All durations are taken with `time.perf_counter_ns` and summarised in milliseconds.

Typical use::

    def one_iteration(t: StageTimer) -> None:
        x = preprocess(frame);   t.lap("preprocess")
        y = runtime.infer(x);    t.lap("inference")
        postprocess(y);          t.lap("postprocess")

    result = run_until(one_iteration, warmup=10, min_iterations=100, min_duration_s=10.0)
    latency_ms = result.summary()   # {"preprocess": {...}, ..., "total": {..., "fps": ...}}
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np

#: How percentiles are computed: numpy's default linear interpolation between closest ranks
#: (`np.percentile(a, q, method="linear")`, the same as Excel's PERCENTILE.INC / R type 7).
PERCENTILE_METHOD: Final[Literal["linear"]] = "linear"

#: Standard deviation is the sample standard deviation (divides by n - 1); 0.0 for one sample.
STDEV_DDOF = 1

#: Name of the per-iteration stage that spans the whole iteration.
TOTAL = "total"

#: Default stage names of a detector iteration, in order.
DETECTOR_STAGES = ("preprocess", "inference", "postprocess")

_PERCENTILES = (50, 90, 95, 99)
_Clock = Callable[[], int]


def summarize(samples_ns: Sequence[int], fps: bool = False) -> dict[str, float | int]:
    """Summarise durations (ns) in ms: count, min, mean, p50, p90, p95, p99, max, stdev.

    With `fps=True` (use it for the "total" stage) adds `fps` = 1000 / mean.
    Raises ValueError on an empty sequence.
    """
    if len(samples_ns) == 0:
        raise ValueError("cannot summarise an empty list of samples")
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p95, p99 = np.percentile(ms, _PERCENTILES, method=PERCENTILE_METHOD)
    mean = float(ms.mean())
    out: dict[str, float | int] = {
        "count": int(ms.size),
        "min": float(ms.min()),
        "mean": mean,
        "p50": float(p50),
        "p90": float(p90),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(ms.max()),
        "stdev": float(ms.std(ddof=STDEV_DDOF)) if ms.size > 1 else 0.0,
    }
    if fps:
        out["fps"] = 1000.0 / mean if mean > 0 else math.inf
    return out


class StageTimer:
    """Records per-stage durations of repeated iterations with little overhead.

    `start()` opens an iteration, `lap(stage)` records the time since the previous mark
    under `stage`, `end_iteration()` records "total" = last lap - start (so totals equal
    the sum of the stages when every stage is lapped every iteration). An iteration with no
    laps records the time from `start()` to `end_iteration()` as its total.
    """

    __slots__ = ("_clock", "_samples", "_totals", "_t0", "_last")

    def __init__(self, stages: Sequence[str] = (), clock: _Clock = time.perf_counter_ns) -> None:
        if TOTAL in stages:
            raise ValueError(f"'{TOTAL}' is recorded by end_iteration(); do not name a stage so")
        self._clock = clock
        self._samples: dict[str, list[int]] = {name: [] for name in stages}
        self._totals: list[int] = []
        self._t0 = 0
        self._last = 0

    def start(self) -> None:
        """Open an iteration."""
        self._t0 = self._last = self._clock()

    def lap(self, stage: str) -> None:
        """Record the time since the previous mark (start or lap) under `stage`."""
        now = self._clock()
        try:
            self._samples[stage].append(now - self._last)
        except KeyError:
            if stage == TOTAL:
                raise ValueError(f"'{TOTAL}' is recorded by end_iteration()") from None
            self._samples[stage] = [now - self._last]
        self._last = now

    def add(self, stage: str, ns: int) -> None:
        """Record a duration measured elsewhere (e.g. a GPU runtime's CUDA-event times) under `stage`,
        without moving the lap mark: a part of a lapped stage, not a stage of the total."""
        if stage == TOTAL:
            raise ValueError(f"'{TOTAL}' is recorded by end_iteration()")
        self._samples.setdefault(stage, []).append(int(ns))

    def end_iteration(self) -> None:
        """Close the iteration, recording its total."""
        last = self._last
        if last == self._t0:
            last = self._clock()
        self._totals.append(last - self._t0)

    @property
    def iterations(self) -> int:
        """Number of completed iterations."""
        return len(self._totals)

    @property
    def stages(self) -> tuple[str, ...]:
        """Stage names in the order they were first seen (without "total")."""
        return tuple(self._samples)

    def samples(self) -> dict[str, list[int]]:
        """Raw durations (ns) per stage, plus "total"; copies."""
        out = {name: list(values) for name, values in self._samples.items()}
        out[TOTAL] = list(self._totals)
        return out

    def summary(self) -> dict[str, dict[str, float | int]]:
        """`summarize` of every stage that has samples, plus "total" (with fps)."""
        out = {name: summarize(v) for name, v in self._samples.items() if v}
        if self._totals:
            out[TOTAL] = summarize(self._totals, fps=True)
        return out

    def reset(self) -> None:
        """Drop all recorded samples, keeping the stage names."""
        for values in self._samples.values():
            values.clear()
        self._totals.clear()


@dataclass(frozen=True)
class LoopResult:
    """What `run_until` measured and why it stopped."""

    timer: StageTimer
    iterations: int
    duration_s: float
    warmup: int
    stopped_by: str  # "minimums_met" | "max_iterations" | "max_duration"

    def summary(self) -> dict[str, dict[str, float | int]]:
        """Per-stage latency summaries in ms (see `StageTimer.summary`)."""
        return self.timer.summary()


@dataclass(frozen=True)
class BenchLoop:
    """Loop settings: warm-up calls, then run until BOTH minimums are met (MLPerf-style).

    `max_iterations` / `max_duration_s` are optional hard caps that end the run early even
    when a minimum is not met (the result's `stopped_by` says which cap).
    """

    warmup: int = 10
    min_iterations: int = 100
    min_duration_s: float = 10.0
    max_iterations: int | None = None
    max_duration_s: float | None = None
    progress_interval_s: float = 0.5
    clock: _Clock = field(default=time.perf_counter_ns, repr=False)

    def __post_init__(self) -> None:
        _check_settings(self)

    def run(
        self,
        fn: Callable[[StageTimer], object],
        progress: Callable[[int, float], None] | None = None,
        stages: Sequence[str] = DETECTOR_STAGES,
    ) -> LoopResult:
        """Call `fn(timer)` repeatedly; `fn` laps the stages, the loop opens/closes iterations.

        `progress(iterations_done, elapsed_s)` is called between iterations at most every
        `progress_interval_s`, and once at the end. Exceptions from `fn` propagate.
        """
        clock = self.clock
        scratch = StageTimer(stages, clock)
        for _ in range(self.warmup):
            scratch.start()
            fn(scratch)
            scratch.end_iteration()
        timer = StageTimer(stages, clock)
        t_begin = clock()
        next_report = t_begin + int(self.progress_interval_s * 1e9)
        n = 0
        while True:
            timer.start()
            fn(timer)
            timer.end_iteration()
            n += 1
            now = clock()
            reason = self._stop_reason(n, now - t_begin)
            if progress is not None and (reason or now >= next_report):
                progress(n, (now - t_begin) / 1e9)
                next_report = now + int(self.progress_interval_s * 1e9)
            if reason:
                return LoopResult(timer, n, (now - t_begin) / 1e9, self.warmup, reason)

    def _stop_reason(self, n: int, elapsed_ns: int) -> str:
        """Why the loop stops after `n` iterations and `elapsed_ns`, or "" to go on."""
        if n >= self.min_iterations and elapsed_ns >= self.min_duration_s * 1e9:
            return "minimums_met"
        if self.max_iterations is not None and n >= self.max_iterations:
            return "max_iterations"
        if self.max_duration_s is not None and elapsed_ns >= self.max_duration_s * 1e9:
            return "max_duration"
        return ""


def run_until(
    fn: Callable[[StageTimer], object],
    warmup: int,
    min_iterations: int,
    min_duration_s: float,
    max_iterations: int | None = None,
    max_duration_s: float | None = None,
    progress: Callable[[int, float], None] | None = None,
    stages: Sequence[str] = DETECTOR_STAGES,
) -> LoopResult:
    """Warm up `warmup` calls, then call `fn(timer)` until both minimums are met (or a cap)."""
    loop = BenchLoop(warmup, min_iterations, min_duration_s, max_iterations, max_duration_s)
    return loop.run(fn, progress=progress, stages=stages)


def timer_overhead_ns(n: int = 100_000, stages: Sequence[str] = DETECTOR_STAGES) -> float:
    """Harness cost per iteration (ns): start + one lap per stage + end_iteration, empty body.

    Measured as the time of `n` timed empty iterations minus `n` bare loop turns.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    timer = StageTimer(stages)
    start, lap, end = timer.start, timer.lap, timer.end_iteration
    names = tuple(stages)
    clock = time.perf_counter_ns
    t0 = clock()
    for _ in range(n):
        start()
        for name in names:
            lap(name)
        end()
    timed = clock() - t0
    t0 = clock()
    for _ in range(n):
        for _name in names:
            pass
    bare = clock() - t0
    return max(0.0, (timed - bare) / n)


def _check_settings(loop: BenchLoop) -> None:
    """Reject negative or contradictory loop settings with one clear line."""
    if loop.warmup < 0 or loop.min_iterations < 1 or loop.min_duration_s < 0:
        raise ValueError(
            "need warmup >= 0, min_iterations >= 1, min_duration_s >= 0; got "
            f"{loop.warmup}, {loop.min_iterations}, {loop.min_duration_s}"
        )
    if loop.max_iterations is not None and loop.max_iterations < loop.min_iterations:
        raise ValueError(
            f"max_iterations ({loop.max_iterations}) < min_iterations ({loop.min_iterations})"
        )
    if loop.max_duration_s is not None and loop.max_duration_s < loop.min_duration_s:
        raise ValueError(
            f"max_duration_s ({loop.max_duration_s}) < min_duration_s ({loop.min_duration_s})"
        )
