"""`--rewrite auto`: keep an exact rewrite only when it measurably helps the target.

Each exact rewrite that finds sites in the model is tried on its own: the target artifact is built
with and without it, both are loaded side by side, and the decision uses what the target reports:
- delegated ops (TFLite/XNNPACK: ops left on the CPU reference kernels, delegate partitions) when the
  backend reports delegation; fewer ops off the delegate (or fewer partitions) is a help;
- latency, as the median of interleaved runs (A, B, A, B, ...) in one process so both see the same
  machine state; a median at least `MIN_GAIN` lower is a help, one `MIN_GAIN` higher is a harm.
A rewrite is applied when it helps on either count and harms on neither. Function-changing rewrites
(SiLU -> HardSwish) are never chosen automatically.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters.parity import parity_inputs
from converters.rewrites import REWRITES, rewritten_onnx
from runtimes import load
from runtimes.capabilities import get as capability

#: relative latency change counted as a real difference (below it: noise on a shared machine)
MIN_GAIN = 0.03
RUNS = 30


@dataclass(frozen=True)
class Trial:
    """One rewrite measured against the plain conversion on the target."""

    name: str
    sites: int
    base_ms: float | None
    with_ms: float | None
    base_delegation: str | None
    with_delegation: str | None
    applied: bool
    why: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One log line with the before/after figures and the decision."""
        parts = [f"rewrite {self.name} ({self.sites} site{'s' * (self.sites != 1)})"]
        if self.base_delegation is not None:
            parts.append(f"{self.base_delegation} -> {self.with_delegation}")
        if self.base_ms is not None:
            parts.append(f"p50 {self.base_ms:.2f} -> {self.with_ms:.2f} ms")
        return ", ".join(parts) + f": {'applied' if self.applied else 'not applied'} ({self.why})"


Converter = Callable[[Path, Path], Path]


def choose_rewrites(onnx_path: Path, target: str, convert: Converter, threads: int | None = 1,
                    runs: int = RUNS) -> list[Trial]:
    """Try each exact rewrite on `target`; `convert(onnx, out_path) -> artifact` builds an artifact."""
    trials = []
    with tempfile.TemporaryDirectory(prefix="edgebench-rewrite-auto.") as tmp:
        work = Path(tmp)
        base = convert(onnx_path, work / "base" / _artifact_name(target))
        for rewrite in (r for r in REWRITES.values() if r.exact):
            source, results = rewritten_onnx(onnx_path, [rewrite.name], work / rewrite.name / "onnx")
            if not results[0].sites:
                continue
            candidate = convert(source, work / rewrite.name / _artifact_name(target))
            trials.append(_measure(rewrite.name, results[0].sites, base, candidate, target, threads, runs))
    return trials


def _artifact_name(target: str) -> str:
    return "model" + capability(target).suffix


def _measure(name: str, sites: int, base: Path, candidate: Path, target: str, threads: int | None,
             runs: int) -> Trial:
    with load(base, target, threads=threads) as a, load(candidate, target, threads=threads) as b:
        da, db = a.delegation(), b.delegation()
        x = parity_inputs(tuple(a.inputs[0].static_shape()[2:]), n=1)[0]  # type: ignore[index]
        ms_a, ms_b = interleaved_medians(lambda: a.infer(x), lambda: b.infer(x), runs)
    applied, why = decide(da, db, ms_a, ms_b)
    return Trial(name, sites, ms_a, ms_b, da and da.summary(), db and db.summary(), applied, why)


def interleaved_medians(fa: Callable[[], Any], fb: Callable[[], Any], runs: int,
                        warmup: int = 3) -> tuple[float, float]:
    """Median ms of `fa` and `fb` timed alternately (after `warmup` calls of each)."""
    for _ in range(warmup):
        fa(), fb()
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(runs):
        for fn, out in ((fa, ta), (fb, tb)):
            t0 = time.perf_counter_ns()
            fn()
            out.append((time.perf_counter_ns() - t0) / 1e6)
    return float(np.median(ta)), float(np.median(tb))


def decide(base: Any, cand: Any, base_ms: float, cand_ms: float) -> tuple[bool, str]:
    """(apply?, why) from delegation reports (None when the backend has none) and median latencies."""
    change = (cand_ms - base_ms) / base_ms
    slower, faster = change >= MIN_GAIN, change <= -MIN_GAIN
    more = fewer = False
    if base is not None and cand is not None:
        off_a, off_b = base.total_ops - base.delegated_ops, cand.total_ops - cand.delegated_ops
        more = off_b < off_a or (off_b == off_a and cand.partitions < base.partitions)
        fewer = off_b > off_a
    if slower or fewer:
        return False, "slower" if slower else "fewer ops delegated"
    if more or faster:
        return True, "more ops delegated" if more else f"{-change:.0%} faster"
    return False, f"no measurable gain ({change:+.1%} latency)"
