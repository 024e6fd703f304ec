"""compare across models and data sets, proxy rows and rows within noise (hand-written reports)."""
from __future__ import annotations

import pytest

from bench.measure.early_stop import P99_MIN_SAMPLES
from bench.report import plots as html_plots
from bench.report.compare import CompareOptions, compare
from bench.report.compare_html import render_compare_html
from bench.report.compare_render import render_compare_markdown
from bench.report.markdown import P99_FOOTNOTE
from bench.report.writer import Report, ResultRow, new_report
from runtimes.errors import ReportError
from tests.test_budgets import row

SHA_A, SHA_B, DATA = "a" * 64, "b" * 64, "d" * 64


def report(model: str, sha: str, *rows: ResultRow, data: str | None = DATA, data_path: str = "/d/data.yaml",
           **kw) -> Report:
    return new_report(status="complete", profile={"name": "test"}, results=list(rows),
                      model={"path": f"/m/{model}", "sha256": sha},
                      data={"path": data_path, "images": 30, "scored_images": 30, "sha256": data}, **kw)


def run(*reports: tuple[str, Report], **opts) -> dict:
    return compare(list(reports), CompareOptions(**opts))


def by_label(result: dict) -> dict:
    return {r["label"]: r for r in result["rows"]}


A = ("a.json", report("a.onnx", SHA_A, row(p99=80.0, ap=0.40), row(precision="int8", p99=40.0, ap=0.39)))
B = ("b.json", report("b.onnx", SHA_B, row(p99=60.0, ap=0.30), row(precision="int8", p99=30.0, ap=0.20)))


def test_two_models_without_baseline_get_no_cross_model_deltas():
    b_int8_only = ("b.json", report("b.onnx", SHA_B, row(precision="int8", p99=30.0, ap=0.20)))
    result = run(A, b_int8_only, max_map_drop=0.02)
    rows = by_label(result)
    b = rows["b.json: onnxruntime/int8@640"]
    assert b["baseline"] is None and b["deltas"] == {}  # A's fp32 is another model's row
    assert "of this model and data set" in b["baseline_note"]
    assert [x["code"] for x in b["rejected"]] == ["no_baseline"]  # it has AP 0.20: the baseline is missing
    assert rows["a.json: onnxruntime/int8@640"]["baseline"] == "a.json: onnxruntime/fp32@640"
    assert result["recommendation"] == "a.json: onnxruntime/int8@640"
    assert b["model"].startswith("b.onnx (sha256 bbbbbbbbbbbb")
    assert result["models"] == 2 and "model a.onnx (sha256 aaaaaaaaaaaa)" in result["message"]


def test_a_named_baseline_row_is_every_rows_baseline_across_models():
    label = "a.json: onnxruntime/fp32@640"
    result = run(A, B, baseline=label, max_map_drop=0.25)
    rows = by_label(result)
    assert {r["baseline"] for r in result["rows"]} == {label}
    b_int8 = rows["b.json: onnxruntime/int8@640"]
    assert b_int8["deltas"]["AP"]["abs"] == pytest.approx(-0.20)  # against A's fp32, not B's own
    assert result["recommendation"] == "b.json: onnxruntime/int8@640"  # fastest within 0.25 of A's fp32
    strict = run(A, B, baseline=label, max_map_drop=0.05)
    assert strict["recommendation"] == "a.json: onnxruntime/int8@640"
    assert "map_drop" in [x["code"] for x in by_label(strict)["b.json: onnxruntime/fp32@640"]["rejected"]]
    with pytest.raises(ReportError, match="different models or data sets; name one row"):
        run(A, B, baseline="onnxruntime/fp32")


def test_markdown_and_html_say_which_row_is_which_model():
    result = run(A, B)
    md = render_compare_markdown(result)
    assert "| configuration | model | imgsz |" in md
    b_line = next(ln for ln in md.splitlines() if ln.startswith("| b.json: onnxruntime/int8"))
    assert "b.onnx (sha256 bbbbbbbbbbbb)" in b_line
    assert "model a.onnx (sha256 aaaaaaaaaaaa), 30 images scored" in md
    assert "<th>model</th>" in render_compare_html(result)
    single = render_compare_markdown(run(A))
    assert "| configuration | imgsz |" in single


def test_different_data_sets_draw_no_pareto_front():
    other = ("c.json", report("a.onnx", SHA_A, row(p99=70.0, ap=0.50), data="e" * 64))
    result = run(A, other)
    assert result["pareto_front"] == [] and "different data sets" in result["message"]
    assert by_label(result)["c.json: onnxruntime/fp32@640"]["baseline"] == "c.json: onnxruntime/fp32@640"


def test_a_collapsed_ap_against_the_baseline_is_suspect_and_never_picked():
    collapsed = row(precision="int8", p99=10.0, ap=0.10)
    result = run(("a.json", report("a.onnx", SHA_A, row(p99=80.0, ap=0.40), collapsed)))
    out = by_label(result)["a.json: onnxruntime/int8@640"]
    assert out["status"] == "suspect" and out["metrics"]["p99"] == 10.0
    assert out["rejected"][0]["code"] == "suspect" and "AP collapsed" in out["rejected"][0]["message"]
    assert result["recommendation"] == "a.json: onnxruntime/fp32@640"
    assert collapsed.status == "ok"  # the caller's report is not changed


def test_proxy_rows_are_labelled():
    proxy = row(precision="int8", p99=40.0, ap=0.39)
    proxy.add_flag("proxy", "measured on a Xeon, not on rpi5")
    result = run(("a.json", report("a.onnx", SHA_A, row(p99=80.0, ap=0.40), proxy)))
    assert result["recommendation"] == "a.json: onnxruntime/int8@640 [proxy]"
    assert by_label(result)["a.json: onnxruntime/int8@640 [proxy]"]["proxy"] is True
    assert "proxy host" in result["message"]
    assert "[proxy]: measured on another host" in render_compare_markdown(result)


def test_rows_within_noise_are_not_ranked():
    quick = row(precision="int8", p99=40.0, ap=0.39)  # p50 32: band 8 ms
    close = row(precision="fp16", p99=44.0, ap=0.40)
    far = row(p99=80.0, ap=0.40)
    result = run(("a.json", report("a.onnx", SHA_A, far, quick, close)))
    assert result["recommendation"] == "a.json: onnxruntime/int8@640"
    rows = by_label(result)
    assert [x["code"] for x in rows["a.json: onnxruntime/fp16@640"]["rejected"]] == ["within_noise"]
    assert [x["code"] for x in rows["a.json: onnxruntime/fp32@640"]["rejected"]] == ["dominated", "slower"]
    assert "within noise of it, not ranked: a.json: onnxruntime/fp16@640" in result["message"]
    steady = [row(precision="int8", p99=40.0, ap=0.39, stability={"p50_spread": 0.01}),
              row(precision="fp16", p99=44.0, ap=0.40, stability={"p50_spread": 0.01})]
    ranked = by_label(run(("a.json", report("a.onnx", SHA_A, far, *steady))))
    assert [x["code"] for x in ranked["a.json: onnxruntime/fp16@640"]["rejected"]] == ["slower"]


# --- reports scored on different data sets, flags and sample counts in md/html -------------------------------

def two_data_sets(int8_ap: float = 0.673) -> tuple[tuple[str, Report], tuple[str, Report]]:
    """A: fp32 on the synthetic set; B: int8 only, on another data set (as in a user's trial)."""
    fp32 = row(p99=80.0, ap=0.597)
    fp32.accuracy.per_class_ap = {"person": 0.60, "car": 0.50}
    int8 = row(precision="int8", p99=40.0, ap=int8_ap)
    int8.accuracy.per_class_ap = {"person": 0.70, "car": 0.20}
    return (("A/report.json", report("a.onnx", SHA_A, fp32)),
            ("B/report.json", report("a.onnx", SHA_A, int8, data="e" * 64)))


A_FP32, B_INT8 = "A/report.json: onnxruntime/fp32@640", "B/report.json: onnxruntime/int8@640"


def test_a_baseline_of_another_data_set_gives_no_ap_delta_drop_or_map_verdict():
    result = run(*two_data_sets(), max_map_drop=0.02, baseline="onnxruntime/fp32")
    b = by_label(result)[B_INT8]
    assert b["baseline"] == A_FP32 and "AP" not in b["deltas"] and "AP50" not in b["deltas"]
    assert b["deltas"]["p99"]["rel"] == pytest.approx(-0.5)  # latency deltas stay
    assert b["per_class_drops"] == []  # car 0.50 -> 0.20 is on another data set
    assert [x["code"] for x in b["rejected"]] == ["baseline_other_data"]
    (check,) = b["budget_checks"]
    assert check["status"] == "unknown" and "was scored on another data set" in check["message"]
    assert "data sha256 dddddddddddd; this row: data sha256 eeeeeeeeeeee" in b["baseline_data_note"]
    assert result["recommendation"] == A_FP32 and by_label(result)[A_FP32]["rejected"] == []
    md = render_compare_markdown(result)
    b_line = next(ln for ln in md.splitlines() if ln.startswith(f"| {B_INT8}"))
    assert "0.673 (—)" in b_line and "+0.076" not in md and "Per-class" not in md
    assert b_line.endswith("| not chosen: its baseline was scored on another data set |")
    assert f"{B_INT8}: its baseline {A_FP32} was scored on another data set" in md
    html = render_compare_html(result)
    assert "0.673 (—)" in html and "not chosen: its baseline was scored on another data set" in html


def test_across_data_sets_without_a_map_budget_latency_decides_and_nothing_is_dominated():
    result = run(*two_data_sets(), baseline="onnxruntime/fp32", max_p99_ms=100.0)
    assert result["recommendation"] == B_INT8  # no mAP budget: the faster row, on latency alone
    assert [x["code"] for x in by_label(result)[A_FP32]["rejected"]] == ["slower"]  # not "dominated"
    assert "not comparable" in result["message"]
    collapsed = run(*two_data_sets(int8_ap=0.10), baseline="onnxruntime/fp32")
    assert by_label(collapsed)[B_INT8]["status"] == "ok"  # no AP-collapse gate across data sets


def test_data_sets_without_hashes_are_told_apart_by_path():
    a = ("a.json", report("a.onnx", SHA_A, row(p99=80.0, ap=0.40), data=None))
    b = ("b.json", report("a.onnx", SHA_A, row(precision="int8", p99=40.0, ap=0.45), data=None,
                          data_path="/d/other.yaml"))
    out = by_label(run(a, b, baseline="onnxruntime/fp32", max_map_drop=0.02))["b.json: onnxruntime/int8@640"]
    assert "AP" not in out["deltas"] and "data /d/other.yaml" in out["baseline_data_note"]
    same = ("b.json", report("a.onnx", SHA_A, row(precision="int8", p99=40.0, ap=0.45), data=None))
    kept = by_label(run(a, same, baseline="onnxruntime/fp32"))["b.json: onnxruntime/int8@640"]
    assert kept["deltas"]["AP"]["abs"] == pytest.approx(0.05) and kept["baseline_data_note"] == ""


def test_a_row_with_ap_but_no_baseline_says_the_baseline_is_missing():
    b_int8_only = ("b.json", report("b.onnx", SHA_B, row(precision="int8", p99=30.0, ap=0.673)))
    result = run(A, b_int8_only, max_map_drop=0.02)
    (reason,) = by_label(result)["b.json: onnxruntime/int8@640"]["rejected"]
    assert reason["message"].startswith("no baseline for the AP50-95 drop (pass --baseline): no ok fp32 row")
    md = render_compare_markdown(result)
    assert "| not chosen: no baseline for the AP50-95 drop (pass --baseline) |" in md
    assert "missing map" not in md
    assert "not chosen: no baseline for the AP50-95 drop (pass --baseline)" in render_compare_html(result)


def test_markdown_and_html_show_flags_sample_counts_estimated_p99s_and_separate_runs():
    few = P99_MIN_SAMPLES - 179  # 280: fewer than the early-stopping rule needs
    noisy = row(precision="int8", p99=40.0, ap=0.39, iterations=few)
    noisy.add_flag("noisy", "p50 spread 20%")
    one = report("a.onnx", SHA_A, row(p99=80.0, ap=0.40, iterations=2000), noisy,
                 created_utc="2026-01-01T00:00:00Z")
    result = run(("a.json", one))
    assert result["run_note"] == ""
    md = render_compare_markdown(result)
    line = next(ln for ln in md.splitlines() if ln.startswith("| a.json: onnxruntime/int8"))
    assert f"| noisy | {few} |" in line and "| 40.00* (-50%) |" in line
    fp32_line = next(ln for ln in md.splitlines() if ln.startswith("| a.json: onnxruntime/fp32"))
    assert "| - | 2000 |" in fp32_line and "80.00 " in fp32_line and "80.00*" not in fp32_line
    assert P99_FOOTNOTE in md and "a.json: onnxruntime/int8@640: noisy: p50 spread 20%" in md
    assert "separate runs" not in md
    html = render_compare_html(result)
    assert "40.00* (-50%)" in html and "<td>noisy</td>" in html and P99_FOOTNOTE in html
    assert "noisy: p50 spread 20%" in html
    later = report("a.onnx", SHA_A, row("ncnn", "fp32", p99=70.0, ap=0.40), created_utc="2026-01-02T00:00:00Z")
    two = run(("a.json", one), ("b.json", later))
    assert "2 separate runs" in two["run_note"]
    for text in (render_compare_markdown(two), render_compare_html(two)):
        assert "latency ratios across separate runs are less reliable than within one run" in text
    assert run(("a.json", one), ("b.json", one))["run_note"] == ""  # the same run twice


def test_html_says_why_there_is_no_scatter_across_data_sets(monkeypatch):
    monkeypatch.setattr(html_plots, "available", lambda: True)
    result = run(*two_data_sets())
    assert result["pareto_note"].startswith("the reports scored different data sets")
    html = render_compare_html(result)
    assert result["pareto_note"] in html and "accuracy skipped or nothing ran" not in html
    assert result["pareto_note"] in render_compare_markdown(result)
    assert run(A)["pareto_note"] == ""
