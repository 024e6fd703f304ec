"""`edgebench compare` on hand-written reports: the pick, the reasons, the front, the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.report.compare import CompareOptions, compare
from bench.report.compare_render import render_compare_markdown
from bench.report.writer import Report, ResultRow, new_report, new_result, write_report
from runtimes.errors import ReportError
from tests.conftest import assert_one_line_error, run_cli
from tests.test_budgets import row

BUDGETS = dict(max_p99_ms=100.0, max_map_drop=0.02, max_memory_mb=512.0)


def report(*rows: ResultRow, profile: dict | None = None) -> Report:
    return new_report(status="complete", profile=profile or {"name": "test"}, results=list(rows))


def run(*reports: Report, **opts) -> dict:
    named = [(f"r{i}.json", r) for i, r in enumerate(reports)]
    return compare(named, CompareOptions(**opts))


def rows_by_label(result: dict) -> dict:
    return {r["label"]: r for r in result["rows"]}


def codes(result: dict, label: str) -> list[str]:
    return [x["code"] for x in rows_by_label(result)[label]["rejected"]]


def test_obvious_pick_and_the_reasons_for_the_others():
    result = run(report(row(p99=80.0, ap=0.40), row(precision="int8", p99=45.0, ap=0.39),
                        row(precision="int8", p99=20.0, ap=0.30, imgsz=[320, 320]),
                        row(precision="fp16", p99=30.0, ap=0.40, mem=900.0)), **BUDGETS)
    assert result["recommendation"] == "r0.json: onnxruntime/int8@640"
    assert result["message"].startswith("recommended: r0.json: onnxruntime/int8@640 (p99 45.00 ms")
    rows = rows_by_label(result)
    assert rows["r0.json: onnxruntime/int8@640"]["recommended"]
    assert codes(result, "r0.json: onnxruntime/fp32@640") == ["slower"]
    assert codes(result, "r0.json: onnxruntime/int8@320") == ["map_drop"]
    assert "mAP drop too large: 0.100 > 0.02" in rows["r0.json: onnxruntime/int8@320"]["rejected"][0]["message"]
    assert codes(result, "r0.json: onnxruntime/fp16@640") == ["over_memory"]
    int8 = rows["r0.json: onnxruntime/int8@640"]
    assert int8["baseline"] == "r0.json: onnxruntime/fp32@640"
    assert int8["deltas"]["p99"]["rel"] == pytest.approx((45 - 80) / 80)
    assert int8["deltas"]["AP"]["abs"] == pytest.approx(-0.01)
    assert rows["r0.json: onnxruntime/fp32@640"]["deltas"] == {}  # its own baseline


def test_ties_break_on_ap_then_memory_then_order():
    a = row(precision="int8", p99=40.0, ap=0.38, mem=300.0, imgsz=[640, 640])
    b = row(precision="int8", p99=40.0, ap=0.39, mem=400.0, imgsz=[608, 608])
    c = row(precision="int8", p99=40.0, ap=0.39, mem=350.0, imgsz=[576, 576])
    d = row(precision="int8", p99=40.0, ap=0.39, mem=350.0, imgsz=[544, 544])
    result = run(report(row(p99=90.0, ap=0.40), a, b, c, d), **BUDGETS)
    assert result["recommendation"] == "r0.json: onnxruntime/int8@576"
    assert codes(result, "r0.json: onnxruntime/int8@640") == ["dominated", "lower_ap"]
    assert codes(result, "r0.json: onnxruntime/int8@608") == ["more_memory"]
    assert codes(result, "r0.json: onnxruntime/int8@544") == ["tie"]


def test_budgets_nobody_meets():
    result = run(report(row(p99=150.0), row(precision="int8", p99=120.0, ap=0.39)), **BUDGETS)
    assert result["recommendation"] is None
    assert result["message"].startswith("no configuration meets the budgets (p99 <= 100 ms")
    assert all(r["rejected"] and not r["recommended"] for r in result["rows"])
    assert codes(result, "r0.json: onnxruntime/int8@640") == ["over_p99"]
    assert "nothing is recommended" in render_compare_markdown(result)


def test_missing_map_counts_only_when_a_map_budget_is_set():
    blind = row(precision="int8", p99=30.0, ap=None)
    rows = (row(p99=80.0, ap=0.40), blind, row(precision="fp16", p99=50.0, ap=0.40))
    without = run(report(*rows), max_p99_ms=100.0)
    assert without["recommendation"] == "r0.json: onnxruntime/int8@640"
    with_map = run(report(*rows), max_p99_ms=100.0, max_map_drop=0.02)
    assert with_map["recommendation"] == "r0.json: onnxruntime/fp16@640"
    assert codes(with_map, "r0.json: onnxruntime/int8@640") == ["missing_map"]
    assert rows_by_label(with_map)["r0.json: onnxruntime/int8@640"]["pareto"] is None
    # a baseline without AP leaves every drop unknown, so nobody qualifies
    no_base_ap = run(report(row(p99=80.0, ap=None), row(precision="int8", p99=40.0)),
                     max_map_drop=0.02)
    assert no_base_ap["recommendation"] is None
    assert codes(no_base_ap, "r0.json: onnxruntime/fp32@640") == ["missing_map"]
    assert codes(no_base_ap, "r0.json: onnxruntime/int8@640") == ["baseline_missing_map"]  # it has AP 0.40
    assert "not chosen: its baseline has no AP50-95" in render_compare_markdown(no_base_ap)


def test_failed_and_skipped_rows_are_never_picked():
    result = run(report(row(p99=80.0),
                        new_result("onnxruntime", "int8", status="failed", error="timeout: 1800 s"),
                        new_result("openvino", "fp16", status="skipped", error="needs openvino")),
                 **BUDGETS)
    assert result["recommendation"] == "r0.json: onnxruntime/fp32@640"
    rows = rows_by_label(result)
    assert rows["r0.json: onnxruntime/int8"]["rejected"] == [
        {"code": "failed", "message": "failed: timeout: 1800 s"}]
    assert codes(result, "r0.json: openvino/fp16") == ["skipped"]
    assert rows["r0.json: openvino/fp16"]["pareto"] is None
    nothing_ran = run(report(new_result("x", "fp32", status="failed", error="boom")), **BUDGETS)
    assert nothing_ran["recommendation"] is None
    assert "no configuration ran" in nothing_ran["message"]


def test_a_configuration_whose_parity_failed_is_not_picked():
    bad = row(precision="int8", p99=20.0, ap=0.40,
              parity={"passed": False, "failures": ["class agreement 0.91 < 0.95"]})
    good = row(precision="fp16", p99=30.0, ap=0.40, parity={"passed": True, "failures": []})
    result = run(report(row(p99=80.0, ap=0.40), bad, good), **BUDGETS)
    assert result["recommendation"] == "r0.json: onnxruntime/fp16@640"
    assert codes(result, "r0.json: onnxruntime/int8@640") == ["parity_fail"]


def test_pareto_front_of_ap_vs_p99():
    result = run(report(row(p99=80.0, ap=0.40),                      # front: most accurate
                        row(precision="int8", p99=40.0, ap=0.38),    # front
                        row(precision="fp16", p99=60.0, ap=0.37),    # dominated by int8
                        row(precision="int8", p99=40.0, ap=0.38, imgsz=[608, 608]),  # equal: front
                        row(precision="int8", p99=20.0, ap=0.20, imgsz=[320, 320]),  # front: fastest
                        row(precision="int8", p99=10.0, ap=None, imgsz=[256, 256])))  # not placed
    assert result["pareto_front"] == [
        "r0.json: onnxruntime/fp32@640", "r0.json: onnxruntime/int8@640",
        "r0.json: onnxruntime/int8@608", "r0.json: onnxruntime/int8@320"]
    rows = rows_by_label(result)
    assert rows["r0.json: onnxruntime/fp16@640"]["dominated_by"] == "r0.json: onnxruntime/int8@640"
    assert rows["r0.json: onnxruntime/int8@256"]["pareto"] is None
    md = render_compare_markdown(result)
    fp16_line = next(ln for ln in md.splitlines() if ln.startswith("| r0.json: onnxruntime/fp16"))
    assert "| dominated |" in fp16_line


def test_no_budgets_recommends_the_fastest_and_says_accuracy_was_not_weighed():
    result = run(report(row(p99=80.0, ap=0.40), row(precision="int8", p99=20.0, ap=0.25)))
    assert result["recommendation"] == "r0.json: onnxruntime/int8@640"
    assert "no budgets were set" in result["message"]
    assert all(b["value"] is None for b in result["budgets"].values())


def test_budgets_from_the_reports_profile_and_flags_override():
    prof = {"name": "box", "budgets": {"max_p99_ms": 50, "max_map_drop": None, "max_memory_mb": None}}
    rep = report(row(p99=80.0, ap=0.40), row(precision="int8", p99=45.0, ap=0.39), profile=prof)
    from_report = run(rep)
    assert from_report["budgets"]["max_p99_ms"] == {"value": 50, "source": "the reports' profile (box)"}
    assert from_report["recommendation"] == "r0.json: onnxruntime/int8@640"
    assert codes(from_report, "r0.json: onnxruntime/fp32@640") == ["over_p99"]
    flagged = run(rep, max_p99_ms=40.0)
    assert flagged["recommendation"] is None and flagged["budgets"]["max_p99_ms"]["source"] == "--max-p99-ms"


def test_baseline_selection_across_reports():
    a = report(row(p99=80.0, ap=0.40), row(precision="int8", p99=40.0, ap=0.39))
    b = report(row(p99=70.0, ap=0.42), row(precision="int8", p99=35.0, ap=0.36),
               row("ncnn", "int8", p99=30.0, ap=0.35))
    result = run(a, b)
    rows = rows_by_label(result)
    assert rows["r1.json: onnxruntime/int8@640"]["baseline"] == "r1.json: onnxruntime/fp32@640"
    assert rows["r0.json: onnxruntime/int8@640"]["baseline"] == "r0.json: onnxruntime/fp32@640"
    assert rows["r1.json: ncnn/int8@640"]["baseline"] is None
    assert "no ok fp32 row of backend ncnn" in rows["r1.json: ncnn/int8@640"]["baseline_note"]
    c = report(row("ncnn", "int8", p99=25.0, ap=0.34, imgsz=[320, 320]))
    chosen = rows_by_label(run(a, b, c, baseline="onnxruntime/fp32"))
    assert chosen["r1.json: ncnn/int8@640"]["baseline"] == "r1.json: onnxruntime/fp32@640"
    assert chosen["r1.json: ncnn/int8@640"]["deltas"]["AP"]["abs"] == pytest.approx(-0.07)
    assert chosen["r2.json: ncnn/int8@320"]["baseline"] == "r0.json: onnxruntime/fp32@640"
    assert chosen["r2.json: ncnn/int8@320"]["baseline_note"] == "--baseline onnxruntime/fp32"
    with pytest.raises(ReportError, match="no ok row has that backend/precision"):
        run(a, baseline="tensorrt/fp16")
    with pytest.raises(ReportError, match="BACKEND/PRECISION"):
        run(a, baseline="fp32")


def test_same_file_names_and_duplicate_configurations_get_distinct_labels():
    rep = report(row(p99=80.0), row(p99=81.0))
    result = compare([("x/report.json", rep), ("y/report.json", rep)])
    labels = [r["label"] for r in result["rows"]]
    assert labels == ["x/report.json: onnxruntime/fp32@640 #1", "x/report.json: onnxruntime/fp32@640 #2",
                      "y/report.json: onnxruntime/fp32@640 #1", "y/report.json: onnxruntime/fp32@640 #2"]


def test_per_class_drops_beyond_the_threshold():
    base = row(p99=80.0, ap=0.40)
    base.accuracy.per_class_ap = {"person": 0.50, "car": 0.40, "dog": 0.30, "cat": 0.20}
    int8 = row(precision="int8", p99=40.0, ap=0.36)
    int8.accuracy.per_class_ap = {"person": 0.49, "car": 0.30, "dog": 0.25, "cat": 0.05}
    result = run(report(base, int8), per_class_drop=0.05)
    drops = rows_by_label(result)["r0.json: onnxruntime/int8@640"]["per_class_drops"]
    assert [d["class"] for d in drops] == ["cat", "car"]  # dog drops exactly 0.05: not listed
    assert drops[0]["drop"] == pytest.approx(0.15)
    md = render_compare_markdown(result)
    assert "## Per-class AP50-95 drops over 0.05" in md and "cat 0.200 -> 0.050 (-0.150)" in md


def test_markdown_shows_deltas_parity_and_rejections():
    int8 = row(precision="int8", p99=40.0, ap=0.39, parity={
        "passed": False, "failures": ["scores cos 0.98 < 0.99"], "box_max_abs": 1.5,
        "score_cosine": 0.98})
    md = render_compare_markdown(run(report(row(p99=80.0, ap=0.40), int8), **BUDGETS))
    int8_line = next(ln for ln in md.splitlines() if ln.startswith("| r0.json: onnxruntime/int8"))
    assert "40.00 (-50%)" in int8_line and "0.390 (-0.010)" in int8_line
    assert "**recommended**" not in int8_line  # faster and within budget, but its parity check failed
    assert "- r0.json: onnxruntime/int8@640: parity FAIL against the source model (scores cos 0.98 < 0.99)" in md
    assert "FAIL (scores cos 0.98 < 0.99), boxes max|d| 1.5 px, scores cos 0.98000" in md
    assert "p99 <= 100 ms (from --max-p99-ms)" in md


# --- the command line ------------------------------------------------------------------------

def _write(tmp_path: Path, name: str, rep: Report) -> str:
    json_path, _ = write_report(rep, tmp_path / name)
    return str(json_path)


def test_cli_markdown_and_json(tmp_path):
    a = _write(tmp_path, "a", report(row(p99=80.0, ap=0.40), row(precision="int8", p99=45.0, ap=0.39)))
    b = _write(tmp_path, "b", report(row("openvino", "int8", p99=30.0, ap=0.30),
                                     row("openvino", "fp32", p99=60.0, ap=0.40)))
    runner = CliRunner()
    md = runner.invoke(cli, ["compare", a, b, "--max-p99-ms", "100", "--max-map-drop", "0.02"])
    assert md.exit_code == 0, md.output
    assert "recommended: a/report.json: onnxruntime/int8@640" in md.output
    assert "mAP drop too large: 0.100 > 0.02" in md.output
    js = runner.invoke(cli, ["compare", a, b, "--format", "json", "--max-map-drop", "0.2",
                             "--max-p99-ms", "100"])
    assert js.exit_code == 0, js.output
    data = json.loads(js.output)
    assert data["recommendation"] == "b/report.json: openvino/int8@640"
    assert len(data["rows"]) == 4 and data["budgets"]["max_map_drop"]["value"] == 0.2
    nobody = runner.invoke(cli, ["compare", a, "--max-p99-ms", "1"])
    assert nobody.exit_code == 0 and "no configuration meets the budgets (p99 <= 1 ms)" in nobody.output


def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    good = _write(tmp_path, "good", report(row()))
    missing = run_cli("compare", good, str(tmp_path / "nope.json"), cwd=tmp_path)
    assert_one_line_error(missing, "report not found", "nope.json")
    not_report = tmp_path / "list.json"
    not_report.write_text("[1, 2]")
    assert_one_line_error(run_cli("compare", str(not_report), cwd=tmp_path), "list.json",
                          "JSON object")
    wrong = tmp_path / "v9.json"
    wrong.write_text(json.dumps({**report(row()).to_dict(), "schema_version": 9}))
    assert_one_line_error(run_cli("compare", good, str(wrong), "--baseline", "x/y", cwd=tmp_path),
                          "v9.json", "schema_version is 9")


def test_no_reports_is_an_error():
    with pytest.raises(ReportError, match="at least one report"):
        from bench.report.compare import compare_files

        compare_files([])


def test_unknown_profile_is_a_profile_error():
    from runtimes.errors import ProfileError

    with pytest.raises(ProfileError, match="unknown profile 'nope'"):
        run(report(row()), profile="nope")
