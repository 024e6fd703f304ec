"""Where edgebench keeps what it generates (synthetic data sets, calibration results)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$EDGEBENCH_CACHE, else $XDG_CACHE_HOME/edgebench, else ~/.cache/edgebench."""
    if os.environ.get("EDGEBENCH_CACHE"):
        return Path(os.environ["EDGEBENCH_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgebench"
