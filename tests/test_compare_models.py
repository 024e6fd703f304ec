"""compare across models and data sets, proxy rows and rows within noise (hand-written reports)."""
from __future__ import annotations

import pytest

from bench.report.compare import CompareOptions, compare
from bench.report.compare_html import render_compare_html
from bench.report.compare_render import render_compare_markdown
from bench.report.writer import Report, ResultRow, new_report
from runtimes.errors import ReportError
from tests.test_budgets import row

SHA_A, SHA_B, DATA = "a" * 64, "b" * 64, "d" * 64


def report(model: str, sha: str, *rows: ResultRow, data: str = DATA) -> Report:
    return new_report(status="complete", profile={"name": "test"}, results=list(rows),
                      model={"path": f"/m/{model}", "sha256": sha},
                      data={"path": "/d/data.yaml", "images": 30, "scored_images": 30, "sha256": data})


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
    assert [x["code"] for x in b["rejected"]] == ["missing_map"]
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
