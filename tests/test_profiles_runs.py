"""Two runs whose rows are not plain measurements: `run --profile iphone15` on a host that cannot predict with
Core ML converts the model (fp16, as the profile says), checks the package and marks the row "not measurable"
(never recommended); and the torch row of a training checkpoint runs the checkpoint itself (the reference),
while every other backend starts from its one ONNX export. (The verified field, the missing-piece lines and old
reports: tests/test_profiles_verified.py.)"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import bench.sweep.hardware as hw
from bench.report.compare import compare
from bench.report.rows import DEVICE, HOST_PROXY, NOT_MEASURABLE
from bench.report.writer import load_report
from bench.sweep.run import RunOptions, run

# before torch loads (coremltools imports it): spinning OpenMP workers collapse on a busy machine
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

LINUX = {"os": "linux", "machine": "x86_64", "cpu_flags": ["avx2"], "device_tree_model": None,
         "tegra_release": None, "accelerators": [], "nvidia_gpus": [], "cpu_model": "Test CPU"}


def test_run_iphone15_off_macos_converts_checks_and_marks_not_measurable(
        monkeypatch: pytest.MonkeyPatch, small_model: Path, small_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("coremltools", reason="Core ML conversion needs coremltools (edgebench[coreml-export])")
    pytest.importorskip("torch", reason="Core ML conversion needs torch (edgebench[coreml-export])")
    monkeypatch.setattr(hw, "host_facts", lambda: dict(LINUX))  # a Mac would be the same: the decision is here
    opts = RunOptions(profile="iphone15", model=str(small_model), data=str(small_data), out_dir=str(tmp_path / "r"),
                      warmup=1, min_iterations=3, min_duration_s=0.0)
    report, json_path, md_path = run(opts)
    fp16, int8 = report.results
    assert (fp16.status, fp16.verified, fp16.precision) == ("skipped", NOT_MEASURABLE, "fp16")
    assert str(fp16.error).startswith("latency and accuracy not measurable on this host: coreml prediction needs "
                                      "macOS or iOS on Apple silicon (this host runs linux on x86_64)")
    assert fp16.latency_ms is None and fp16.accuracy is None and fp16.fps is None
    check = fp16.artifact_check
    assert check is not None and check.format == "mlProgram" and check.compute_precision == "fp16"
    assert check.size_bytes and check.ops_total and check.compute_ops and (check.ops or {}).get("conv")
    assert "not measurable on this host" in str(check.prediction) and "not measurable" in str(check.compute_plan)
    assert check.inputs and check.inputs[0]["shape"] == [1, 3, 128, 128]
    assert fp16.artifact and Path(fp16.artifact).suffix == ".mlpackage" and Path(fp16.artifact).is_dir()
    assert fp16.memory is not None and fp16.memory.model_size_mb == pytest.approx(check.size_bytes / 2**20)
    assert fp16.imgsz == [128, 128] and fp16.precision_used == "fp16"
    assert fp16.artifact_sha256 and fp16.source_sha256  # the package, and the ONNX it was converted from
    assert (int8.status, int8.verified) == ("skipped", NOT_MEASURABLE)
    assert report.status == "partial" and "not measurable on this host" in (report.notes or [""])[-1]
    md = md_path.read_text()
    assert "mlProgram checked without running it" in md and "| not measurable |" in md
    result = compare([("ip.json", load_report(json_path))])
    assert result["recommendation"] is None
    assert [r["rejected"][0]["code"] for r in result["rows"]] == ["not_measurable", "not_measurable"]


def test_the_torch_row_of_a_checkpoint_runs_the_checkpoint_itself(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the torch backend needs torch (pip install 'edgebench[train]')")
    from test_trainer_export import save_checkpoint

    ckpt = tmp_path / "m.ckpt"
    save_checkpoint(ckpt)
    opts = RunOptions(profile="x86-cpu", model=str(ckpt), out_dir=str(tmp_path / "r"),
                      backends=("torch", "onnxruntime"), precisions=("fp32",), warmup=1, min_iterations=2,
                      min_duration_s=0.0, accuracy=False)
    report, _, _ = run(opts)
    torch_row, ort_row = report.results
    assert torch_row.status == "ok" and ort_row.status == "ok", (torch_row.error, ort_row.error)
    assert torch_row.artifact == str(ckpt) and torch_row.source_sha256 is None  # the checkpoint, not an export
    exported = tmp_path / "r" / "artifacts" / "m-train.onnx"  # every other backend: its one ONNX export
    assert ort_row.artifact == str(exported) and ort_row.source_sha256 == report.model.sha256
    assert report.model.path == str(ckpt) and torch_row.precision_used == "fp32"
    assert torch_row.verified == ort_row.verified and torch_row.verified in (DEVICE, HOST_PROXY)
