"""How much the bench harness itself costs, and how repeatable a fixed workload measures.

Run:  python benchmarks/harness_overhead.py [--repeats 5] [--duration 1.0]

Prints (1) the per-iteration overhead of StageTimer with 3 stages on an empty workload
(target <= 2 us), and (2) the p50 latency of a fixed numpy workload measured three times,
with the spread (max - min) / median in %.
"""
from __future__ import annotations

import os

# one BLAS thread so the workload does not depend on what else the machine is doing
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402

import numpy as np  # noqa: E402

from bench.measure.timing import PERCENTILE_METHOD, StageTimer, run_until, timer_overhead_ns  # noqa: E402

TARGET_NS = 2000.0


def overhead(repeats: int) -> list[float]:
    """Per-iteration harness overhead (ns) for 3 stages, measured `repeats` times."""
    timer_overhead_ns(10_000)  # warm caches and the allocator
    return [timer_overhead_ns(100_000) for _ in range(repeats)]


def workload_p50s(runs: int, duration_s: float) -> list[float]:
    """p50 total latency (ms) of a fixed numpy workload, one value per run."""
    rng = np.random.default_rng(0)
    a = rng.random((192, 192), dtype=np.float32)
    img = rng.integers(0, 255, (320, 320, 3), dtype=np.uint8)
    x = np.empty(img.shape, np.float32)  # preallocated: no mmap/munmap churn per iteration
    y = np.empty_like(a)

    def iteration(t: StageTimer) -> None:
        np.multiply(img, np.float32(1 / 255), out=x)
        t.lap("preprocess")
        np.matmul(a, a, out=y)
        t.lap("inference")
        float(y.sum() + x[0, 0, 0])
        t.lap("postprocess")

    p50s = []
    for _ in range(runs):
        res = run_until(iteration, warmup=50, min_iterations=300, min_duration_s=duration_s)
        p50s.append(res.summary()["total"]["p50"])
    return p50s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="overhead measurements")
    parser.add_argument("--duration", type=float, default=1.0, help="min seconds per workload run")
    args = parser.parse_args()

    print(f"host: {platform.node()} ({platform.machine()}), Python {platform.python_version()}, "
          f"numpy {np.__version__}, os.cpu_count={os.cpu_count()}, load {os.getloadavg()}")
    ns = overhead(args.repeats)
    med = statistics.median(ns)
    verdict = "OK" if med <= TARGET_NS else "OVER TARGET"
    print(f"StageTimer overhead, 3 stages, empty workload: median {med:.0f} ns/iteration "
          f"(min {min(ns):.0f}, max {max(ns):.0f}, {args.repeats} x 100000 iterations); "
          f"target <= {TARGET_NS:.0f} ns: {verdict}")

    p50s = workload_p50s(3, args.duration)
    spread = (max(p50s) - min(p50s)) / statistics.median(p50s) * 100
    print(f"fixed numpy workload (3 stages, 1 BLAS thread), p50 total ({PERCENTILE_METHOD}): "
          + ", ".join(f"{p:.4f} ms" for p in p50s) + f"; spread {spread:.1f}%")


if __name__ == "__main__":
    main()
