"""Budget checks and the reference-FPS check of result rows (hand-made rows, no measuring)."""
from __future__ import annotations

import pytest

from bench.report.budgets import attach_checks, budgets_from, check_row, reference_check, resolve_budgets, verdict
from bench.report.writer import ResultRow, new_report, new_result, render_markdown, render_table, validate_report
from edge_sdk.profiles import Budgets, Reference

BUDGETS = Budgets(max_p99_ms=100, max_map_drop=0.02, max_memory_mb=512)
RPI_REF = Reference(fps=(8.0, 15.0), precision="int8", imgsz=640)


def row(backend: str = "onnxruntime", precision: str = "fp32", p99: float | None = 50.0,
        ap: float | None = 0.40, mem: float | None = 200.0, fps: float | None = 20.0,
        imgsz: list[int] | None = None, **kw) -> ResultRow:
    """A measured row with only the figures the checks read."""
    return new_result(
        backend, precision, precision_used=precision, imgsz=imgsz or [640, 640], fps=fps,
        latency_ms={"total": {"p50": p99 * 0.8, "p95": p99 * 0.9, "p99": p99}} if p99 else None,
        memory={"peak_rss_mb": mem, "model_size_mb": 12.0} if mem else None,
        accuracy={"AP": ap, "AP50": ap + 0.2} if ap is not None else None, **kw)


def by_name(checks) -> dict:
    return {c.name: c for c in checks}


def test_each_budget_passes_fails_or_is_unknown():
    base = row(ap=0.40)
    good = by_name(check_row(row("onnxruntime", "int8", p99=100.0, ap=0.385, mem=512.0),
                             BUDGETS, base))
    assert {n: c.status for n, c in good.items()} == {"p99": "pass", "memory": "pass",
                                                      "map_drop": "pass"}  # limits inclusive
    assert good["map_drop"].value == pytest.approx(0.015)
    bad = by_name(check_row(row("onnxruntime", "int8", p99=100.5, ap=0.37, mem=600.0),
                            BUDGETS, base))
    assert {n: c.status for n, c in bad.items()} == {"p99": "fail", "memory": "fail",
                                                     "map_drop": "fail"}
    assert bad["p99"].message == "over p99: 100.50 ms > 100 ms"
    assert bad["memory"].message.startswith("over memory: 600.00 MiB > 512 MiB")
    assert bad["map_drop"].message.startswith("mAP drop too large: 0.030 > 0.02")
    blank = by_name(check_row(row(p99=None, ap=None, mem=None), BUDGETS, base))
    assert {c.status for c in blank.values()} == {"unknown"}
    assert blank["map_drop"].message.startswith("missing mAP")


def test_map_drop_needs_a_baseline_with_ap():
    int8 = row(precision="int8", ap=0.39)
    only_map = Budgets(max_map_drop=0.02)
    (no_base,) = check_row(int8, only_map, None)
    assert no_base.status == "unknown" and "no baseline" in no_base.message
    (base_blank,) = check_row(int8, only_map, row(ap=None))
    assert base_blank.status == "unknown" and "onnxruntime/fp32 has no AP50-95" in base_blank.message
    (better,) = check_row(row(precision="int8", ap=0.45), only_map, row(ap=0.40))
    assert better.status == "pass" and better.value == pytest.approx(-0.05)
    assert check_row(int8, Budgets(), None) == []  # no budgets, no checks


def test_verdict_text():
    checks = check_row(row(p99=150.0, ap=None), BUDGETS, row())
    assert verdict(checks) == "over budget: p99; unknown: mAP drop"
    assert verdict(check_row(row(), BUDGETS, row())) == "within budget"
    assert verdict(check_row(row(ap=None), BUDGETS, row(ap=None))) == "budget unknown: mAP drop"
    assert verdict([]) == "" and verdict(None) == ""


def test_reference_check_only_on_matching_host_precision_and_size():
    int8 = row("ncnn", "int8", fps=12.0)
    assert reference_check(int8, None, True) is None
    inside = reference_check(int8, RPI_REF, True)
    assert inside.checked and inside.status == "inside" and inside.range == [8.0, 15.0]
    assert reference_check(row("ncnn", "int8", fps=5.0), RPI_REF, True).status == "below"
    assert reference_check(row("ncnn", "int8", fps=30.0), RPI_REF, True).status == "above"
    other_host = reference_check(int8, RPI_REF, False)
    assert not other_host.checked and "not the profile's device" in other_host.reason
    fp32 = reference_check(row("ncnn", "fp32", fps=12.0), RPI_REF, True)
    assert not fp32.checked and "reference is for int8, this row ran fp32" in fp32.reason
    small = reference_check(row("ncnn", "int8", fps=12.0, imgsz=[320, 320]), RPI_REF, True)
    assert not small.checked and "320 px" in small.reason
    fell_back = row("ncnn", "int8", fps=12.0)
    fell_back.precision_used = "fp32"
    assert not reference_check(fell_back, RPI_REF, True).checked
    as_dict = {"fps": [8, 15], "precision": "int8", "imgsz": 640}  # a report's profile block
    assert reference_check(int8, as_dict, True).status == "inside"


def test_attach_checks_finds_a_later_fp32_baseline_and_skips_failed_rows():
    rows = [row("ncnn", "int8", ap=0.35, fps=12.0), row("ncnn", "fp32", ap=0.40, fps=6.0),
            new_result("ncnn", "fp16", status="failed", error="crashed")]
    attach_checks(rows, BUDGETS, RPI_REF, host_matches=True)
    drop = by_name(rows[0].budget_checks)["map_drop"]
    assert drop.status == "fail" and drop.value == pytest.approx(0.05)
    assert by_name(rows[1].budget_checks)["map_drop"].status == "pass"
    assert rows[0].reference_check.status == "inside"
    assert rows[1].reference_check.checked is False
    assert rows[2].budget_checks is None and rows[2].reference_check is None


def test_report_with_checks_renders_verdict_and_old_rows_still_validate():
    rows = [row(p99=150.0), row(precision="int8", p99=40.0, ap=0.39)]
    attach_checks(rows, BUDGETS, None, host_matches=True)
    report = new_report(status="complete", results=rows)
    validate_report(report)
    table = render_table(report)
    assert "ok; over budget: p99" in table and "ok; within budget" in table
    md = render_markdown(report)
    assert "onnxruntime fp32/fp32: over p99: 150.00 ms > 100 ms" in md
    old = report.to_dict()
    for r in old["results"]:
        del r["budget_checks"], r["reference_check"]
    validate_report(old)  # reports written before these keys existed
    assert "ok; " not in render_table(type(report).from_dict(old))


def test_budgets_from_and_resolution_order():
    assert budgets_from({"max_p99_ms": 100, "max_map_drop": None}) == Budgets(max_p99_ms=100.0)
    assert budgets_from(None) == Budgets()
    reports = [new_report(profile={"name": "a", "budgets": {"max_p99_ms": 100, "max_memory_mb": 512}}),
               new_report(profile={"name": "b", "budgets": {"max_p99_ms": 80}})]
    budgets, sources = resolve_budgets({"max_map_drop": 0.01}, None, reports)
    assert budgets == Budgets(max_p99_ms=80, max_map_drop=0.01, max_memory_mb=512)
    assert sources["max_map_drop"] == "--max-map-drop"
    assert "strictest" in sources["max_p99_ms"] and "a, b" in sources["max_p99_ms"]
    budgets, sources = resolve_budgets({"max_p99_ms": 50}, "x86-cpu", reports)
    assert budgets == Budgets(max_p99_ms=50, max_map_drop=0.02, max_memory_mb=512)
    assert sources["max_memory_mb"] == "profile x86-cpu"
    assert resolve_budgets({}, None, [new_report(profile={})]) == (Budgets(), {})


def test_run_attaches_checks_to_measured_rows(tmp_path, small_model, small_data):
    from bench.sweep.run import RunOptions, run

    prof = tmp_path / "tiny.yaml"
    prof.write_text("name: tiny\ndevice: test box\nbackend: onnxruntime\nprecisions: [fp32]\n"
                    "input_size: 128\nthreads: 1\nbench: {warmup: 1, min_iterations: 3, min_duration_s: 0}\n"
                    "budgets: {max_p99_ms: 100000, max_memory_mb: 1, max_map_drop: 0.02}\n"
                    "reference: {fps: [1, 2], precision: fp32, imgsz: 128}\n")
    report, _, md_path = run(RunOptions(profile=str(prof), model=str(small_model),
                                        data=str(small_data), out_dir=str(tmp_path / "runs"),
                                        accuracy=False))
    (row,) = report.results
    assert {c.name: c.status for c in row.budget_checks} == {
        "p99": "pass", "memory": "fail", "map_drop": "unknown"}
    assert row.reference_check.checked is False  # the profile has no host rules
    assert "not the profile's device" in row.reference_check.reason
    md = md_path.read_text()
    assert "; over budget (proxy): memory; unknown: mAP drop" in md  # no host rules: a proxy row
    assert "over memory:" in md and "reference FPS not checked" in md
