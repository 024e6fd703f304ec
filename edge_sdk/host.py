"""Host detection: facts about this machine, matching them to profiles, runnability checks."""
from __future__ import annotations

import copy
import functools
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

from edge_sdk.profiles import DeviceProfile, FileRule, list_profiles, load_profile
from runtimes.capabilities import BACKENDS
from runtimes.capabilities import get as capability
from runtimes.errors import (
    BackendNotImplementedError,
    BackendUnavailableError,
    HardwareUnavailableError,
    ProfileError,
)
from runtimes.registry import availability, is_installed

DT_MODEL_PATHS = ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model")
TEGRA_RELEASE = "/etc/nv_tegra_release"
ACCELERATOR_NAMES = {"nvidia-gpu": "an NVIDIA GPU", "apple": "Apple silicon (macOS/iOS)"}


def no_accelerator(key: str) -> str:
    """"no NVIDIA GPU found"-style phrase for an accelerator key (the name without its article)."""
    return f"no {ACCELERATOR_NAMES.get(key, key).removeprefix('an ').removeprefix('a ')} found"


def _read_text(path: str) -> str | None:
    """A small text file's content (NULs stripped), or None when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def _run(cmd: list[str], timeout: float = 3.0) -> str | None:
    """stdout of a short command, or None when it is absent, fails or times out."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def os_name() -> str:
    """One of linux, darwin, windows, android, ios."""
    if sys.platform == "ios":
        return "ios"
    if sys.platform == "android" or hasattr(sys, "getandroidapilevel"):
        return "android"
    return {"win32": "windows", "cygwin": "windows"}.get(sys.platform, platform.system().lower())


def _cpuinfo() -> dict[str, str]:
    """First value of each key in /proc/cpuinfo (empty off Linux)."""
    info: dict[str, str] = {}
    for line in (_read_text("/proc/cpuinfo") or "").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info.setdefault(key.strip().lower(), value.strip())
    return info


def _cpu_model(info: dict[str, str]) -> str:
    for key in ("model name", "hardware", "cpu model", "processor"):
        if info.get(key) and not info[key].isdigit():
            return info[key]
    if sys.platform == "darwin":
        brand = _run(["sysctl", "-n", "machdep.cpu.brand_string"])
        if brand:
            return brand.strip()
    return platform.processor() or platform.machine() or "unknown"


def _cpu_flags(info: dict[str, str]) -> list[str]:
    """x86 'flags' or ARM 'Features' from /proc/cpuinfo; sysctl on macOS; else empty."""
    text = info.get("flags") or info.get("features") or ""
    if not text and sys.platform == "darwin":
        text = _run(["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"]) or ""
    return sorted({f.lower() for f in text.split()})


def _core_counts() -> tuple[int, int]:
    """(physical, logical) cores."""
    logical = os.cpu_count() or 1
    try:
        import psutil

        return psutil.cpu_count(logical=False) or logical, psutil.cpu_count() or logical
    except ImportError:
        return logical, logical


def _memory_mb() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total // 2**20)
    except ImportError:
        return None


def _nvidia_gpus() -> list[str]:
    """Names of NVIDIA GPUs seen via nvidia-smi, /dev/nvidia0 or a Jetson's integrated GPU."""
    listing = _run(["nvidia-smi", "-L"])
    gpus = [ln.strip() for ln in (listing or "").splitlines() if ln.strip().startswith("GPU")]
    if not gpus and (Path("/dev/nvidia0").exists() or Path("/dev/nvhost-ctrl-gpu").exists()):
        gpus = ["NVIDIA GPU (device node present)"]
    return gpus


def _accelerators(os_: str, machine: str, gpus: list[str]) -> list[str]:
    found = ["nvidia-gpu"] if gpus else []
    if os_ in ("darwin", "ios") and machine.lower() in ("arm64", "aarch64"):
        found.append("apple")
    return found


def usable_cores(logical: int | None = None) -> int:
    """Cores this process may run on: its CPU affinity (`logical`, else os.cpu_count(), where unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return logical or os.cpu_count() or 1


class ThreadsWarning(UserWarning):
    """More engine threads were asked for than this process has cores: the threads will compete."""


def threads_excess(threads: int | None) -> str | None:
    """'N exceeds the U cores this host lets us use (P physical): ...' when `threads` is more than the
    usable cores, else None."""
    usable = usable_cores()
    if threads is None or threads <= usable:
        return None
    return (f"{threads} exceeds the {usable} cores this host lets us use ({_core_counts()[0]} physical): "
            f"the engines' threads will compete")


def warn_excess_threads(threads: int | None, stacklevel: int = 2) -> None:
    """A ThreadsWarning when `threads` exceeds the usable cores; `stacklevel` counts from the caller
    (2: the caller's caller)."""
    excess = threads_excess(threads)
    if excess:
        warnings.warn(f"threads {excess}", ThreadsWarning, stacklevel=stacklevel + 1)


@functools.lru_cache(maxsize=1)
def _facts() -> dict[str, Any]:
    info = _cpuinfo()
    physical, logical = _core_counts()
    os_, machine = os_name(), platform.machine()
    gpus = _nvidia_gpus()
    dt_model = next((m for m in map(_read_text, DT_MODEL_PATHS) if m), None)
    return {
        "hostname": platform.node(),
        "os": os_,
        "os_release": platform.platform(),
        "kernel": platform.release(),
        "machine": machine,
        "cpu_model": _cpu_model(info),
        "cpu_flags": _cpu_flags(info),
        "physical_cores": physical,
        "logical_cores": logical,
        "usable_cores": usable_cores(logical),
        "memory_total_mb": _memory_mb(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "device_tree_model": dt_model,
        "tegra_release": _read_text(TEGRA_RELEASE),
        "nvidia_gpus": gpus,
        "accelerators": _accelerators(os_, machine, gpus),
    }


def host_facts() -> dict[str, Any]:
    """Facts about this host (cached after the first call; a fresh copy each time)."""
    return copy.deepcopy(_facts())


# ----------------------------------------------------------------------------- matching

def _file_content(path: str, facts: dict[str, Any]) -> str | None:
    """Content of a marker file: from the facts for the well-known ones, else from disk."""
    if path in DT_MODEL_PATHS:
        return facts.get("device_tree_model")
    if path == TEGRA_RELEASE:
        return facts.get("tegra_release")
    return _read_text(path)


def _rule_holds(rule: FileRule, facts: dict[str, Any]) -> bool:
    content = _file_content(rule.path, facts)
    if content is None:
        return False
    return rule.contains is None or rule.contains in content


def _describe(rule: FileRule) -> str:
    return f"{rule.path} contains '{rule.contains}'" if rule.contains else f"{rule.path} exists"


def host_matches(profile: DeviceProfile, facts: dict[str, Any] | None = None) -> tuple[bool, str]:
    """(True, "") when this host is the profile's device, else (False, the first reason)."""
    f = facts if facts is not None else host_facts()
    rules = profile.host
    if rules is None:
        return False, "the profile has no host rules"
    if rules.os and f["os"] not in rules.os:
        return False, f"os is '{f['os']}', needs one of {list(rules.os)}"
    if rules.machine and f["machine"].lower() not in {m.lower() for m in rules.machine}:
        return False, f"machine is '{f['machine']}', needs one of {list(rules.machine)}"
    if rules.any_of and not any(_rule_holds(r, f) for r in rules.any_of):
        return False, "none of: " + "; ".join(_describe(r) for r in rules.any_of)
    for rule in rules.none_of:
        if _rule_holds(rule, f):
            return False, f"excluded because {_describe(rule)}"
    missing = [flag for flag in rules.cpu_flags if flag.lower() not in f["cpu_flags"]]
    if missing:
        return False, f"CPU lacks flags {missing}"
    if rules.accelerator and rules.accelerator not in f["accelerators"]:
        return False, no_accelerator(rules.accelerator)
    return True, ""


def match_host_profile() -> str:
    """The first built-in profile (alphabetical) whose host rules match this host."""
    reasons = []
    for name in list_profiles():
        ok, why = host_matches(load_profile(name))
        if ok:
            return name
        reasons.append(f"{name}: {why}")
    raise ProfileError("no built-in profile matches this host (" + "; ".join(reasons) + ")")


def host_profile_hint() -> str:
    """A clause naming the built-in profile that matches this host, for error messages."""
    try:
        return f"the built-in profile matching this host is '{match_host_profile()}'"
    except ProfileError:
        return "no built-in profile matches this host"


# ----------------------------------------------------------------------------- runnability

def check_runnable(profile: DeviceProfile) -> None:
    """Raise a typed error when the profile's backend or accelerator is missing on this host."""
    spec = capability(profile.backend)
    who = f"profile '{profile.name}'"
    if spec.runtime is None:
        raise BackendNotImplementedError(
            f"{who}: backend '{spec.name}' is not implemented in this version of edgebench; "
            f"{host_profile_hint()}")
    if not is_installed(spec.name):
        raise BackendUnavailableError(spec.name, spec.pip_package, spec.extra,
                                      f"not installed; needed by {who}; {host_profile_hint()}")
    need = (profile.host.accelerator if profile.host else None) or spec.hardware
    if need and need not in host_facts()["accelerators"]:
        what = ACCELERATOR_NAMES.get(need, need)
        raise HardwareUnavailableError(
            f"{who} needs {what} ({spec.name}); none found on this host; {host_profile_hint()}")


# ----------------------------------------------------------------------------- environment

def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def backend_status() -> dict[str, dict[str, Any]]:
    """Per backend: available?, installed package version, why not (never imports an engine)."""
    accelerators = host_facts()["accelerators"]
    status = {}
    for name, spec in BACKENDS.items():
        ok, why = availability(name)
        if spec.hardware and spec.hardware not in accelerators:  # say every missing piece: package and device
            device = no_accelerator(spec.hardware)
            ok, why = False, (device if ok else f"{why}; {device}")
        status[name] = {"available": ok, "package": spec.pip_package,
                        "version": _version(spec.pip_package), "extra": spec.extra,
                        "reason": "" if ok else why, "suffixes": list(spec.suffixes),
                        "converter": spec.converter is not None, "writes": [str(p) for p in spec.writes],
                        "hints": [str(p) for p in spec.hints], "runs": [str(p) for p in spec.runs],
                        "hardware": spec.hardware, "devices": list(spec.devices),
                        "int8": spec.quantizer is not None, "int8_missing": spec.quantizer_missing() or ""}
    return status


def environment() -> dict[str, Any]:
    """Host facts, backend status and the matching built-in profile (what `edgebench env` shows)."""
    try:
        profile: str | None = match_host_profile()
    except ProfileError:
        profile = None
    return {"host": host_facts(), "backends": backend_status(), "profile": profile}
