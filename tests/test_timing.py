"""Bench core: latency summaries, the stage timer, the measure loop, memory sampling."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

from bench.measure.memory import MIB, PeakRssSampler, file_size_mb, os_peak_rss_mb, rss_mb
from bench.measure.timing import (
    PERCENTILE_METHOD,
    BenchLoop,
    StageTimer,
    run_until,
    summarize,
    timer_overhead_ns,
)
from runtimes.errors import ModelLoadError

STAGES = ("preprocess", "inference", "postprocess")


class FakeClock:
    """A clock (ns) that moves only when the workload says so."""

    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now

    def advance_ms(self, ms: float) -> None:
        self.now += int(ms * 1e6)


# --- summarize -------------------------------------------------------------------------------

def test_summarize_exact_values_on_hand_made_list():
    s = summarize([5_000_000, 1_000_000, 3_000_000, 2_000_000, 4_000_000], fps=True)
    assert s["count"] == 5
    assert (s["min"], s["mean"], s["max"]) == (1.0, 3.0, 5.0)
    # linear interpolation between ranks: q/100 * (n - 1) = position into the sorted list
    assert s["p50"] == pytest.approx(3.0)
    assert s["p90"] == pytest.approx(4.6)
    assert s["p95"] == pytest.approx(4.8)
    assert s["p99"] == pytest.approx(4.96)
    assert s["stdev"] == pytest.approx(math.sqrt(2.5))  # sample stdev, ddof=1
    assert s["fps"] == pytest.approx(1000 / 3)


def test_summarize_matches_numpy_on_random_data():
    rng = np.random.default_rng(0)
    ns = (rng.lognormal(mean=15, sigma=0.5, size=997)).astype(np.int64)
    s = summarize(ns.tolist())
    ms = ns / 1e6
    for q in (50, 90, 95, 99):
        expected = np.percentile(ms, q, method=PERCENTILE_METHOD)
        assert s[f"p{q}"] == pytest.approx(expected, rel=1e-12)
    assert s["mean"] == pytest.approx(ms.mean(), rel=1e-12)
    assert s["stdev"] == pytest.approx(ms.std(ddof=1), rel=1e-12)
    assert s["min"] == ms.min() and s["max"] == ms.max() and s["count"] == 997
    assert "fps" not in s


def test_summarize_single_sample_and_empty():
    assert summarize([2_000_000])["stdev"] == 0.0
    assert summarize([2_000_000])["p99"] == 2.0
    with pytest.raises(ValueError, match="empty"):
        summarize([])


# --- StageTimer ------------------------------------------------------------------------------

def test_stage_timer_totals_equal_sum_of_stages_fake_clock():
    clock = FakeClock()
    t = StageTimer(STAGES, clock=clock)
    for i in range(4):
        t.start()
        clock.advance_ms(1 + i)
        t.lap("preprocess")
        clock.advance_ms(10)
        t.lap("inference")
        clock.advance_ms(0.5)
        t.lap("postprocess")
        clock.advance_ms(7)  # after the last lap: not part of any stage nor the total
        t.end_iteration()
    raw = t.samples()
    assert raw["preprocess"] == [1_000_000, 2_000_000, 3_000_000, 4_000_000]
    assert raw["inference"] == [10_000_000] * 4
    sums = [sum(raw[s][i] for s in STAGES) for i in range(4)]
    assert raw["total"] == sums
    summary = t.summary()
    assert summary["total"]["mean"] == pytest.approx(13.0)
    assert summary["total"]["fps"] == pytest.approx(1000 / 13.0)
    assert t.iterations == 4


def test_stage_timer_totals_equal_sum_of_stages_real_clock():
    t = StageTimer()
    a = np.random.default_rng(1).random((32, 32))
    for _ in range(50):
        t.start()
        a.sum()
        t.lap("preprocess")
        a @ a
        t.lap("inference")
        t.end_iteration()
    raw = t.samples()
    assert t.stages == ("preprocess", "inference")
    assert raw["total"] == [p + i for p, i in zip(raw["preprocess"], raw["inference"], strict=False)]
    assert all(v > 0 for v in raw["total"])


def test_stage_timer_without_laps_times_start_to_end_and_rejects_total_stage():
    clock = FakeClock()
    t = StageTimer(clock=clock)
    t.start()
    clock.advance_ms(3)
    t.end_iteration()
    assert t.samples()["total"] == [3_000_000]
    with pytest.raises(ValueError, match="total"):
        t.lap("total")
    with pytest.raises(ValueError, match="total"):
        StageTimer(("total",))
    t.reset()
    assert t.iterations == 0 and t.summary() == {}


# --- the loop --------------------------------------------------------------------------------

def _workload(clock: FakeClock, ms: float, calls: list[int]):
    def fn(t: StageTimer) -> None:
        calls.append(1)
        clock.advance_ms(ms / 2)
        t.lap("preprocess")
        clock.advance_ms(ms / 2)
        t.lap("inference")
    return fn


@pytest.mark.parametrize(
    "min_iterations, min_duration_s, expected",
    [(5, 0.2, 20),   # duration is the binding minimum: 20 x 10 ms
     (50, 0.2, 50),  # count is the binding minimum
     (20, 0.2, 20)],  # both met on the same iteration
)
def test_run_until_stops_only_when_both_minimums_are_met(min_iterations, min_duration_s, expected):
    clock, calls = FakeClock(), []
    loop = BenchLoop(warmup=3, min_iterations=min_iterations, min_duration_s=min_duration_s,
                     clock=clock)
    res = loop.run(_workload(clock, 10, calls))
    assert res.iterations == expected and res.timer.iterations == expected
    assert len(calls) == expected + 3  # warm-up calls run but are not recorded
    assert res.stopped_by == "minimums_met"
    assert res.duration_s == pytest.approx(expected * 0.010)
    assert res.summary()["total"]["count"] == expected


def test_run_until_caps_and_progress():
    clock, calls, seen = FakeClock(), [], []
    loop = BenchLoop(warmup=0, min_iterations=10, min_duration_s=10.0, max_iterations=30,
                     progress_interval_s=0.1, clock=clock)
    res = loop.run(_workload(clock, 10, calls), progress=lambda n, s: seen.append((n, s)))
    assert (res.iterations, res.stopped_by) == (30, "max_iterations")
    assert seen[-1] == (30, pytest.approx(0.3))
    assert [n for n, _ in seen] == [10, 20, 30]  # every 0.1 s of fake time, then the end

    loop = BenchLoop(warmup=0, min_iterations=1000, min_duration_s=0.1, max_duration_s=0.25,
                     clock=clock)
    res = loop.run(_workload(clock, 10, []))
    assert (res.iterations, res.stopped_by) == (25, "max_duration")


def test_run_until_real_clock_tiny_thresholds():
    res = run_until(lambda t: t.lap("inference"), warmup=2, min_iterations=3, min_duration_s=0.05)
    assert res.iterations >= 3 and res.duration_s >= 0.05
    assert set(res.summary()) == {"inference", "total"}


@pytest.mark.parametrize("kwargs", [
    dict(warmup=-1), dict(min_iterations=0), dict(min_iterations=10, max_iterations=5),
    dict(min_duration_s=2.0, max_duration_s=1.0),
])
def test_bench_loop_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        BenchLoop(**kwargs)


def test_timer_overhead_is_small_and_positive():
    ns = timer_overhead_ns(20_000)
    assert 0 < ns < 50_000  # generous: a 2-core shared CI box; the benchmark script reports it
    with pytest.raises(ValueError):
        timer_overhead_ns(0)


# --- memory ----------------------------------------------------------------------------------

def test_peak_rss_sampler_sees_a_temporary_200mb_allocation():
    with PeakRssSampler(interval_s=0.005) as sampler:
        block = np.ones(200 * MIB // 8, dtype=np.float64)  # touches every page
        time.sleep(0.05)
        del block
        time.sleep(0.02)
    assert sampler.samples >= 3
    assert sampler.peak_rss_mb - sampler.start_rss_mb >= 180
    assert rss_mb() < sampler.peak_rss_mb - 150  # freed again, so only the sampler saw it
    assert sampler.peak_rss_os_mb is not None
    assert sampler.peak_rss_os_mb >= sampler.peak_rss_mb - 1
    assert sampler.as_dict()["peak_rss_mb"] == sampler.peak_rss_mb
    assert os_peak_rss_mb() >= sampler.peak_rss_os_mb


def test_file_size_mb_file_directory_and_pair(tmp_path):
    (tmp_path / "m.bin").write_bytes(b"\0" * MIB)
    (tmp_path / "m.param").write_bytes(b"\0" * (MIB // 2))
    pkg = tmp_path / "m.mlpackage" / "Data"
    pkg.mkdir(parents=True)
    (pkg / "weights.bin").write_bytes(b"\0" * (3 * MIB))
    (tmp_path / "m.mlpackage" / "Manifest.json").write_bytes(b"\0" * MIB)
    assert file_size_mb(tmp_path / "m.bin") == pytest.approx(1.0)
    assert file_size_mb([tmp_path / "m.param", str(tmp_path / "m.bin")]) == pytest.approx(1.5)
    assert file_size_mb(tmp_path / "m.param") == pytest.approx(1.5)  # the .bin beside it counts
    (tmp_path / "ir.xml").write_bytes(b"\0" * (MIB // 4))
    assert file_size_mb(tmp_path / "ir.xml") == pytest.approx(0.25)  # no ir.bin: only the xml
    (tmp_path / "ir.bin").write_bytes(b"\0" * MIB)
    assert file_size_mb(tmp_path / "ir.xml") == pytest.approx(1.25)
    assert file_size_mb(tmp_path / "m.mlpackage") == pytest.approx(4.0)
    with pytest.raises(ModelLoadError, match="nope.onnx"):
        file_size_mb(tmp_path / "nope.onnx")
