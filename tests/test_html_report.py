"""The HTML report and `compare --format html`: tables, inline SVG, offline, escaped, tolerant."""
from __future__ import annotations

import dataclasses
from html.parser import HTMLParser

import pytest

import bench.report.plots as html_plots
from bench.measure.runner import total_samples_ms
from bench.report.compare import compare
from bench.report.compare_html import render_compare_html
from bench.report.html import DASH, NO_PLOTS, SUMMARY_HEADERS, render_html, write_html_report
from bench.report.rows import Parity, Report, Samples
from bench.report.sustained_rows import SustainedSection
from bench.report.writer import write_report
from tests.conftest import run_cli
from tests.test_report import sample_report

needs_mpl = pytest.mark.skipif(not html_plots.available(),
                               reason="matplotlib not installed (pip install 'edgebench[report]')")


class Page(HTMLParser):
    """Start tags with their attributes, and every table as rows of cell texts."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.tables: list[list[list[str]]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def count(self, tag: str) -> int:
        return sum(1 for t, _ in self.tags if t == tag)


def rich_report() -> Report:
    r = sample_report()
    ok = r.results[0]
    ok.latency_samples_ms = Samples(total=[43.0 + 0.01 * i for i in range(200)])
    ok.accuracy.per_class_ap = {"person": 0.51, "car": 0.32}
    int8 = dataclasses.replace(
        ok, precision="int8", precision_used="int8", fps=30.0,
        accuracy=dataclasses.replace(ok.accuracy, AP=0.35, per_class_ap={"person": 0.45, "car": 0.30}),
        parity=Parity(passed=False, failures=["boxes differ"], box_max_abs=2.5))
    r.results.insert(1, int8)
    return r


def summary_rows(page: Page) -> list[list[str]]:
    return page.tables[0][1:]  # the first table is the summary; its first row is the header


def test_summary_table_has_one_row_per_configuration_and_svg_plots():
    report = rich_report()
    page = Page(render_html(report))
    rows = summary_rows(page)
    assert len(rows) == len(report.results)
    assert [r[0] for r in rows] == [x.backend for x in report.results]
    assert rows[0][5] == f"{report.results[0].fps:.1f}"
    assert rows[1][-1].startswith("FAIL")
    if html_plots.available():
        assert page.count("svg") >= 3  # latency, scatter, per-class AP
    else:
        assert NO_PLOTS in "".join(page.text)


def test_page_is_offline():
    page = Page(render_html(rich_report()))
    assert page.count("script") == 0 and page.count("link") == 0 and page.count("img") == 0
    for tag, attrs in page.tags:
        for key in ("src", "href", "xlink:href"):
            value = attrs.get(key) or ""
            assert not value.startswith(("http:", "https:", "//")), (tag, key, value)


def test_failed_rows_show_their_error_and_dashes():
    report = rich_report()
    rows = summary_rows(Page(render_html(report)))
    failed = next(r for r in rows if r[1] == "int8" and r[4].startswith("failed"))
    assert "calibration data set has no images: calib/" in failed[4]
    assert failed[5] == failed[8] == failed[11] == DASH
    skipped = next(r for r in rows if r[0] == "openvino")
    assert skipped[4].startswith("skipped: backend 'openvino' needs")


def test_report_without_accuracy_or_samples_renders():
    report = sample_report()
    for row in report.results:
        row.accuracy = None
    page = Page(render_html(report))
    ap = SUMMARY_HEADERS.index("AP50-95")
    assert all(r[ap] == DASH for r in summary_rows(page))
    assert "no per-class AP" in "".join(page.text)
    assert page.count("svg") == 0  # no samples, no (AP, p99) point, no per-class AP


def test_text_is_escaped():
    report = sample_report()
    report.results[1].error = "<script>alert(1)</script> & <b>bold</b>"
    report.profile["name"] = "<i>x</i>"
    text = render_html(report)
    page = Page(text)
    assert page.count("script") == 0 and page.count("i") == 0
    assert "<script>alert(1)</script> & <b>bold</b>" in summary_rows(page)[1][4]
    assert "&lt;script&gt;" in text


@needs_mpl
def test_sustained_windows_plot_tolerates_missing_keys():
    report = sample_report()
    plots_without = Page(render_html(report)).count("svg")
    report.sustained = SustainedSection.from_dict({
        "status": "ok", "backend": "onnxruntime", "precision": "fp32",
        "verdict": "thermally throttled", "verdict_reason": "flag seen", "windows": [
            {"t0_s": 0, "t_s": 5, "p50_ms": 40.0, "p99_ms": 50.0, "cpu_mhz": 3000, "temp_c": 55.0},
            {"t_s": 10, "p50_ms": 41.0, "throttled": True}, {"p99_ms": 60.0}, "junk"]})
    page = Page(render_html(report))
    text = "".join(page.text)
    assert "Sustained run" in text and "thermally throttled (flag seen)" in text
    assert page.count("svg") == plots_without + 1
    report.sustained = SustainedSection.from_dict({"status": "failed", "error": "crashed: SIGSEGV <native>"})
    text = "".join(Page(render_html(report)).text)
    assert "failed: crashed: SIGSEGV <native>" in text
    report.sustained = SustainedSection()  # a section with nothing in it still renders its heading
    assert "Sustained run" in "".join(Page(render_html(report)).text)


def test_without_matplotlib_tables_remain_with_a_note(monkeypatch):
    monkeypatch.setattr(html_plots, "available", lambda: False)
    page = Page(render_html(rich_report()))
    assert page.count("svg") == 0 and NO_PLOTS in "".join(page.text)
    assert len(summary_rows(page)) == 4


def test_compare_html_has_rows_scatter_and_recommendation():
    report = rich_report()
    result = compare([("a/report.json", report)])
    page = Page(render_compare_html(result))
    rows = page.tables[0][1:]
    assert len(rows) == len(report.results)
    assert any(r[-1] == "recommended" for r in rows)
    assert result["message"] in "".join(page.text)
    assert page.count("svg") == (1 if html_plots.available() else 0)


def test_compare_cli_writes_html(tmp_path):
    json_path, _ = write_report(rich_report(), tmp_path / "a")
    out = tmp_path / "cmp.html"
    result = run_cli("compare", str(json_path), "--format", "html", "-o", str(out))
    assert result.returncode == 0, result.stderr
    page = Page(out.read_text())
    assert len(page.tables[0]) - 1 == 4


def test_write_html_report_writes_one_file(tmp_path):
    path = write_html_report(rich_report(), tmp_path / "x")
    assert path.name == "report.html" and [p.name for p in path.parent.iterdir()] == ["report.html"]


def test_total_samples_are_capped_and_kept_in_order():
    ns = list(range(1_000_000, 13_000_000, 1000))  # 12000 samples, 1 ms .. 13 ms
    ms = total_samples_ms(ns, cap=5000)
    assert len(ms) <= 5000 and ms == sorted(ms) and ms[0] == 1.0
    assert total_samples_ms([1_500_000]) == [1.5]


# --- the validation views (PR / F1 curves, confusion matrix: bench.report.html_curves) --------------------

def report_with_curves() -> Report:
    from edge_sdk.coco_eval import evaluate
    from tests.coco_cases import random_case

    report = rich_report()
    gt, dets = random_case(1)
    views = evaluate(gt, dets, deploy_conf=0.25, names={1: "person", 5: "car", 90: "dog"}).views()
    for row in report.results:
        if row.accuracy is not None:
            row.accuracy = dataclasses.replace(row.accuracy, **views)
    return report


def test_curves_section_has_one_block_per_measured_row_with_tables():
    from bench.report.html_curves import HEADING

    report = report_with_curves()
    page = Page(render_html(report))
    text = "".join(page.text)
    assert HEADING in text
    measured = [r for r in report.results if r.measured and r.accuracy is not None]
    for row in measured:
        assert row.config in text
    best = [t for t in page.tables if t and t[0][:4] == ["classes", "AP50 (curve)", "best F1", "best-F1 conf"]]
    assert len(best) == len(measured)
    curves = measured[0].accuracy.curves
    assert best[0][1][0] == "all classes (pooled)" and best[0][1][2] == f"{curves['all']['best_f1']:.3f}"
    assert [r[0] for r in best[0][2:]] == list(curves["classes"])
    matrix = [t for t in page.tables if t and t[0][0] == "predicted \\ true"]
    assert len(matrix) == len(measured)
    assert matrix[0][0][1:] == ["person", "car", "dog", "background"] and matrix[0][-1][0] == "background"
    if html_plots.available():
        plain = Page(render_html(rich_report())).count("svg")
        assert page.count("svg") == plain + 3 * len(measured)  # PR, F1, confusion per row


def test_curves_section_without_curves_or_matplotlib(monkeypatch):
    from bench.report.html_curves import HEADING

    text = "".join(Page(render_html(rich_report())).text)
    assert HEADING in text and "no PR / F1 curves in this report" in text
    monkeypatch.setattr(html_plots, "available", lambda: False)
    page = Page(render_html(report_with_curves()))
    assert page.count("svg") == 0
    assert any(t and t[0][0] == "predicted \\ true" for t in page.tables)


@needs_mpl
def test_curve_plots_keep_unit_axes():
    from bench.report.curve_plots import f1_figure, pr_figure

    curves = report_with_curves().results[0].accuracy.curves
    for fig in (pr_figure(curves), f1_figure(curves, 0.25)):
        ax = fig.axes[0]
        assert ax.get_xlim() == (0.0, 1.0) and ax.get_ylim() == (0.0, 1.0)


def test_accuracy_record_round_trips_the_views():
    from bench.report.rows import Accuracy

    acc = report_with_curves().results[0].accuracy
    back = Accuracy.from_dict(acc.to_dict())
    assert back.curves == acc.curves and back.confusion == acc.confusion and back.best_f1_conf == acc.best_f1_conf
    assert "curves" not in Accuracy(AP=0.5).to_dict()  # rows without views keep their old keys
