"""Sustained mode: windows, drift and verdict on synthetic streams; early stopping; sensor parsers;
one short `edgebench run --duration` through the CLI."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench.measure.early_stop import binom_cdf, early_stopping, max_overlatency, min_queries
from bench.measure.thermal import (
    SensorProbe,
    SensorReading,
    parse_tegrastats,
    parse_vcgencmd_throttled,
    read_sysfs_mhz,
    read_thermal_zones,
    read_throttle_count,
)
from bench.report.sustained import VERDICTS, analyse, build_windows, markdown_lines
from bench.report.sustained_rows import SustainedSection
from tests.conftest import run_cli

WINDOW_KEYS = {"t_s", "n", "p50_ms", "p99_ms", "cpu_mhz", "temp_c", "throttled"}
N_WIN, PER_WIN = 10, 50


def _stream(lat_ms, mhz=None, temp=None, throttled=None, steal=None, seed=0):
    """Latencies (PER_WIN per window around lat_ms[i], +-1 % noise), one reading per window end."""
    rng = np.random.default_rng(seed)
    lat = np.concatenate([m * (1 + rng.uniform(-0.01, 0.01, PER_WIN)) for m in lat_ms])
    bounds = [((i + 1) * PER_WIN, float(i + 1)) for i in range(N_WIN)]
    readings = [SensorReading(t_s=float(i + 1), cpu_mhz=(mhz or [2000] * N_WIN)[i],
                              temp_c=temp[i] if temp else None, throttled=throttled[i] if throttled else None,
                              flags=["currently throttled"] if throttled and throttled[i] else [],
                              steal_pct=steal[i] if steal else 0.0) for i in range(N_WIN)]
    return analyse(lat.tolist(), bounds, readings)


def _ramp(a, b):
    return list(np.linspace(a, b, N_WIN))


def test_stable_stream():
    out = _stream([10.0] * N_WIN, temp=[50.0] * N_WIN)
    assert out.verdict == "stable", out.verdict_reason
    assert abs(out.drift.p50 - 1) < 0.05 and len(out.windows) == N_WIN
    assert all(WINDOW_KEYS <= set(w.to_dict()) and w.n == PER_WIN for w in out.windows)


def test_frequency_scaled_stream():
    out = _stream(_ramp(10, 13), mhz=_ramp(2000, 1500), temp=[50.0] * N_WIN)
    assert out.verdict == "frequency-scaled", out.verdict_reason
    assert out.drift.cpu_mhz == pytest.approx(0.75) and out.drift.p50 > 1.25


def test_thermal_stream_by_temperature_and_by_flags():
    hot = _stream(_ramp(10, 12), temp=_ramp(55, 85))
    assert hot.verdict == "thermally throttled" and "°C" in hot.verdict_reason
    assert hot.drift.temp_c_rise == pytest.approx(30)
    flagged = _stream([10.0] * N_WIN, throttled=[False] * 7 + [True] * 3)
    assert flagged.verdict == "thermally throttled" and "3 of 10" in flagged.verdict_reason


def test_noisy_neighbour_streams():
    spread = _stream([10, 10, 14, 10, 12, 10, 15, 10, 11, 10.0], temp=[50.0] * N_WIN)
    assert spread.verdict == "noisy neighbour" and "spread" in spread.verdict_reason
    steal = _stream([10.0] * N_WIN, steal=[0.0] * 5 + [6.0] * 5)
    assert steal.verdict == "noisy neighbour" and "steal" in steal.verdict_reason
    drifting = _stream(_ramp(10, 12))  # latency up, clock and (absent) temperature unchanged
    assert drifting.verdict == "noisy neighbour"


def test_windows_split_by_boundaries_and_assign_readings():
    lat = [1.0] * 5 + [2.0] * 3
    readings = [SensorReading(t_s=0.0, temp_c=40.0), SensorReading(t_s=0.5, temp_c=45.0, cpu_mhz=900.0),
                SensorReading(t_s=1.0, temp_c=42.0), SensorReading(t_s=2.0, temp_c=60.0, throttled=True)]
    w1, w2 = build_windows(lat, [(5, 1.0), (5, 1.5), (8, 2.0)], readings)  # the empty window is dropped
    assert (w1.n, w1.t_s, w1.p50_ms, w1.temp_c, w1.cpu_mhz) == (5, 1.0, 1.0, 45.0, 900.0)
    assert (w2.n, w2.t0_s, w2.p50_ms, w2.temp_c, w2.throttled) == (3, 1.5, 2.0, 60.0, True)
    assert w1.throttled is None and w2.cpu_mhz is None


def test_binomial_cdf_against_the_sum_of_terms():
    for n, k, p in ((10, 3, 0.2), (459, 0, 0.01), (1000, 2, 0.01)):
        exact = sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))
        assert binom_cdf(k, n, p) == pytest.approx(exact, rel=1e-9)


def test_early_stopping_bounds_match_a_hand_computation():
    # k = 0: smallest n with 0.99**n <= 0.01 is 459 (0.99**458 = 0.01002, 0.99**459 = 0.00992);
    # for p90, 0.9**43 = 0.0108 and 0.9**44 = 0.0097, so 44.
    assert min_queries(0.01, 0.99) == 459 and min_queries(0.10, 0.99) == 44
    assert max_overlatency(458, 0.01, 0.99) == -1 and max_overlatency(459, 0.01, 0.99) == 0
    # n = 1000, p = 0.01: CDF(2) = 0.00268 <= 0.01 < CDF(3) = 0.01007, so 2 slow queries are allowed.
    assert max_overlatency(1000, 0.01, 0.99) == 2
    es = early_stopping([float(i) for i in range(1000)])
    assert es["enough_samples"] and es["estimate_ms"] == 997.0 and es["empirical_ms"] == 989.0
    short = early_stopping([1.0] * 100)
    assert not short["enough_samples"] and short["estimate_ms"] is None and short["min_queries"] == 459


def test_vcgencmd_parser():
    info = parse_vcgencmd_throttled("throttled=0x50005\n")
    assert info["raw"] == 0x50005 and info["throttled_now"]
    assert info["flags"] == ["under-voltage", "currently throttled", "under-voltage has occurred",
                             "throttling has occurred"]
    idle = parse_vcgencmd_throttled("throttled=0x0")
    assert idle["flags"] == [] and not idle["throttled_now"]
    assert parse_vcgencmd_throttled("throttled=0x80000")["flags"] == ["soft temperature limit has occurred"]
    with pytest.raises(ValueError):
        parse_vcgencmd_throttled("VCHI initialization failed")


def test_tegrastats_parser():
    orin = ("RAM 2448/30536MB (lfb 6148x4MB) SWAP 0/15268MB (cached 0MB) CPU [1%@729,0%@729,off,3%@1190] "
            "EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305,305] CV0@-256C CPU@47.5C Tboard@35C tj@48.1C GPU@-256C "
            "VDD_GPU_SOC 1564mW/1564mW")
    info = parse_tegrastats(orin)
    assert info["cpu_mhz"] == pytest.approx((729 + 729 + 1190) / 3)
    assert info["temps_c"] == {"CPU": 47.5, "Tboard": 35.0, "tj": 48.1}
    nano = "RAM 1645/3964MB (lfb 2x4MB) CPU [4%,2%,off,off]@1479 EMC_FREQ 0% PLL@31C CPU@33.5C PMIC@100C"
    assert parse_tegrastats(nano) == {"cpu_mhz": 1479.0, "temps_c": {"PLL": 31.0, "CPU": 33.5}}
    with pytest.raises(ValueError):
        parse_tegrastats("no such line")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_sysfs_readers_and_probe(tmp_path):
    cpu, thermal = tmp_path / "cpu", tmp_path / "thermal"
    _write(cpu / "cpu0" / "cpufreq" / "scaling_cur_freq", "1500000\n")
    _write(cpu / "cpu1" / "cpufreq" / "scaling_cur_freq", "1000000\n")
    _write(cpu / "cpu0" / "thermal_throttle" / "core_throttle_count", "3\n")
    _write(thermal / "thermal_zone0" / "temp", "45000\n")
    _write(thermal / "thermal_zone1" / "temp", "52500\n")
    assert read_sysfs_mhz(str(cpu)) == 1250.0 and read_thermal_zones(str(thermal)) == 52.5
    assert read_throttle_count(str(cpu)) == 3 and read_sysfs_mhz(str(tmp_path / "none")) is None
    vc = tmp_path / "vcgencmd"
    _write(vc, "#!/bin/sh\necho throttled=0x4\n")
    vc.chmod(0o755)
    probe = SensorProbe(str(cpu), str(thermal), which=lambda name: str(vc) if name == "vcgencmd" else None)
    _write(cpu / "cpu0" / "thermal_throttle" / "core_throttle_count", "5\n")
    r = probe.read(1.0)
    assert r.cpu_mhz == 1250.0 and r.throttled
    assert "currently throttled" in r.flags and "thermal_throttle count +2" in r.flags
    sources = probe.sources()
    assert sources["vcgencmd"]["source"] and sources["tegrastats"]["source"] is None
    assert "not a Jetson" in sources["tegrastats"]["reason"]


def test_markdown_section():
    assert markdown_lines(None) == []
    failed = markdown_lines(SustainedSection(status="failed", error="timeout: timed out"))
    assert failed[0] == "## Sustained run" and "timed out" in failed[2]


def test_failed_child_becomes_a_failed_section(tmp_path):
    from bench.measure.runner import MeasureSpec
    from bench.measure.sustained import sustained_section

    spec = MeasureSpec(model=str(tmp_path / "missing.onnx"), backend="onnxruntime", precision="fp32", threads=1,
                       warmup=0, min_iterations=1, min_duration_s=0.0, deploy={}, accuracy=None, timing_images=[])
    section = sustained_section(spec, 1.0, None, timeout_s=60)
    assert section.status == "failed" and "missing.onnx" in section.error
    assert "## Sustained run" in markdown_lines(section)


def test_run_cli_with_duration(tmp_path, small_data):
    from bench.sweep.defaults import default_model

    default_model()  # the bundled model ships with the repo: a build without it fails here, never skips
    proc = run_cli("run", "--duration", "3", "--no-accuracy", "--precisions", "fp32", "--data", str(small_data),
                   "--warmup", "1", "--min-iterations", "3", "--min-duration", "0", "--out", str(tmp_path / "r"),
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "r" / "report.json"  # --out DIR is the report's folder itself
    section = json.loads(path.read_text())["sustained"]
    assert section["status"] == "ok" and section["verdict"] in VERDICTS and section["precision"] == "fp32"
    assert section["windows"] and all(WINDOW_KEYS <= set(w) for w in section["windows"])
    assert sum(w["n"] for w in section["windows"]) == section["iterations"]
    assert 3.0 <= section["measured_s"] < 4.0 and section["early_stopping"]["n"] == section["iterations"]
    assert "## Sustained run" in path.with_suffix(".md").read_text()
    assert f"sustained 3 s: {section['verdict']}" in proc.stdout
