"""How much of a p99 difference between two rows is noise (compare's "within noise").

A row's noise band, in ms of p99:
- when the row carries stability figures (bench.measure.noise: the spread of its window p50s, the
  figure behind a "noisy" flag): that spread (a fraction) x its p99;
- else its own p99 - p50 spread of the total latency.

Two rows are within noise when their p99s differ by no more than the wider of their two bands:
compare then says so instead of ranking them by p99.
"""
from __future__ import annotations

from bench.report.budgets import as_float, row_p99
from bench.report.rows import ResultRow

__all__ = ["noise_ms", "noise_text", "within_noise"]


def noise_ms(row: ResultRow) -> float | None:
    """The row's noise band in ms of p99, or None when it has no latency figures."""
    p99 = row_p99(row)
    if p99 is None:
        return None
    spread = as_float(row.stability.p50_spread) if row.stability else None
    if spread is not None:
        return abs(spread) * p99
    p50 = as_float(row.total.p50) if row.total else None
    return p99 - p50 if p50 is not None else None


def noise_text(row: ResultRow) -> str:
    """'±1.23 ms (window p50 spread 4.0%)', '±1.23 ms (p99 - p50)', or '' without figures."""
    band = noise_ms(row)
    if band is None:
        return ""
    spread = as_float(row.stability.p50_spread) if row.stability else None
    how = f"window p50 spread {spread:.1%}" if spread is not None else "p99 - p50"
    return f"±{band:.2f} ms ({how})"


def within_noise(a: ResultRow, b: ResultRow) -> bool:
    """Whether the p99s of `a` and `b` differ by no more than the wider of their noise bands."""
    pa, pb = row_p99(a), row_p99(b)
    bands = [n for n in (noise_ms(a), noise_ms(b)) if n is not None]
    if pa is None or pb is None or not bands:
        return False
    return abs(pa - pb) <= max(bands)
