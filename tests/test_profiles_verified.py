"""What each report row was verified on, and the profiles whose backend this host cannot run.

- every row carries "verified on hardware": device, host proxy or not measurable (bench.sweep.hardware), shown in
  report.md, report.html, the terminal table and compare; compare never recommends a "not measurable" row;
- (`run --profile iphone15` off macOS and a checkpoint's torch row: tests/test_profiles_runs.py);
- `run --profile jetson-orin` without TensorRT says which of package, driver and GPU is missing and runs the ONNX
  on its host proxy (ONNX Runtime) marked host proxy; a profile without a proxy is refused;
- an ONNX on torch is refused in one line;
- reports written before the field existed still load, render and compare.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import bench.sweep.hardware as hw
from bench.report.compare import compare
from bench.report.compare_render import render_compare_markdown
from bench.report.html import render_html
from bench.report.markdown import render_markdown, render_table
from bench.report.rows import DEVICE, HOST_PROXY, NOT_MEASURABLE, Report
from bench.report.writer import load_report, new_report, new_result, write_report
from bench.sweep.artifacts import ConfigSkipped, plan_artifact
from bench.sweep.isolate import run_isolated
from bench.sweep.run import RunOptions, run
from edge_sdk.profiles import load_profile
from runtimes.errors import (
    BackendNotImplementedError,
    BackendUnavailableError,
    HardwareUnavailableError,
    ProfileError,
)

X86 = {"os": "linux", "machine": "x86_64", "cpu_flags": ["avx2"], "device_tree_model": None, "tegra_release": None,
       "accelerators": [], "nvidia_gpus": [], "cpu_model": "Test CPU"}
GPU_X86 = {**X86, "accelerators": ["nvidia-gpu"], "nvidia_gpus": ["GPU 0: NVIDIA H200"]}
JETSON = {**X86, "machine": "aarch64", "device_tree_model": "NVIDIA Jetson AGX Orin Developer Kit",
          "tegra_release": "# R36 (release)", "accelerators": ["nvidia-gpu"]}
MAC = {**X86, "os": "darwin", "machine": "arm64", "accelerators": ["apple"]}
IPHONE = {**X86, "os": "ios", "machine": "arm64", "accelerators": ["apple"]}
TRT_MISSING = "package 'tensorrt' not installed (pip install 'edgebench[tensorrt]')"
PCI_CARDS = hw.nvidia_pci_cards  # the real one (the fixture below stands in for it)


@pytest.fixture
def no_nvidia(monkeypatch: pytest.MonkeyPatch) -> None:
    """This host as an x86 box with no NVIDIA driver, card or GPU, ONNX Runtime on the CPU only, and the tensorrt
    package missing (whatever machine runs the tests)."""
    monkeypatch.setattr(hw, "host_facts", lambda: dict(X86))
    monkeypatch.setattr(hw, "_libcuda", lambda: None)
    monkeypatch.setattr(hw, "NVIDIA_PROC", "/nonexistent/nvidia/version")
    monkeypatch.setattr(hw, "nvidia_pci_cards", lambda root=hw.PCI_DEVICES: [])
    monkeypatch.setattr(hw, "ort_providers", lambda: ["CPUExecutionProvider"])
    real = hw.availability
    monkeypatch.setattr(hw, "availability", lambda b: (False, TRT_MISSING) if b == "tensorrt" else real(b))


# ----------------------------------------------------------------------------- verified on hardware

@pytest.mark.parametrize("profile, backend, facts, expected", [
    ("x86-cpu", "onnxruntime", X86, DEVICE),
    ("rpi5", "ncnn", X86, HOST_PROXY),  # ncnn on x86 kernels standing in for the Pi
    ("jetson-orin", "onnxruntime", X86, HOST_PROXY),  # the Jetson's ONNX on ORT CPU
    ("jetson-orin", "tensorrt", X86, NOT_MEASURABLE),  # no NVIDIA GPU
    ("jetson-orin", "tensorrt", GPU_X86, HOST_PROXY),  # a datacentre GPU is not the Jetson
    ("jetson-orin", "tensorrt", JETSON, DEVICE),
    ("jetson-orin", "onnxruntime", JETSON, DEVICE),  # ORT on the Jetson itself
    ("iphone15", "coreml", X86, NOT_MEASURABLE),  # Core ML prediction off macOS
    ("iphone15", "coreml", MAC, HOST_PROXY),  # a Mac is not the phone
    ("iphone15", "coreml", IPHONE, DEVICE),
    ("x86-cpu", "coreml", X86, NOT_MEASURABLE),
])
def test_verified_follows_profile_backend_and_host(profile: str, backend: str, facts: dict[str, Any],
                                                   expected: str) -> None:
    assert hw.verified_for(load_profile(profile), backend, facts) == expected


def test_mark_verified_keeps_a_value_already_set() -> None:
    row = new_result("coreml", "fp16", status="skipped", error="x", verified=HOST_PROXY)
    assert hw.mark_verified(row, load_profile("iphone15")).verified == HOST_PROXY


# ----------------------------------------------------------------------------- what is missing

def test_jetson_orin_without_tensorrt_names_package_driver_and_gpu_and_its_proxy(no_nvidia: None) -> None:
    backends, notes = hw.profile_backends(load_profile("jetson-orin"))
    assert backends == ("tensorrt", "onnxruntime")
    (note,) = notes
    assert note.startswith("tensorrt cannot run on this host (" + TRT_MISSING + "; no NVIDIA driver")
    assert "no NVIDIA GPU" in note and "onnxruntime runs the ONNX on the CPU" in note
    assert "CPUExecutionProvider: no TensorRT or CUDA one" in note and "marked host proxy" in note
    assert hw.missing_line("onnxruntime") is None


def test_a_card_without_its_driver_is_only_the_driver(no_nvidia: None, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    card = tmp_path / "0000:01:00.0"
    card.mkdir()
    (card / "vendor").write_text("0x10de\n")
    (card / "class").write_text("0x030200\n")
    other = tmp_path / "0000:00:02.0"
    other.mkdir()
    (other / "vendor").write_text("0x8086\n")
    (other / "class").write_text("0x030000\n")
    assert PCI_CARDS(str(tmp_path)) == ["0000:01:00.0"] and PCI_CARDS(str(tmp_path / "none")) == []
    monkeypatch.setattr(hw, "nvidia_pci_cards", lambda root=hw.PCI_DEVICES: ["0000:01:00.0"])
    (piece,) = hw.hardware_missing("tensorrt")
    assert piece.startswith("no NVIDIA driver (an NVIDIA card is on the PCI bus at 0000:01:00.0")


def test_with_the_gpu_only_the_package_is_missing_and_the_proxy_uses_its_gpu_provider(
        no_nvidia: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hw, "host_facts", lambda: dict(GPU_X86))
    monkeypatch.setattr(hw, "ort_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert hw.missing_line("tensorrt") == f"tensorrt: {TRT_MISSING}"
    assert hw.not_measurable("tensorrt") is None
    _, (note,) = hw.profile_backends(load_profile("jetson-orin-nano"))
    assert "runs the ONNX through CUDAExecutionProvider here" in note
    monkeypatch.setattr(hw, "host_facts", lambda: dict(X86))  # the provider is listed, but no GPU behind it
    _, (note,) = hw.profile_backends(load_profile("jetson-orin"))
    assert "it lists CUDAExecutionProvider but this host has no NVIDIA GPU" in note


def test_a_profile_without_a_host_proxy_is_refused(no_nvidia: None, tmp_path: Path) -> None:
    text = load_profile("jetson-orin").to_yaml().replace("host_proxy: onnxruntime", "host_proxy: null")
    path = tmp_path / "orin-no-proxy.yaml"
    path.write_text(text)
    with pytest.raises((BackendNotImplementedError, BackendUnavailableError, HardwareUnavailableError)) as err:
        hw.profile_backends(load_profile(path))
    assert "tensorrt" in str(err.value) and "\n" not in str(err.value)


def test_the_device_profiles_are_wired_to_their_backends(tmp_path: Path) -> None:
    for name in ("jetson-orin", "jetson-orin-nano"):
        profile = load_profile(name)
        assert (profile.backend, profile.host_proxy) == ("tensorrt", "onnxruntime")
        assert profile.host is not None and profile.host.accelerator == "nvidia-gpu"
    iphone = load_profile("iphone15")
    assert (iphone.backend, iphone.precisions[0], iphone.host_proxy) == ("coreml", "fp16", None)
    bad = tmp_path / "bad.yaml"
    bad.write_text(load_profile("jetson-orin").to_yaml().replace("host_proxy: onnxruntime", "host_proxy: tensorrt"))
    with pytest.raises(ProfileError, match="host_proxy"):
        load_profile(bad)


def _hardware_error() -> None:
    raise HardwareUnavailableError("needs a device this host does not have")


def test_a_child_without_its_hardware_is_skipped_not_failed() -> None:
    outcome = run_isolated(_hardware_error, timeout_s=60)
    assert (outcome.status, outcome.error) == ("skipped", "needs a device this host does not have")


# ----------------------------------------------------------------------------- run

def test_run_jetson_orin_here_says_what_is_missing_and_measures_the_proxy(
        no_nvidia: None, small_model: Path, small_data: Path, tmp_path: Path) -> None:
    opts = RunOptions(profile="jetson-orin", model=str(small_model), data=str(small_data), out_dir=str(tmp_path / "r"),
                      precisions=("fp32",), warmup=1, min_iterations=3, min_duration_s=0.0, accuracy=False)
    report, json_path, md_path = run(opts)
    trt, ort = report.results
    assert (trt.backend, trt.status, trt.verified) == ("tensorrt", "skipped", NOT_MEASURABLE)
    assert TRT_MISSING in str(trt.error) and "no NVIDIA GPU" in str(trt.error)
    assert (ort.backend, ort.status, ort.verified) == ("onnxruntime", "ok", HOST_PROXY), ort.error
    assert ort.proxy and report.status == "complete"
    assert any(n.startswith("tensorrt cannot run on this host") for n in report.notes or ())
    table = render_table(report)
    assert "verified" in table.splitlines()[0] and "host proxy" in table and "not measurable" in table
    md = md_path.read_text()
    assert "| verified on hardware |" in md and "| host proxy |" in md and "Verified on hardware: " in md
    page = json_path.with_suffix(".html").read_text()
    assert "verified on hardware" in page and '<td class="err">not measurable</td>' in page
    result = compare([("a.json", load_report(json_path))])
    rows = {r["label"]: r for r in result["rows"]}
    assert rows["a.json: tensorrt/fp32"]["rejected"][0]["code"] == "not_measurable"
    assert rows["a.json: onnxruntime/fp32@128 [proxy]"]["verified"] == HOST_PROXY
    assert "| not measurable |" in render_compare_markdown(result)


def test_an_onnx_on_torch_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigSkipped) as err:
        plan_artifact(Path("model.onnx"), "torch", "fp32", "fp32", tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "torch runs its own files (.ckpt, .pt, .pt2)" in msg and "--model M.ckpt" in msg


# ----------------------------------------------------------------------------- old reports

def _old_report() -> dict[str, Any]:
    ok = new_result("onnxruntime", "fp32", precision_used="fp32", threads=2, imgsz=[640, 640], fps=20.0,
                    iterations=100, latency_ms={"total": {"count": 100, "p50": 40.0, "p95": 45.0, "p99": 48.0}},
                    memory={"peak_rss_mb": 100.0, "model_size_mb": 12.0})
    data = new_report(results=[ok, new_result("ncnn", "fp32", status="skipped", error="no ncnn")]).to_dict()
    for row in data["results"]:
        del row["verified"]
    data["results"][0]["written_by_a_newer_tool"] = {"k": 1}
    return data


def test_reports_without_the_field_still_load_render_and_compare(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps(_old_report()))
    report = load_report(path)
    ok, skipped = report.results
    assert ok.verified is None and ok.verified_text == "not recorded" and skipped.verified is None
    assert ok.extra == {"written_by_a_newer_tool": {"k": 1}}
    assert "| - | ok |" in render_markdown(report) and "Verified on hardware" not in render_markdown(report)
    assert "verified on hardware" in render_html(report)
    result = compare([("old.json", report)])
    assert result["recommendation"] == "old.json: onnxruntime/fp32@640" and result["rows"][0]["verified"] is None
    (tmp_path / "again").mkdir()
    again, _ = write_report(report, tmp_path / "again")
    data = json.loads(again.read_text())
    assert data["results"][0]["written_by_a_newer_tool"] == {"k": 1} and data["schema_version"] == 1
    assert data["results"][0]["verified"] is None and Report.from_dict(data).results[0].verified is None


def test_compare_never_recommends_a_not_measurable_row_whatever_its_status() -> None:
    fast = new_result("coreml", "fp16", precision_used="fp16", imgsz=[640, 640], fps=200.0, iterations=100,
                      latency_ms={"total": {"count": 100, "p50": 4.0, "p95": 4.5, "p99": 5.0}}, verified=NOT_MEASURABLE)
    slow = new_result("onnxruntime", "fp16", precision_used="fp16", imgsz=[640, 640], fps=20.0, iterations=100,
                      latency_ms={"total": {"count": 100, "p50": 40.0, "p95": 45.0, "p99": 48.0}}, verified=DEVICE)
    result = compare([("r.json", new_report(results=[fast, slow]))])
    assert result["recommendation"] == "r.json: onnxruntime/fp16@640"
    assert result["rows"][0]["rejected"][0]["code"] == "not_measurable"
    assert "| not measurable |" in render_compare_markdown(result)
