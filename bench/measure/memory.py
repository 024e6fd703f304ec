"""Memory measurement: resident set size now, peak RSS over a window, artifact sizes.

Units: every `*_mb` value is in MiB (2**20 bytes).
"""
from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import psutil

from runtimes.capabilities import files_beside
from runtimes.errors import ModelLoadError

MIB = 2**20


def rss_mb() -> float:
    """Resident set size of this process now, in MiB."""
    rss: int = psutil.Process().memory_info().rss  # psutil is untyped (no stubs installed)
    return rss / MIB


def os_peak_rss_mb() -> float | None:
    """The OS's high-water mark of this process's RSS since it started, in MiB (None if unknown).

    Linux reports ru_maxrss in KiB, macOS in bytes; Windows exposes peak_wset via psutil.
    """
    try:
        import resource
    except ImportError:  # Windows
        peak = getattr(psutil.Process().memory_info(), "peak_wset", None)
        return peak / MIB if peak is not None else None
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024
    return maxrss * scale / MIB


class PeakRssSampler:
    """Context manager: samples this process's RSS in a background thread while open.

    After exit: `peak_rss_mb` (highest sampled RSS, including one sample at enter and one at
    exit), `peak_rss_os_mb` (the OS high-water mark, which covers the whole process life, not
    only this window), `start_rss_mb`, `samples`.
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.interval_s = interval_s
        self._proc = psutil.Process(os.getpid())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak = 0
        self.samples = 0
        self.start_rss_mb = 0.0
        self.peak_rss_os_mb: float | None = None

    def __enter__(self) -> PeakRssSampler:
        self._stop.clear()
        self._peak, self.samples = 0, 0
        self._sample()
        self.start_rss_mb = self._peak / MIB
        self._thread = threading.Thread(target=self._run, name="peak-rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._sample()
        self.peak_rss_os_mb = os_peak_rss_mb()

    @property
    def peak_rss_mb(self) -> float:
        """Highest RSS sampled so far, in MiB."""
        return self._peak / MIB

    def as_dict(self) -> dict[str, float | None]:
        """{"peak_rss_mb", "peak_rss_os_mb"} for a report's memory block."""
        return {"peak_rss_mb": self.peak_rss_mb, "peak_rss_os_mb": self.peak_rss_os_mb}

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        rss = self._proc.memory_info().rss
        self.samples += 1
        if rss > self._peak:
            self._peak = rss


def file_size_mb(path: str | Path | Iterable[str | Path]) -> float:
    """Size in MiB of a model artifact: a file, a directory (e.g. .mlpackage, summed
    recursively) or several paths (e.g. an ncnn .param/.bin pair, summed).

    Raises ModelLoadError naming the first path that does not exist.
    """
    paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
    paths += [w for p in paths for w in files_beside(p) if w.is_file() and w not in paths]
    return sum(_size_bytes(p) for p in paths) / MIB


def _size_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    raise ModelLoadError(f"model artifact not found: {path}")
