"""Run stability (bench.measure.noise) on synthetic timing series and sample /proc texts; the "noisy"
flag (bench.sweep.qualify) and how the tables show it, the sample count and a p99 estimate."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.measure.early_stop import P99_MIN_SAMPLES, p99_is_estimate
from bench.measure.noise import (
    SPREAD_LIMIT,
    HostSample,
    noise_reasons,
    p50_spread,
    parse_cpu_jiffies,
    parse_loadavg,
    sample_host,
    stability,
    steal_pct,
    window_p50s,
)
from bench.measure.timing import summarize
from bench.report.html import render_html
from bench.report.markdown import P99_FOOTNOTE, render_markdown, render_table
from bench.report.rows import ResultRow, Stability
from bench.report.writer import new_report, new_result
from bench.sweep.qualify import qualify
from edge_sdk.profiles import load_profile

LOADAVG = "0.52 0.58 0.59 1/389 12345\n"
STAT_BEFORE = ("cpu  1000 10 500 8000 100 0 20 30 0 0\n"
               "cpu0 500 5 250 4000 50 0 10 15 0 0\nintr 123 0\nprocs_running 2\n")
# +600 busy, +300 idle, +100 steal = 1000 jiffies, 10 % steal
STAT_AFTER = ("cpu  1500 10 600 8300 100 0 20 130 0 0\n"
              "cpu0 750 5 300 4150 50 0 10 65 0 0\nintr 456 0\n")
QUIET = HostSample(load_1m=0.5, jiffies=(30, 9660))


def _stable(n: int = 500, base: float = 10.0, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(base + rng.normal(0.0, 0.05, n))


def _step(n: int = 500) -> list[float]:
    """10 ms for the first 60 % of the run, then 12 ms (a neighbour arrived)."""
    return [10.0 if i < 0.6 * n else 12.0 for i in range(n)]


# --- the figures ------------------------------------------------------------------------------

def test_a_stable_series_has_a_small_spread_and_no_reason():
    p50s = window_p50s(_stable())
    assert len(p50s) == 5 and all(abs(v - 10.0) < 0.05 for v in p50s)
    spread = p50_spread(p50s)
    assert spread is not None and spread < 0.01
    assert noise_reasons(spread, 0.1, 0.5, 2, p50s) == []


def test_a_step_between_windows_is_noisy_with_the_figures():
    p50s = window_p50s(_step())
    assert p50s == [10.0, 10.0, 10.0, 12.0, 12.0]
    spread = p50_spread(p50s)
    assert spread == pytest.approx(0.2)
    (reason,) = noise_reasons(spread, None, None, None, p50s)
    assert reason == "p50 spread 20.0% across 5 windows (10.00-12.00 ms) > 10%"


def test_spread_needs_enough_samples_per_window():
    assert window_p50s(_step(49)) == [] and p50_spread([]) is None
    assert len(window_p50s(_step(50))) == 5
    assert p50_spread([10.0, 10.0]) == 0.0 and p50_spread([0.0, 0.0]) is None


def test_spread_at_the_limit_is_not_noisy():
    assert noise_reasons(SPREAD_LIMIT, None, None, None) == []
    assert noise_reasons(SPREAD_LIMIT + 0.001, None, None, None)


def test_loadavg_and_stat_parse_from_sample_proc_texts():
    assert parse_loadavg(LOADAVG) == 0.52
    assert parse_loadavg("") is None and parse_loadavg("busy\n") is None
    assert parse_cpu_jiffies(STAT_BEFORE) == (30, 1000 + 10 + 500 + 8000 + 100 + 20 + 30)
    assert parse_cpu_jiffies("cpu0 1 2 3\n") is None  # no aggregate line
    assert parse_cpu_jiffies("cpu  1 2 3 4\n") == (0, 10)  # an old kernel without steal
    assert parse_cpu_jiffies("cpu  a b c\n") is None


def test_steal_share_between_two_reads():
    before, after = parse_cpu_jiffies(STAT_BEFORE), parse_cpu_jiffies(STAT_AFTER)
    assert steal_pct(before, after) == pytest.approx(10.0)
    assert steal_pct(before, before) is None  # too short to tell
    assert steal_pct(None, after) is None


def test_steal_and_load_past_their_limits_are_reasons():
    reasons = noise_reasons(0.01, 3.25, 2.5, 2)
    assert reasons == ["CPU steal 3.2% during the run >= 2%", "load 2.50 during the run > 2 cores"]
    assert noise_reasons(0.01, 1.9, 2.0, 2) == []  # load equal to the cores: our own threads


def test_sample_host_reads_proc_files_and_says_unknown_without_them(tmp_path: Path):
    (tmp_path / "loadavg").write_text(LOADAVG)
    (tmp_path / "stat").write_text(STAT_AFTER)
    got = sample_host(str(tmp_path / "loadavg"), str(tmp_path / "stat"))
    assert got == HostSample(0.52, parse_cpu_jiffies(STAT_AFTER))
    missing = sample_host(str(tmp_path / "no-loadavg"), str(tmp_path / "no-stat"))
    assert missing == HostSample(None, None)
    st = stability(_stable(), missing, missing, missing, cores=4)
    assert st["host_source"].startswith("unknown") and st["load_during"] is None
    assert st["steal_during_pct"] is None and st["windows"] == 5


def test_stability_entry_has_the_figures_before_and_during():
    start = HostSample(0.4, parse_cpu_jiffies(STAT_BEFORE))
    loop_start = HostSample(0.5, (30, 9660))
    end = HostSample(2.9, parse_cpu_jiffies(STAT_AFTER))
    st = stability(_step(), start, loop_start, end, cores=2)
    assert st["p50_spread"] == pytest.approx(0.2) and st["window_p50_ms"] == [10.0, 10.0, 10.0, 12.0, 12.0]
    assert st["load_before"] == 0.4 and st["load_during"] == 2.9 and st["cores"] == 2
    assert st["steal_before_pct"] is None  # 0 jiffies from start to loop start
    assert st["steal_during_pct"] == pytest.approx(10.0)
    assert Stability.from_dict(st).to_dict() == st  # the row's record holds it key for key


# --- the flag and the tables ------------------------------------------------------------------

def _row(totals_ms: list[float], **stab: object) -> ResultRow:
    ns = [int(v * 1e6) for v in totals_ms]
    st = stability(totals_ms, QUIET, QUIET, QUIET, cores=2)
    return new_result("onnxruntime", "fp32", precision_used="fp32", threads=2, imgsz=128,
                      latency_ms={"total": summarize(ns, fps=True)}, fps=100.0, iterations=len(ns),
                      stability={**st, **stab})


def test_qualify_flags_a_step_change_noisy_and_leaves_a_stable_run_alone():
    x86 = load_profile("x86-cpu")
    stable = qualify(_row(_stable()), x86, matches=True)
    assert stable.flags is None and stable.status == "ok"
    noisy = qualify(_row(_step()), x86, matches=True)
    assert noisy.status == "ok" and noisy.flag_texts() == [
        "noisy: p50 spread 20.0% across 5 windows (10.00-12.00 ms) > 10%"]
    busy = qualify(_row(_stable(), load_during=3.5, steal_during_pct=4.0), x86, matches=True)
    assert busy.flag_texts("noisy") == [
        "noisy: CPU steal 4.0% during the run >= 2%; load 3.50 during the run > 2 cores"]
    failed = qualify(new_result("onnxruntime", "fp32", status="failed", error="x"), x86, matches=False)
    assert failed.flags is None


def test_noisy_row_in_the_tables_with_its_count_and_p99_mark():
    x86 = load_profile("x86-cpu")
    noisy = qualify(_row(_step()), x86, matches=True)
    report = new_report(profile={"name": "x86-cpu"}, results=[noisy])
    table = render_table(report)
    header = table.splitlines()[0].split()
    assert header[:6] == ["backend", "precision", "thr", "imgsz", "FPS", "n"]
    assert " 500 " in table.splitlines()[2] and table.splitlines()[2].endswith("ok; noisy")
    assert table.splitlines()[-1] == (  # the terminal names the flag in the cell, its figures below
        "onnxruntime/fp32@128: noisy: p50 spread 20.0% across 5 windows (10.00-12.00 ms) > 10%")
    assert P99_FOOTNOTE not in table and "*" not in table  # 500 samples: enough for a p99
    md = render_markdown(report)
    assert "| n |" in md and "| 500 |" in md and "noisy: p50 spread 20.0% across 5 windows" in md


def test_p99_is_marked_below_the_early_stopping_minimum_only():
    assert P99_MIN_SAMPLES == 459
    assert p99_is_estimate(458) and not p99_is_estimate(459) and not p99_is_estimate(None)
    short, long_ = _row(_stable(458)), _row(_stable(459, base=20.0, seed=1))
    table = render_table(new_report(results=[short, long_]))
    lines = table.splitlines()
    assert lines[2].split()[5] == "458" and lines[3].split()[5] == "459"
    assert lines[2].count("*") == 1 and "*" not in lines[3]
    assert lines[-1] == P99_FOOTNOTE
    assert P99_FOOTNOTE not in render_table(new_report(results=[long_]))
    page = render_html(new_report(results=[short, long_]))
    assert f"{short.total.p99:.2f}*" in page and f"{long_.total.p99:.2f}*" not in page
    assert P99_FOOTNOTE in page
