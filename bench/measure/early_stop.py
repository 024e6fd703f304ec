"""MLPerf-style early stopping for a latency percentile: is the run long enough for its p99?

The question: after n timed queries, how sure are we that the true tail fraction above a latency
t is below `1 - percentile/100`? If the true fraction were exactly that tail p, the number of
queries slower than t would be Binomial(n, p). Seeing k or fewer such queries has probability
CDF(k; n, p); when that is at most `1 - confidence`, we may say with that confidence that the
fraction is below p, i.e. that t is at or above the true percentile. The early-stopping estimate
is therefore the (k+1)-th slowest latency for the largest k whose CDF passes; with no such k
(CDF(0; n, p) = (1 - p)^n is still too big) the run is too short to bound the percentile at all.
With k = 0 the shortest run is the smallest n with (1 - p)^n <= 1 - confidence: 459 queries for
p99 and 44 for p90 at 99 % confidence.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (math only, no scipy)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    total = 0.0
    for i in range(k + 1):
        log_term = math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
        total += math.exp(log_term)
    return min(total, 1.0)


def max_overlatency(n: int, tail: float, confidence: float) -> int:
    """Largest k with CDF(k; n, tail) <= 1 - confidence, or -1 when even k = 0 fails."""
    alpha = 1.0 - confidence
    k = -1
    while k + 1 < n and binom_cdf(k + 1, n, tail) <= alpha:
        k += 1
    return k


def min_queries(tail: float, confidence: float, overlatency: int = 0) -> int:
    """Smallest n with CDF(overlatency; n, tail) <= 1 - confidence (CDF falls as n grows)."""
    if not 0 < tail < 1 or not 0 < confidence < 1:
        raise ValueError(f"need 0 < tail < 1 and 0 < confidence < 1, got {tail}, {confidence}")
    alpha = 1.0 - confidence
    lo, hi = overlatency + 1, overlatency + 2
    while binom_cdf(overlatency, hi, tail) > alpha:
        lo, hi = hi, hi * 2
    while lo < hi:  # binary search for the first n that passes
        mid = (lo + hi) // 2
        if binom_cdf(overlatency, mid, tail) <= alpha:
            hi = mid
        else:
            lo = mid + 1
    return lo


def early_stopping(latencies_ms: Sequence[float], percentile: float = 99.0,
                   confidence: float = 0.99) -> dict[str, Any]:
    """The early-stopping verdict of a run's latencies for `percentile` at `confidence`.

    Keys: percentile, confidence, n, min_queries (for zero slow queries), overlatency_allowed
    (largest k, -1 if none), enough_samples, estimate_ms (the bound, None when not enough),
    empirical_ms (the plain nearest-rank percentile, for comparison).
    """
    tail = 1.0 - percentile / 100.0
    ordered = sorted(latencies_ms)
    n = len(ordered)
    k = max_overlatency(n, tail, confidence) if n else -1
    empirical = ordered[min(n - 1, max(0, math.ceil(percentile / 100.0 * n) - 1))] if n else None
    return {
        "percentile": percentile, "confidence": confidence, "n": n,
        "min_queries": min_queries(tail, confidence),
        "overlatency_allowed": k,
        "enough_samples": k >= 0,
        "estimate_ms": ordered[n - 1 - k] if k >= 0 else None,
        "empirical_ms": empirical,
    }


#: The fewest timed queries for which the early-stopping rule bounds p99 at 99 % confidence (459):
#: a p99 from fewer samples is an estimate (reports mark it, see bench.report.markdown).
P99_MIN_SAMPLES = min_queries(tail=0.01, confidence=0.99)


def p99_is_estimate(count: int | None) -> bool:
    """True when a p99 came from fewer samples than the early-stopping rule needs (False when unknown)."""
    return count is not None and count < P99_MIN_SAMPLES
