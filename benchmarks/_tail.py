"""p99 cells for the benchmark tables: never a p99 without its sample count, and a mark when it is too few.

A p99 needs enough samples to mean anything: the harness's own early-stopping rule
(bench.measure.early_stop, binomial bound at 99 % confidence) needs `P99_MIN_SAMPLES` (459) timed
queries before it will bound p99 at all. Below that, the "p99" of a run is little more than its max.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.measure.early_stop import P99_MIN_SAMPLES

__all__ = ["P99_FOOTNOTE", "P99_MARK", "P99_MIN_SAMPLES", "p99_cell", "p99_footnote"]

P99_MARK = "*"
P99_FOOTNOTE = f"{P99_MARK} fewer than {P99_MIN_SAMPLES} samples: p99 is close to the max"


def p99_cell(samples: Sequence[float], digits: int = 1) -> str:
    """The p99 (numpy linear percentile) of `samples`, with P99_MARK when there are too few for a p99."""
    value = float(np.percentile(samples, 99))
    return f"{value:.{digits}f}{P99_MARK if len(samples) < P99_MIN_SAMPLES else ''}"


def p99_footnote(sample_counts: Sequence[int]) -> str | None:
    """The footnote line for a table whose p99 cells came from runs of these sizes, or None if none is marked."""
    return P99_FOOTNOTE if any(n < P99_MIN_SAMPLES for n in sample_counts) else None
