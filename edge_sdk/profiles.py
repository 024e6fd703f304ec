"""Device profiles: a typed schema and a validating YAML loader.

A profile is a built-in name (a file in the `device_profiles` package) or a path to a YAML file.
Every problem is reported as a ProfileError naming the file and the key.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edge_sdk.schema import bounds, build, dump_yaml, key_error, parse_yaml
from runtimes.capabilities import BACKENDS
from runtimes.errors import ProfileError
from runtimes.precision import Precision, PrecisionError

ACCELERATORS = ("nvidia-gpu", "apple")
OS_NAMES = ("linux", "darwin", "windows", "android", "ios")


@dataclass(frozen=True)
class BenchSettings:
    """How long to time: warm-up runs, then until both minimums are met."""

    warmup: int = field(default=10, metadata=bounds(0))
    min_iterations: int = field(default=100, metadata=bounds(1))
    min_duration_s: float = field(default=5.0, metadata=bounds(0))
    sustained_duration_s: float = field(default=0.0, metadata=bounds(0))  # 0 = no thermal run


@dataclass(frozen=True)
class Budgets:
    """Limits a deployment must meet; None = no limit. max_map_drop is on COCO's 0..1 scale."""

    max_p99_ms: float | None = field(default=None, metadata=bounds(0))
    max_map_drop: float | None = field(default=None, metadata=bounds(0, 1))
    max_memory_mb: float | None = field(default=None, metadata=bounds(0))


@dataclass(frozen=True)
class Reference:
    """Typical published FPS of a YOLOv8n-class model on the device."""

    fps: tuple[float, float]
    precision: str
    model: str = "yolov8n"
    imgsz: int = field(default=640, metadata=bounds(32))
    note: str = ""


@dataclass(frozen=True)
class AccuracySettings:
    """Post-processing used for mAP (the standard COCO protocol)."""

    conf: float = field(default=0.001, metadata=bounds(0, 1))
    iou: float = field(default=0.7, metadata=bounds(0, 1))
    max_det: int = field(default=300, metadata=bounds(1))
    multi_label: bool = True


@dataclass(frozen=True)
class DeploySettings:
    """Post-processing used in the app (and for P/R/F1)."""

    conf: float = field(default=0.25, metadata=bounds(0, 1))
    iou: float = field(default=0.7, metadata=bounds(0, 1))
    max_det: int = field(default=300, metadata=bounds(1))


@dataclass(frozen=True)
class FileRule:
    """A file that must exist and, when `contains` is set, contain that text."""

    path: str
    contains: str | None = None


@dataclass(frozen=True)
class HostRules:
    """How to recognise the device. Empty lists mean 'any'; any_of needs one rule to hold."""

    os: tuple[str, ...] = ()
    machine: tuple[str, ...] = ()
    any_of: tuple[FileRule, ...] = ()
    none_of: tuple[FileRule, ...] = ()
    cpu_flags: tuple[str, ...] = ()
    accelerator: str | None = None


@dataclass(frozen=True)
class DeviceProfile:
    """One target device: backend, precisions, shapes, bench settings, budgets, host rules."""

    name: str
    device: str
    backend: str
    precisions: tuple[str, ...]
    input_size: int | tuple[int, int]
    description: str = ""
    threads: int | None = field(default=None, metadata=bounds(1))
    batch: int = field(default=1, metadata=bounds(1))
    bench: BenchSettings = field(default_factory=BenchSettings)
    budgets: Budgets = field(default_factory=Budgets)
    reference: Reference | None = None
    accuracy: AccuracySettings = field(default_factory=AccuracySettings)
    deploy: DeploySettings = field(default_factory=DeploySettings)
    host: HostRules | None = None
    #: the backend that stands in for `backend` on a host that cannot run it (no engine, driver or device):
    #: its rows are measured there and marked "host proxy"; None = no stand-in (the run is refused)
    host_proxy: str | None = None
    source: str = field(default="", compare=False, metadata={"internal": True})

    @property
    def imgsz(self) -> tuple[int, int]:
        """Input size as (height, width)."""
        s = self.input_size
        return (s, s) if isinstance(s, int) else (int(s[0]), int(s[1]))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, no tuples), in the order a profile file is written."""
        data: dict[str, Any] = _plain(self)
        return {k: data[k] for k in _FILE_ORDER if k in data} | data

    def to_yaml(self) -> str:
        """The profile as YAML that load_profile reads back to an equal profile."""
        return dump_yaml(self.to_dict())


_FILE_ORDER = ("name", "description", "device", "backend", "precisions", "threads", "input_size",
               "batch", "bench", "budgets", "reference", "accuracy", "deploy", "host", "host_proxy")


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not f.metadata.get("internal")}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------- checks

def _check_profile(p: DeviceProfile, src: str) -> None:
    """Cross-field checks the type system cannot express."""
    if not p.name.strip():
        raise key_error(src, "name", "must not be empty")
    _check_backend(p, src)
    if p.reference is not None:
        _check_precision(p.backend, p.reference.precision, "reference.precision", src)
        lo, hi = p.reference.fps
        if not 0 < lo <= hi:
            raise key_error(src, "reference.fps", f"must be [low, high] with 0 < low <= high, "
                                                  f"got {[lo, hi]}")
    if any(side <= 0 or side % 32 for side in p.imgsz):
        raise key_error(src, "input_size", f"must be a positive multiple of 32, "
                                           f"got {p.input_size!r}")
    if p.host is not None:
        _check_host(p.host, src)
    if p.host_proxy is not None and (p.host_proxy not in BACKENDS or p.host_proxy == p.backend):
        raise key_error(src, "host_proxy", f"= '{p.host_proxy}' must name another known backend "
                                           f"(known: {', '.join(sorted(BACKENDS))})")


def _check_backend(p: DeviceProfile, src: str) -> None:
    if p.backend not in BACKENDS:
        close = difflib.get_close_matches(p.backend, list(BACKENDS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise key_error(src, "backend", f"names an unknown backend '{p.backend}' "
                                        f"({hint}known: {', '.join(sorted(BACKENDS))})")
    if not p.precisions:
        raise key_error(src, "precisions", "must list at least one precision")
    if len(set(p.precisions)) != len(p.precisions):
        raise key_error(src, "precisions", f"lists a precision twice: {list(p.precisions)}")
    for i, precision in enumerate(p.precisions):
        _check_precision(p.backend, precision, f"precisions[{i}]", src)


def _check_precision(backend: str, precision: str, key: str, src: str) -> None:
    try:
        Precision.parse(precision)
    except PrecisionError as exc:
        raise key_error(src, key, f"= '{precision}': {exc}") from None
    supported = BACKENDS[backend].runs
    if precision not in supported:
        raise key_error(src, key, f"= '{precision}' is not supported by backend '{backend}' "
                                  f"(supported: {', '.join(supported)})")


def _check_host(rules: HostRules, src: str) -> None:
    for i, name in enumerate(rules.os):
        if name not in OS_NAMES:
            raise key_error(src, f"host.os[{i}]", f"= '{name}' is not one of {', '.join(OS_NAMES)}")
    if rules.accelerator is not None and rules.accelerator not in ACCELERATORS:
        raise key_error(src, "host.accelerator", f"= '{rules.accelerator}' is not one of "
                                                 f"{', '.join(ACCELERATORS)} (or null)")


# ----------------------------------------------------------------------------- loading

def list_profiles() -> list[str]:
    """Names of the built-in profiles."""
    root = resources.files("device_profiles")
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def _is_path(arg: str | Path) -> bool:
    text = str(arg)
    return isinstance(arg, Path) or text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text


def _unknown_profile(name: str) -> ProfileError:
    from edge_sdk.host import host_profile_hint  # host imports this module

    names = list_profiles()
    close = difflib.get_close_matches(name, names, n=1)
    mean = f"did you mean '{close[0]}'? " if close else ""
    return ProfileError(f"unknown profile '{name}' ({mean}built-in profiles: {', '.join(names)}; "
                        f"{host_profile_hint()})")


def _read_source(arg: str | Path) -> tuple[str, str, str]:
    """(text, source label for messages, default name) of a profile name or path."""
    if _is_path(arg):
        path = Path(arg)
        if not path.is_file():
            raise ProfileError(f"profile file not found: {path}")
        try:
            return path.read_text(encoding="utf-8"), str(path), path.stem
        except (OSError, UnicodeDecodeError) as exc:
            raise ProfileError(f"{path}: cannot read profile ({exc})") from None
    name = str(arg)
    res = resources.files("device_profiles").joinpath(f"{name}.yaml")
    if not name or not res.is_file():
        raise _unknown_profile(name)
    return res.read_text(encoding="utf-8"), f"device_profiles/{name}.yaml", name


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """Load and validate a built-in profile (by name) or a profile YAML file (by path)."""
    text, src, stem = _read_source(name_or_path)
    data = parse_yaml(text, src)
    if isinstance(data, dict) and "name" not in data:
        data = {"name": stem, **data}
    profile = build(DeviceProfile, data, "", src)
    _check_profile(profile, src)
    return dataclasses.replace(profile, source=src)
