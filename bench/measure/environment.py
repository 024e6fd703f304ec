"""The environment record every report carries: host, CPU, OS, versions, model hash, clocks."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

from edge_sdk.hashing import sha256_of
from edge_sdk.host import host_facts


def environment(
    threads: int | None,
    engines: dict[str, str],
    model_path: str | Path | Iterable[str | Path] | None,
) -> dict[str, Any]:
    """Facts about this host and run, JSON-ready.

    The host part is `edge_sdk.host.host_facts()` (hostname, os, os_release, kernel, machine,
    cpu_model, cpu_flags (full list), physical/logical/usable cores, memory, python,
    accelerators, ...), plus threads used, library and engine versions, the model's sha256,
    CPU frequency, temperatures, load average and a UTC timestamp.

    `engines` maps engine name -> version (e.g. {"onnxruntime": "1.31.1"}); `model_path` may be
    a file, an artifact directory, or several files (a .param/.bin pair), or None.
    """
    return {
        **host_facts(),
        "threads": threads,
        "versions": {**library_versions(), **engines},
        "model_sha256": sha256_of(model_path) if model_path is not None else None,
        "cpu_freq_mhz": cpu_freq_mhz(),
        "temperatures_c": temperatures_c(),
        "load_avg": [round(x, 2) for x in psutil.getloadavg()],
        "timestamp_utc": utc_now(),
    }


def utc_now() -> str:
    """The current time, UTC, ISO 8601 to the second (e.g. 2026-11-22T03:20:00+00:00)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict[str, str]:
    """Versions of the Python libraries every run uses (numpy, opencv, psutil)."""
    import cv2
    import numpy

    return {"numpy": numpy.__version__, "opencv": cv2.__version__, "psutil": psutil.__version__}


def cpu_freq_mhz() -> dict[str, float] | None:
    """Current/min/max CPU frequency in MHz as psutil sees it, or None where unavailable."""
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError):
        return None
    if freq is None:
        return None
    return {"current": freq.current, "min": freq.min, "max": freq.max}


def temperatures_c() -> dict[str, list[dict[str, Any]]] | None:
    """Sensor temperatures (°C) by chip, or None when the OS exposes none."""
    read = getattr(psutil, "sensors_temperatures", None)
    if read is None:
        return None
    try:
        sensors = read()
    except (OSError, NotImplementedError):
        return None
    out = {
        chip: [{"label": e.label or chip, "current": e.current} for e in entries]
        for chip, entries in sensors.items()
        if entries
    }
    return out or None
