"""Sensor sampling for sustained runs: CPU frequency, temperature, throttling flags, steal time.

Every source is optional. `SensorProbe.sources()` says which ones answered and, for the others,
why not (no sysfs node, no binary, no reading); a missing value is None, never a guess.

Sources, in the order tried:
- CPU MHz: /sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq (mean over CPUs), else
  `psutil.cpu_freq()` (which on a host without cpufreq reads /proc/cpuinfo: on a VM that may be
  the nominal clock, not a live one), plus `tegrastats` on a Jetson.
- Temperature (hottest sensor, °C): `psutil.sensors_temperatures()`, else
  /sys/class/thermal/thermal_zone*/temp, plus `tegrastats` on a Jetson.
- Throttling: `vcgencmd get_throttled` on a Raspberry Pi, the x86
  /sys/devices/system/cpu/cpu*/thermal_throttle/*_throttle_count counters (a rise between two
  readings means throttling happened in between).
- Steal time (%): `psutil.cpu_times_percent()` since the previous reading (Linux guests).
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

import psutil

#: vcgencmd get_throttled bits (Raspberry Pi firmware documentation).
VCGENCMD_BITS = {
    0: "under-voltage", 1: "arm frequency capped", 2: "currently throttled", 3: "soft temperature limit",
    16: "under-voltage has occurred", 17: "arm frequency capping has occurred",
    18: "throttling has occurred", 19: "soft temperature limit has occurred",
}
#: Bits that mean the clock is held down now (0-3) and their sticky "has occurred" twins (16-19).
_THROTTLE_NOW = (1 << 1) | (1 << 2) | (1 << 3)
_THROTTLE_STICKY = _THROTTLE_NOW << 16
#: tegrastats prints -256C (or similar) for a sensor that is off.
_TEGRA_TEMP_OFF = -200.0
#: tegrastats sensors that are not a temperature reading (Jetson Nano prints a constant PMIC@100C).
_TEGRA_NOT_TEMPS = ("PMIC",)
_SUBPROCESS_TIMEOUT_S = 3.0


def parse_vcgencmd_throttled(text: str) -> dict[str, Any]:
    """Decode `vcgencmd get_throttled` output ("throttled=0x50005") into the raw value and flag
    names (bits 0-3 "now", 16-19 "since boot"); ValueError when the text is not that."""
    m = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", text)
    if not m:
        raise ValueError(f"not vcgencmd get_throttled output: {text.strip()[:60]!r}")
    raw = int(m.group(1), 0)
    flags = [name for bit, name in VCGENCMD_BITS.items() if raw >> bit & 1]
    return {"raw": raw, "flags": flags, "throttled_now": bool(raw & _THROTTLE_NOW)}


def parse_tegrastats(line: str) -> dict[str, Any]:
    """CPU MHz (mean over online cores) and temperatures (°C by sensor, sensors that are off
    dropped) from one tegrastats line; ValueError when the line has neither."""
    freqs = [float(f) for f in re.findall(r"\d+%@(\d+)", _cpu_field(line))]
    if not freqs:  # the older "CPU [5%,off,3%]@1420" form: one frequency for the cluster
        m = re.search(r"CPU \[[^\]]*\]@(\d+)", line)
        freqs = [float(m.group(1))] if m else []
    temps = {name: float(v) for name, v in re.findall(r"\b([A-Za-z][\w-]*)@(-?\d+(?:\.\d+)?)C\b", line)
             if float(v) > _TEGRA_TEMP_OFF and name not in _TEGRA_NOT_TEMPS}
    if not freqs and not temps:
        raise ValueError(f"not a tegrastats line: {line.strip()[:60]!r}")
    return {"cpu_mhz": sum(freqs) / len(freqs) if freqs else None, "temps_c": temps}


def _cpu_field(line: str) -> str:
    m = re.search(r"CPU \[([^\]]*)\]", line)
    return m.group(1) if m else ""


def read_sysfs_mhz(root: str = "/sys/devices/system/cpu") -> float | None:
    """Mean scaling_cur_freq over CPUs in MHz, or None when there is no cpufreq node."""
    values = _read_numbers(glob.glob(os.path.join(root, "cpu[0-9]*", "cpufreq", "scaling_cur_freq")))
    return sum(values) / len(values) / 1000.0 if values else None


def read_thermal_zones(root: str = "/sys/class/thermal") -> float | None:
    """Hottest /sys/class/thermal zone in °C (millidegrees in the file), or None."""
    values = [v / 1000.0 for v in _read_numbers(glob.glob(os.path.join(root, "thermal_zone*", "temp")))]
    return max(values) if values else None


def read_throttle_count(root: str = "/sys/devices/system/cpu") -> int | None:
    """Sum of the x86 core/package thermal throttle counters, or None where absent."""
    values = _read_numbers(glob.glob(os.path.join(root, "cpu[0-9]*", "thermal_throttle", "*_throttle_count")))
    return int(sum(values)) if values else None


def _read_numbers(paths: list[str]) -> list[float]:
    out = []
    for path in sorted(paths):
        try:
            with open(path, encoding="ascii") as fh:
                out.append(float(fh.read().strip()))
        except (OSError, ValueError):
            continue  # a CPU went offline or the node is unreadable: that CPU has no value
    return out


def psutil_max_temp() -> float | None:
    """Hottest sensor psutil sees (°C), or None."""
    read = getattr(psutil, "sensors_temperatures", None)
    try:
        sensors = read() if read else {}
    except (OSError, NotImplementedError):
        return None
    values = [e.current for entries in sensors.values() for e in entries if e.current is not None]
    return max(values) if values else None


def psutil_mhz() -> float | None:
    """psutil's current CPU frequency (MHz), or None."""
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError):
        return None
    return float(freq.current) if freq and freq.current else None


@dataclass
class SensorReading:
    """One look at the sensors, `t_s` seconds into the run (None = not available)."""

    t_s: float
    cpu_mhz: float | None = None
    temp_c: float | None = None
    throttled: bool | None = None
    flags: list[str] = field(default_factory=list)
    steal_pct: float | None = None


class SensorProbe:
    """Reads every sensor source this host has; `sources()` records which answered and why not.

    `read(t_s, slow=True)` also runs the external tools (vcgencmd, tegrastats) and takes the
    steal time since the previous slow read: call it with slow=True once per window, with
    slow=False in between (cheap file reads only).
    """

    def __init__(self, cpu_root: str = "/sys/devices/system/cpu", thermal_root: str = "/sys/class/thermal",
                 which: Any = shutil.which) -> None:
        self._cpu_root, self._thermal_root = cpu_root, thermal_root
        self._vcgencmd, self._tegrastats = which("vcgencmd"), which("tegrastats")
        self._count = read_throttle_count(cpu_root)
        self._sticky: int | None = None
        self._status: dict[str, dict[str, Any]] = {}
        self._steal_ok = "steal" in getattr(psutil.cpu_times_percent(None), "_fields", ())

    def sources(self) -> dict[str, dict[str, Any]]:
        """{quantity: {"source": name or None, "reason": why not (None when available)}}."""
        return {k: dict(v) for k, v in self._status.items()}

    def read(self, t_s: float, slow: bool = True) -> SensorReading:
        """One reading `t_s` seconds into the run."""
        r = SensorReading(t_s, cpu_mhz=self._mhz(), temp_c=self._temp())
        self._throttle_counter(r)
        if slow:
            self._tegra(r)
            self._vc(r)
            self._steal(r)
        return r

    def _note(self, quantity: str, source: str | None, reason: str | None = None) -> None:
        current = self._status.get(quantity)
        if current is None or (current["source"] is None and source is not None):
            self._status[quantity] = {"source": source, "reason": None if source else reason}

    def _mhz(self) -> float | None:
        mhz = read_sysfs_mhz(self._cpu_root)
        if mhz is not None:
            self._note("cpu_freq", "sysfs cpufreq scaling_cur_freq")
            return mhz
        mhz = psutil_mhz()
        self._note("cpu_freq", "psutil.cpu_freq (no cpufreq in sysfs: /proc/cpuinfo, maybe the nominal clock)"
                   if mhz is not None else None, "no cpufreq in sysfs and psutil.cpu_freq gives nothing")
        return mhz

    def _temp(self) -> float | None:
        temp = psutil_max_temp()
        if temp is not None:
            self._note("temperature", "psutil.sensors_temperatures")
            return temp
        temp = read_thermal_zones(self._thermal_root)
        self._note("temperature", "sysfs thermal_zone" if temp is not None else None,
                   "no sensor: psutil.sensors_temperatures is empty and no thermal_zone*/temp")
        return temp

    def _throttle_counter(self, r: SensorReading) -> None:
        count = read_throttle_count(self._cpu_root)
        if count is None or self._count is None:
            self._note("throttle_counter", None, "no thermal_throttle/*_throttle_count (not x86 bare metal)")
            return
        self._note("throttle_counter", "sysfs thermal_throttle counters")
        rise, self._count = count - self._count, count
        r.throttled = bool(rise > 0) or bool(r.throttled)
        if rise > 0:
            r.flags.append(f"thermal_throttle count +{rise}")

    def _vc(self, r: SensorReading) -> None:
        if not self._vcgencmd:
            self._note("vcgencmd", None, "vcgencmd not found (not a Raspberry Pi)")
            return
        try:
            out = subprocess.run([self._vcgencmd, "get_throttled"], capture_output=True, text=True,
                                 timeout=_SUBPROCESS_TIMEOUT_S, check=True).stdout
            info = parse_vcgencmd_throttled(out)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            self._note("vcgencmd", None, f"vcgencmd get_throttled failed: {exc}")
            return
        self._note("vcgencmd", "vcgencmd get_throttled")
        raw = info["raw"]
        new_sticky = self._sticky is not None and bool(raw & _THROTTLE_STICKY & ~self._sticky)
        self._sticky = raw
        r.throttled = bool(r.throttled) or info["throttled_now"] or new_sticky
        r.flags += [f for f in info["flags"] if "has occurred" not in f]

    def _tegra(self, r: SensorReading) -> None:
        if not self._tegrastats:
            self._note("tegrastats", None, "tegrastats not found (not a Jetson)")
            return
        try:
            info = parse_tegrastats(_one_tegrastats_line(self._tegrastats))
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            self._note("tegrastats", None, f"tegrastats gave no usable line: {exc}")
            return
        self._note("tegrastats", "tegrastats")
        if r.cpu_mhz is None:
            r.cpu_mhz = info["cpu_mhz"]
        temps = [t for t in [r.temp_c, *info["temps_c"].values()] if t is not None]
        r.temp_c = max(temps) if temps else None

    def _steal(self, r: SensorReading) -> None:
        if not self._steal_ok:
            self._note("steal", None, "psutil.cpu_times_percent has no steal field on this OS")
            return
        self._note("steal", "psutil.cpu_times_percent")
        r.steal_pct = float(psutil.cpu_times_percent(None).steal)


def _one_tegrastats_line(binary: str) -> str:
    """The first line `tegrastats --interval 100` prints; the process is stopped afterwards."""
    import select

    proc = subprocess.Popen([binary, "--interval", "100"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    stdout = proc.stdout
    assert stdout is not None  # stdout=PIPE
    try:
        ready, _, _ = select.select([stdout], [], [], _SUBPROCESS_TIMEOUT_S)
        if not ready:
            raise subprocess.TimeoutExpired(binary, _SUBPROCESS_TIMEOUT_S)
        return stdout.readline()
    finally:
        proc.terminate()
        try:
            proc.wait(_SUBPROCESS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
