"""`edgebench sweep`: isolation of crashing and hanging configurations, conversion rows, partial reports."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

import bench.sweep.run as run_mod
from bench.report.writer import ResultRow, load_report
from bench.sweep.sweep import ConfigJob, SweepOptions, run_job, sweep
from runtimes.registry import is_installed
from tests.conftest import assert_one_line_error, run_cli


def _opts(tmp_path: Path, model: Path, data: Path, **kw: Any) -> SweepOptions:
    kw = {"warmup": 1, "min_iterations": 3, "min_duration_s": 0.0, "threads": 1, **kw}
    return SweepOptions(model=str(model), data=str(data), out_dir=str(tmp_path / "sweep"), **kw)


def misbehaving_job(job: ConfigJob) -> dict[str, Any]:
    """Child-side hook: openvino aborts (like a segfault in native code), ncnn hangs, the rest is real."""
    if job.spec.backend == "openvino":
        os.abort()
    if job.spec.backend == "ncnn":
        time.sleep(600)
    return run_job(job)


def test_crash_and_hang_become_failed_rows(tmp_path, small_model, small_data, monkeypatch):
    # the fake job never imports the engines, so they need not be installed
    monkeypatch.setattr(run_mod, "availability", lambda name: (True, "ok"))
    opts = _opts(tmp_path, small_model, small_data, backends=("onnxruntime", "openvino", "ncnn"),
                 precisions=("fp32",), timeout_s=8.0, job_fn=misbehaving_job)  # room for a loaded CI box
    started = time.monotonic()
    report, json_path, _ = sweep(opts)
    assert time.monotonic() - started < 45
    assert load_report(json_path).status == report.status == "complete"
    rows = {r.backend: r for r in report.results}
    good, crashed, hung = rows["onnxruntime"], rows["openvino"], rows["ncnn"]
    assert good.status == "ok", good.error
    assert good.latency_ms.total.count >= 3
    assert good.accuracy.num_images == 4 and good.imgsz == [128, 128]
    assert good.budget_checks is not None and good.parity is None
    assert crashed.status == "failed" and crashed.error.startswith("crashed:")
    assert "SIGABRT" in crashed.error
    assert hung.status == "failed" and hung.error.startswith("timeout:")


def test_skipped_rows_say_why(tmp_path, small_model, small_data, monkeypatch):
    monkeypatch.setattr(run_mod, "availability",
                        lambda name: (False, f"package '{name}' not installed (pip install 'edgebench[{name}]')"))
    opts = _opts(tmp_path, small_model, small_data, backends=("openvino",), precisions=("fp32",),
                 imgsz=(128, 320), accuracy=False)
    report, _, md_path = sweep(opts)
    first, second = report.results
    assert first.status == "skipped" and "edgebench[openvino]" in first.error
    assert second.status == "skipped" and "fixed at 128x128" in second.error
    assert second.imgsz == [320, 320] and "skipped" in md_path.read_text()


@pytest.mark.parametrize("backend", ["openvino", "ncnn"])
def test_converted_backend_rows_carry_parity(tmp_path, small_model, small_data, backend):
    if not is_installed(backend):
        pytest.skip(f"{backend} not installed (pip install 'edgebench[{backend}]')")
    opts = _opts(tmp_path, small_model, small_data, backends=(backend,), precisions=("fp32", "int8"),
                 max_eval_images=2, timeout_s=120.0)
    report, _, _ = sweep(opts)
    row, int8 = report.results
    assert row.status == "ok", row.error
    assert Path(row.artifact).parent == tmp_path / "sweep" / "artifacts" and Path(row.artifact).exists()
    assert row.parity.passed is True and row.accuracy.num_images == 2
    assert int8.status == "skipped" and "calibration" in int8.error


def test_interrupted_sweep_keeps_a_partial_report(tmp_path, small_model, small_data):
    opts = _opts(tmp_path, small_model, small_data, precisions=("fp32", "fp16", "int8"), accuracy=False)

    def stop(row: ResultRow) -> None:
        raise KeyboardInterrupt

    report, json_path, md_path = sweep(opts, on_row=stop)
    on_disk = load_report(json_path)
    assert on_disk.status == "partial" and on_disk.sweep.interrupted is True
    assert [r.precision for r in on_disk.results] == ["fp32"]
    assert on_disk.results[0].status == "ok" and "interrupted after 1 of 3" in md_path.read_text()


def test_cli_happy_path_and_bad_input(tmp_path, small_model, small_data):
    out = tmp_path / "out"
    proc = run_cli("sweep", "--model", str(small_model), "--data", str(small_data), "--out", str(out),
                   "--precisions", "fp32,int8", "--warmup", "1", "--min-iterations", "3", "--min-duration", "0",
                   "--no-accuracy", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime" in proc.stdout and f"report: {out / 'report.json'}" in proc.stdout
    assert "onnxruntime/fp32@128:" in proc.stderr and "skipped" in proc.stderr
    assert load_report(out / "report.json").status == "complete"
    nothing_ran = run_cli("sweep", "--model", str(small_model), "--data", str(small_data), "--out",
                          str(tmp_path / "none"), "--precisions", "int8", cwd=tmp_path)
    assert nothing_ran.returncode == 1 and "skipped" in nothing_ran.stdout, nothing_ran.stderr
    bad = run_cli("sweep", "--model", str(small_model), "--data", str(small_data), "--out", str(out),
                  "--backend", "onnxruntime,tensorflo", cwd=tmp_path)
    assert_one_line_error(bad, "unknown backend 'tensorflo'")
