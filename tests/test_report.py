"""Reports (JSON + Markdown, atomic, validated) and the environment record."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

import bench.report.writer as report_mod
from bench.measure.environment import environment
from bench.measure.timing import summarize
from bench.report.markdown import P99_FOOTNOTE
from bench.report.writer import (
    SCHEMA_VERSION,
    Report,
    load_report,
    new_report,
    new_result,
    render_markdown,
    render_table,
    validate_report,
    write_report,
)
from edge_sdk.hashing import sha256_of
from runtimes.errors import ModelLoadError, ReportError

COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _latency(base_ms: float) -> dict:
    ns = [int((base_ms + 0.01 * i) * 1e6) for i in range(100)]
    return summarize(ns)


def sample_report() -> Report:
    ok = new_result(
        "onnxruntime", "fp32", precision_used="fp32", threads=2, imgsz=640,
        latency_ms={"preprocess": _latency(1.0), "inference": _latency(42.0),
                    "postprocess": _latency(0.5),
                    "total": summarize([int(43.5e6 + 1e4 * i) for i in range(100)], fps=True)},
        fps=22.9876,
        memory={"rss_after_load_mb": 120.5, "peak_rss_mb": 141.25, "peak_rss_os_mb": 143.0,
                "model_size_mb": 12.26},
        accuracy={**{k: 0.1 + i / 100 for i, k in enumerate(COCO_KEYS)}, "AP": 0.3731,
                  "AP50": 0.5254, "precision": 0.6, "recall": 0.5, "f1": 0.545, "conf": 0.25,
                  "per_class_ap": {"person": 0.51}},
    )
    failed = new_result("onnxruntime", "int8", threads=2, imgsz=640, status="failed",
                        error="calibration data set has no images: calib/")
    skipped = new_result("openvino", "fp16", threads=2, imgsz=640, status="skipped",
                         error="backend 'openvino' needs the Python package 'openvino'")
    return new_report(
        command=["edgebench", "run", "--profile", "x86-cpu"],
        status="complete",
        profile={"name": "x86-cpu", "backend": "onnxruntime"},
        host_matches_profile=True,
        environment={"hostname": "bench-host-7", "cpu_model": "AMD EPYC",
                     "cpu_flags": ["avx2", "fma"], "physical_cores": 2, "logical_cores": 2,
                     "threads": 2,
                     "versions": {"numpy": "2.4.6", "onnxruntime": "1.31.1"}},
        model={"path": "yolov8n.onnx", "sha256": "ab" * 32, "size_mb": 12.26, "meta": {"nc": 80}},
        data={"path": "coco8", "images": 8, "label_issues": []},
        settings={"warmup": 10, "min_iterations": 100, "min_duration_s": 10.0,
                  "percentile_method": "linear", "deploy": {"conf": 0.25},
                  "accuracy": {"conf": 0.001}},
        results=[ok, failed, skipped],
    )


# --- construction and validation -------------------------------------------------------------

def test_new_report_fills_header_and_is_valid():
    r = new_report()
    assert r.schema_version == SCHEMA_VERSION and r.tool == "edgebench"
    assert r.tool_version and r.status == "partial"
    datetime.fromisoformat(r.created_utc)
    validate_report(r)
    validate_report(sample_report())


def test_validate_rejects_wrong_schema_version_and_missing_keys():
    r = sample_report()
    r.schema_version = 2
    with pytest.raises(ReportError, match="schema_version is 2"):
        validate_report(r)
    d = sample_report().to_dict()
    del d["results"], d["environment"]
    with pytest.raises(ReportError, match="'environment', 'results'"):
        validate_report(d)
    d = sample_report().to_dict()
    del d["results"][1]["latency_ms"]
    with pytest.raises(ReportError, match=r"results\[1\] is missing 'latency_ms'"):
        validate_report(d)
    r = sample_report()
    r.results[0].status = "fine"
    with pytest.raises(ReportError, match="status"):
        validate_report(r)
    with pytest.raises(ReportError, match="JSON object"):
        validate_report([])


# --- write / load ----------------------------------------------------------------------------

def test_round_trip_write_load_equal(tmp_path):
    r = sample_report()
    json_path, md_path = write_report(r, tmp_path / "runs" / "x")
    assert json_path.name == "report.json" and md_path.name == "report.md"
    assert load_report(json_path) == r
    assert md_path.read_text(encoding="utf-8") == render_markdown(r)
    assert sorted(p.name for p in json_path.parent.iterdir()) == ["report.json", "report.md"]


def test_write_report_leaves_nothing_when_rendering_fails(tmp_path, monkeypatch):
    def boom(report):
        raise RuntimeError("renderer broke")

    monkeypatch.setattr(report_mod, "render_markdown", boom)
    with pytest.raises(RuntimeError, match="renderer broke"):
        write_report(sample_report(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_write_report_removes_markdown_when_json_write_fails(tmp_path, monkeypatch):
    real = report_mod.write_text_atomic

    def failing(path, text):
        if Path(path).suffix == ".json":
            raise OSError(28, "No space left on device")
        return real(path, text)

    monkeypatch.setattr(report_mod, "write_text_atomic", failing)
    with pytest.raises(ReportError, match="No space left"):
        write_report(sample_report(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_write_report_unserialisable_or_invalid_writes_nothing(tmp_path):
    r = sample_report()
    r.model.meta["bad"] = object()
    with pytest.raises(ReportError, match="serialisable"):
        write_report(r, tmp_path)
    r = sample_report()
    r.schema_version = 0
    with pytest.raises(ReportError):
        write_report(r, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_write_report_converts_numpy_and_non_finite(tmp_path):
    r = sample_report()
    r.results[0].fps = np.float32(25.5)
    r.results[0].threads = np.int64(2)
    r.results[0].accuracy.APs = float("nan")
    r.model.path = Path("m.onnx")
    json_path, _ = write_report(r, tmp_path)
    back = load_report(json_path)
    assert back.results[0].fps == 25.5 and back.results[0].threads == 2
    assert back.results[0].accuracy.APs is None and back.model.path == "m.onnx"
    assert "NaN" not in json_path.read_text()


def test_load_report_errors_are_one_line_and_name_the_file(tmp_path):
    with pytest.raises(ReportError, match="not found") as e:
        load_report(tmp_path / "missing.json")
    assert "missing.json" in str(e.value) and "\n" not in str(e.value)
    json_path, _ = write_report(sample_report(), tmp_path)
    text = json_path.read_text()
    truncated = tmp_path / "truncated.json"
    truncated.write_text(text[: len(text) // 2])
    with pytest.raises(ReportError, match="not valid JSON") as e:
        load_report(truncated)
    assert "truncated.json" in str(e.value) and "\n" not in str(e.value)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**sample_report().to_dict(), "schema_version": 9}))
    with pytest.raises(ReportError, match="wrong.json: report schema_version is 9"):
        load_report(wrong)


def test_typed_report_round_trips_key_for_key_and_keeps_unknown_keys(tmp_path):
    d = sample_report().to_dict()
    d["results"][0]["from_a_newer_version"] = {"x": 1}
    d["results"][0]["memory"]["future_mb"] = 2.0
    d["results"][0]["parity"] = {"passed": True, "note": None}  # partial, a null kept as null
    d["future"] = [1, 2]
    back = Report.from_dict(d).to_dict()
    assert back == d and list(back) == list(d) and list(back["results"][0]) == list(d["results"][0])
    path = tmp_path / "r.json"
    path.write_text(json.dumps(d))
    r = load_report(path)
    assert isinstance(r, Report) and r.results[0].memory.peak_rss_mb == 141.25
    assert r.results[0].memory.extra == {"future_mb": 2.0} and r.extra == {"future": [1, 2]}
    assert r.results[0].parity.passed is True and r.results[0].parity.to_dict() == {"passed": True, "note": None}


def test_report_written_before_the_optional_row_keys_loads_typed(tmp_path):
    d = sample_report().to_dict()
    for row in d["results"]:
        for key in ("budget_checks", "reference_check", "parity", "agreement", "delegation"):
            del row[key]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(d))
    r = load_report(path)
    assert r.results[0].budget_checks is None and r.results[0].delegation is None
    assert r.results[0].total.p99 == d["results"][0]["latency_ms"]["total"]["p99"]
    assert render_markdown(r) == render_markdown(Report.from_dict(d))


def test_sustained_section_keys_by_status():
    from bench.report.sustained_rows import SustainedSection

    assert list(SustainedSection(status="skipped", error="x", duration_s=3.0).to_dict()) == [
        "status", "error", "duration_s"]
    assert list(SustainedSection(status="failed", error="x", backend="b", precision="fp32", duration_s=3.0)
                .to_dict()) == ["status", "error", "backend", "precision", "duration_s", "window_s"]
    ok = SustainedSection(status="ok").to_dict()
    assert list(ok)[:4] == ["status", "error", "backend", "precision"] and list(ok)[-1] == "thresholds"


# --- rendering -------------------------------------------------------------------------------

def test_markdown_contains_the_numbers_and_reasons():
    r = sample_report()
    md = render_markdown(r)
    ok = r.results[0]
    assert md.startswith("# edgebench report: x86-cpu")
    for stage, s in ok.latency_ms.stages():
        assert f"{s.p50:.2f}/{s.p95:.2f}/{s.p99:.2f}" in md, stage
    for text in ("23.0", "141.2", "12.26", "0.373", "0.525", "fp32/fp32", "bench-host-7",
                 "onnxruntime 1.31.1", "percentile method: linear",
                 "failed: calibration data set has no images: calib/",
                 "skipped: backend 'openvino' needs the Python package 'openvino'"):
        assert text in md, text
    table_rows = [line for line in md.splitlines() if line.startswith("| onnxruntime")]
    assert len(table_rows) == 2


def test_table_is_fixed_width_and_contains_the_numbers():
    r = sample_report()
    r.results[1].error = "x" * 200  # long reasons are cut in the terminal table
    table = render_table(r)
    lines = table.splitlines()
    assert len(lines) == 2 + 3 + 3 and "p50/p95/p99 ms" in lines[-3]  # footer, p99 footnote, full reason
    assert lines[-2] == P99_FOOTNOTE  # 100 samples: p99 is an estimate, marked
    assert lines[-1] == f"{r.results[1].config}: {r.results[1].status}: {'x' * 200}"  # the cut reason, whole
    assert lines[0].split()[5] == "n" and lines[2].split()[5] == "100"
    status_col = lines[0].index("status")
    assert [line[status_col:status_col + 4] for line in lines[2:5]] == ["ok", "fail", "skip"]
    s = r.results[0].latency_ms.inference
    assert f"{s.p50:.2f}/{s.p95:.2f}/{s.p99:.2f}" in table
    for text in ("23.0", "141.2", "0.373", "0.525", "skipped: backend 'openvino'"):
        assert text in table, text
    assert "x" * 57 + "..." in lines[3] and "x" * 58 not in "\n".join(lines[:5])
    assert table.count("x" * 200) == 1  # a short reason (row 2) is not repeated
    assert render_table(new_report()).count("\n") == 2  # header, rule, footer; no rows


def test_notes_flag_partial_runs_and_precision_changes():
    r = sample_report()
    r.status = "partial"
    r.host_note = "host does not match profile rpi5"
    r.results[0].precision_used = "bf16"
    md = render_markdown(r)
    assert "partial" in md and "host does not match profile rpi5" in md
    assert "asked for fp32 but ran bf16" in md


# --- environment -----------------------------------------------------------------------------

def test_environment_record(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model-bytes" * 1000)
    env = environment(threads=2, engines={"onnxruntime": "1.31.1"}, model_path=model)
    assert env["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert env["threads"] == 2 and env["logical_cores"] >= 1 and env["hostname"]
    assert env["versions"]["onnxruntime"] == "1.31.1" and env["versions"]["numpy"] == np.__version__
    assert env["cpu_model"] and isinstance(env["cpu_flags"], list)
    if Path("/proc/cpuinfo").exists():
        assert len(env["cpu_flags"]) > 0
    assert len(env["load_avg"]) == 3
    assert datetime.fromisoformat(env["timestamp_utc"]).utcoffset().total_seconds() == 0
    json.dumps(env, allow_nan=False)
    assert environment(None, {}, None)["model_sha256"] is None


def test_sha256_of_directory_and_pair(tmp_path):
    (tmp_path / "m.param").write_text("7767517\n")
    (tmp_path / "m.bin").write_bytes(b"\1\2\3")
    pair = sha256_of([tmp_path / "m.param", tmp_path / "m.bin"])
    assert pair == sha256_of([tmp_path / "m.bin", tmp_path / "m.param"])  # order-free
    pkg = tmp_path / "m.mlpackage"
    (pkg / "Data").mkdir(parents=True)
    (pkg / "Data" / "w.bin").write_bytes(b"abc")
    before = sha256_of(pkg)
    (pkg / "Data" / "w.bin").write_bytes(b"abd")
    assert sha256_of(pkg) != before and len(before) == 64
    with pytest.raises(ModelLoadError, match="gone.bin"):
        sha256_of([tmp_path / "m.param", tmp_path / "gone.bin"])
