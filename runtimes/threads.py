"""Thread defaults shared by backends: physical cores, passive waiting."""
from __future__ import annotations

import os


def physical_cores() -> int:
    """Physical cores available to this process (affinity-aware), at least 1."""
    try:
        import psutil

        phys = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        phys = os.cpu_count() or 1
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:
        allowed = phys
    return max(1, min(phys, allowed))


def resolve_threads(threads: int | None) -> int:
    """The requested thread count, or the physical cores when None/0."""
    if threads is None or threads <= 0:
        return physical_cores()
    return int(threads)
