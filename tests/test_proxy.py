"""Honest device proxies: another device's profile run on this host is labelled "proxy" row by row, its
budget verdicts are proxy verdicts, threads are capped at this host's cores, and the profile's
sustained run does not start unless asked (bench.sweep.qualify)."""
from __future__ import annotations

import html
from pathlib import Path

import pytest

import bench.sweep.qualify as qualify_mod
from bench.report.budgets import check_row, row_verdict, verdict
from bench.report.html import render_html
from bench.report.markdown import render_markdown, render_table
from bench.report.writer import new_report, new_result
from bench.sweep.qualify import default_threads, qualify, sustained_duration, thread_notes
from bench.sweep.run import RunOptions, run
from edge_sdk.host import host_facts, host_matches
from edge_sdk.profiles import Budgets, load_profile
from runtimes import availability
from runtimes.threads import physical_cores


def _ok_row(p99: float = 50.0):
    return new_result("ncnn", "fp32", precision_used="fp32", threads=4, imgsz=640, fps=20.0, iterations=100,
                      latency_ms={"total": {"count": 100, "p50": 40.0, "p95": 45.0, "p99": p99}})


def test_a_row_measured_off_the_device_is_a_proxy_row():
    rpi5 = load_profile("rpi5")
    row = qualify(_ok_row(), rpi5, matches=False)
    cpu = host_facts()["cpu_model"]
    assert row.status == "ok" and row.flag_texts() == [f"proxy: measured on {cpu}, not Raspberry Pi 5"]
    assert qualify(_ok_row(), rpi5, matches=True).flags is None


def test_budget_verdicts_of_a_proxy_row_say_proxy():
    budgets = Budgets(max_p99_ms=100.0)
    checks = check_row(_ok_row(), budgets)
    assert verdict(checks) == "within budget" and verdict(checks, proxy=True) == "within budget (proxy)"
    over = check_row(_ok_row(p99=150.0), budgets)
    assert verdict(over, proxy=True) == "over budget (proxy): p99"
    row = qualify(_ok_row(), load_profile("rpi5"), matches=False)
    row.budget_checks = checks
    assert row_verdict(row) == "within budget (proxy)"
    table = render_table(new_report(results=[row])).splitlines()
    assert table[2].endswith("ok; proxy; within budget (proxy)")
    assert table[-1] == f"ncnn/fp32@640: proxy: measured on {host_facts()['cpu_model']}, not Raspberry Pi 5"
    status = f"ok; proxy: measured on {host_facts()['cpu_model']}, not Raspberry Pi 5; within budget (proxy)"
    assert f"| {status} |" in render_markdown(new_report(results=[row]))
    assert f'<td class="warn">{html.escape(status)}</td>' in render_html(new_report(results=[row]))


def test_threads_default_to_the_profile_capped_at_this_hosts_cores(monkeypatch: pytest.MonkeyPatch):
    rpi5, x86 = load_profile("rpi5"), load_profile("x86-cpu")
    assert default_threads(rpi5, cores=2) == 2 and default_threads(rpi5, cores=16) == 4
    assert default_threads(x86, cores=2) is None  # the engine's default (physical cores)
    monkeypatch.setattr(qualify_mod, "physical_cores", lambda: 2)
    assert thread_notes(None, rpi5) == [
        "threads: 2, not the profile's 4: this host has 2 physical core(s) (pass --threads to choose)"]
    assert thread_notes(4, rpi5) == []  # asked for: used as asked, no note
    monkeypatch.setattr(qualify_mod, "physical_cores", lambda: 8)
    assert thread_notes(None, rpi5) == []


def test_the_sustained_run_starts_only_on_the_device_or_when_asked():
    rpi5 = load_profile("rpi5")
    report = new_report()
    assert sustained_duration(None, rpi5, report, matches=True) == 120
    assert report.notes in (None, [])
    assert sustained_duration(30.0, rpi5, report, matches=False) == 30.0
    assert sustained_duration(None, rpi5, report, matches=False) == 0.0
    assert report.notes == ["the profile's 120 s sustained run did not start: this host is not Raspberry Pi 5 "
                            "(pass --duration 120 to run it here)"]
    assert sustained_duration(None, load_profile("x86-cpu"), None, matches=False) == 0.0  # none in the profile


def test_run_profile_rpi5_on_this_host_is_a_labelled_proxy(small_model: Path, small_data: Path, tmp_path: Path):
    """`run --profile rpi5` on a host that is not a Pi: proxy rows, capped threads, no sustained run."""
    from converters.ncnn import pnnx_binary

    rpi5 = load_profile("rpi5")
    if host_matches(rpi5)[0]:
        pytest.skip("this host is a Raspberry Pi 5: nothing is a proxy here")
    if not availability("ncnn")[0] or pnnx_binary() is None:
        pytest.skip("needs ncnn and pnnx (edgebench[ncnn,ncnn-export])")
    opts = RunOptions(profile="rpi5", model=str(small_model), data=str(small_data), out_dir=str(tmp_path / "r"),
                      precisions=("fp32",), warmup=1, min_iterations=3, min_duration_s=0.0, accuracy=False)
    report, _, md_path = run(opts)
    (row,) = report.results
    assert row.status == "ok", row.error
    assert row.threads == min(4, physical_cores())
    assert row.flag_texts("proxy") == [f"proxy: measured on {host_facts()['cpu_model']}, not Raspberry Pi 5"]
    assert row.stability is not None and row.stability.cores
    assert report.sustained is None  # the profile's 120 s did not start
    notes = report.notes or []
    assert any("120 s sustained run did not start" in n for n in notes)
    assert (physical_cores() >= 4) != any(n.startswith("threads: ") for n in notes)
    assert "(proxy)" in md_path.read_text()  # the budget verdict
    assert "ncnn/fp32@128: proxy: measured on" in render_table(report)
