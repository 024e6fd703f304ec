"""`edgebench run` end to end on a small model and data set."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.report.writer import load_report
from bench.sweep.run import RunOptions, run
from runtimes.errors import EdgebenchError
from tests.conftest import run_cli

STAGES = ("preprocess", "inference", "postprocess", "total")


def _opts(tmp_path: Path, model: Path, data: Path, **kw) -> RunOptions:
    return RunOptions(model=str(model), data=str(data), out_dir=str(tmp_path / "runs"), warmup=1,
                      min_iterations=5, min_duration_s=0.0, **kw)


def test_run_measures_and_scores(tmp_path, small_model, small_data):
    report, json_path, md_path = run(_opts(tmp_path, small_model, small_data))
    assert load_report(json_path).to_dict() == json.loads(json.dumps(report.to_dict(), default=str))
    assert report.status == "complete" and report.host_matches_profile
    rows = {r.precision: r for r in report.results}
    ok, skipped = rows["fp32"], rows["int8"]
    assert ok.status == "ok" and ok.precision_used == "fp32"
    stages = dict(ok.latency_ms.stages())
    for stage in STAGES:
        s = stages[stage]
        assert s.count >= 5 and 0 < s.min <= s.p50 <= s.p99 <= s.max
    assert abs(ok.fps - 1000 / ok.latency_ms.total.mean) < 1e-6
    assert ok.memory.peak_rss_mb >= ok.memory.rss_after_load_mb > 0
    assert ok.accuracy.num_images == 4 and 0 <= ok.accuracy.AP <= 1
    assert skipped.status == "skipped" and "int8" in skipped.error
    assert report.model.sha256 == report.environment["model_sha256"]
    md = md_path.read_text()
    assert "onnxruntime" in md and "skipped" in md


def test_run_without_accuracy_and_custom_profile(tmp_path, small_model, small_data):
    prof = tmp_path / "tiny.yaml"
    prof.write_text("name: tiny\ndevice: test box\nbackend: onnxruntime\nprecisions: [fp32]\n"
                    "input_size: 128\nthreads: 1\nbench: {warmup: 1, min_iterations: 3, min_duration_s: 0}\n")
    report, _, _ = run(RunOptions(profile=str(prof), model=str(small_model), data=str(small_data),
                                  out_dir=str(tmp_path / "runs"), accuracy=False))
    (row,) = report.results
    assert row.accuracy is None and row.threads == 1
    assert row.latency_ms.total.count >= 3
    assert report.host_matches_profile is False and "not on test box" in report.host_note


def test_run_cli_prints_table(tmp_path, small_model, small_data):
    proc = run_cli("run", "--model", str(small_model), "--data", str(small_data), "--out", str(tmp_path / "r"),
                   "--warmup", "1", "--min-iterations", "3", "--min-duration", "0", "--precisions", "fp32",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime" in proc.stdout and "report:" in proc.stdout
    assert (tmp_path / "r" / "report.json").is_file()  # --out DIR: the report goes into DIR itself


def test_run_with_no_arguments_uses_the_bundled_model(tmp_path):
    """`edgebench run` alone: bundled model, its regenerated synthetic val set, this host's profile."""
    from bench.sweep.defaults import default_model

    model = default_model()  # ships with the repo: missing, it is an error, not a skip
    proc = run_cli("run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (report_path,) = (tmp_path / "runs").glob("*/report.json")
    report = load_report(report_path)
    assert report.model.path == str(model) and report.host_matches_profile
    ok = report.ok_rows
    recorded = json.loads(model.with_suffix(".json").read_text())["metrics"]
    assert ok and ok[0].accuracy.num_images == recorded["images"]
    assert abs(ok[0].accuracy.AP - recorded["AP50-95"]) < 0.005  # the figure shipped with the model
    assert "AP" in proc.stdout and str(report_path.relative_to(tmp_path)) in proc.stdout


def test_run_measures_each_listed_backend(tmp_path, small_model, small_data):
    """--backend A,B: each backend at each precision, backend-major, like sweep's grid at one size."""
    report, json_path, _ = run(_opts(tmp_path, small_model, small_data, backends=("onnxruntime", "tensorrt"),
                                     precisions=("fp32", "int8"), accuracy=False))
    assert [(r.backend, r.precision, r.status) for r in report.results] == [
        ("onnxruntime", "fp32", "ok"), ("onnxruntime", "int8", "skipped"),
        ("tensorrt", "fp32", "skipped"), ("tensorrt", "int8", "skipped")]
    assert "tensorrt: package 'tensorrt' not installed" in report.results[2].error
    assert json_path == tmp_path / "runs" / "report.json"
    with pytest.raises(EdgebenchError, match="unknown backend 'nope'"):
        run(_opts(tmp_path / "x", small_model, small_data, backends=("onnxruntime", "nope")))
    assert not (tmp_path / "x").exists()
