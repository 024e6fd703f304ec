"""`edgebench run` under a profile whose backend is not the model's format: ONNX is converted in the
child (parity into the row); another engine's artifact runs on its own engine, with a note."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

from bench.sweep.run import run_backend
from edge_sdk.profiles import load_profile
from runtimes import availability

FAST = ("--threads", "1", "--warmup", "1", "--min-iterations", "3", "--min-duration", "0", "--duration", "0")


def test_run_backend_follows_the_profile_unless_the_model_is_another_engines() -> None:
    rpi5, x86 = load_profile("rpi5"), load_profile("x86-cpu")
    assert run_backend(Path("m.onnx"), rpi5) == ("ncnn", None)
    assert run_backend(Path("m.param"), rpi5) == ("ncnn", None)
    backend, note = run_backend(Path("m.xml"), x86)
    assert backend == "openvino" and "x86-cpu measures onnxruntime" in note


def test_onnx_under_the_rpi5_profile_is_converted_to_ncnn_with_parity(small_model: Path, small_data: Path,
                                                                      tmp_path: Path) -> None:
    from converters.ncnn import pnnx_binary

    if not availability("ncnn")[0] or pnnx_binary() is None:
        pytest.skip("needs ncnn and pnnx (edgebench[ncnn,ncnn-export])")
    out = tmp_path / "out"
    proc = run_cli("run", "-p", "rpi5", "-m", str(small_model), "-d", str(small_data), "--precisions", "fp32,int8",
                   *FAST, "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(next(out.rglob("report.json")).read_text())
    fp32, int8 = report["results"]
    assert fp32["backend"] == "ncnn" and fp32["status"] == "ok", fp32.get("error")
    assert Path(fp32["artifact"]).suffix == ".param" and Path(fp32["artifact"]).is_file()
    assert fp32["parity"]["passed"] is True
    assert "ncnn fp32/fp32: parity PASS vs the source model" in next(out.rglob("report.md")).read_text()
    assert int8["status"] == "skipped" and "calibration" in int8["error"]


def test_an_openvino_ir_runs_on_openvino_under_the_x86_profile(small_model: Path, small_data: Path,
                                                              tmp_path: Path) -> None:
    if not availability("openvino")[0]:
        pytest.skip("needs openvino (edgebench[openvino])")
    from converters.openvino import to_openvino

    xml = to_openvino(small_model, tmp_path / "ir" / "small.xml")
    out = tmp_path / "out"
    proc = run_cli("run", "-p", "x86-cpu", "-m", str(xml), "-d", str(small_data), "--precisions", "fp32",
                   *FAST, "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(next(out.rglob("report.json")).read_text())
    assert report["results"][0]["backend"] == "openvino" and report["results"][0]["status"] == "ok"
    assert "this run measures openvino" in next(out.rglob("report.md")).read_text()


def test_openvino_float_precisions_are_hints_not_conversions() -> None:
    from bench.sweep.artifacts import ConfigSkipped, resolve_artifact

    ir = Path("m.xml")
    assert resolve_artifact(ir, "openvino", "fp32", "bf16") == ir  # exported with a bf16 hint, runs at fp32
    assert resolve_artifact(ir, "openvino", "bf16", "fp16") == ir
    with pytest.raises(ConfigSkipped, match="int8 needs an ONNX model to quantize; the model is a fp32 .xml file"):
        resolve_artifact(ir, "openvino", "int8", "fp32")
    # ncnn's float precisions are load-time switches too: the engine then says whether they take effect
    assert resolve_artifact(Path("m.param"), "ncnn", "fp16", "fp32") == Path("m.param")
    with pytest.raises(ConfigSkipped, match="fp16 conversion"):
        resolve_artifact(Path("m.onnx"), "onnxruntime", "fp16", "fp32")
