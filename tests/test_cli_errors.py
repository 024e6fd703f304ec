"""Bad input gets one clear line, exit code 2, no traceback and no partial report."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.conftest import assert_one_line_error, run_cli


def _run(tmp_path: Path, *args: str):
    out = tmp_path / "runs"
    proc = run_cli("run", "--out", str(out), "--min-iterations", "2", "--min-duration", "0", *args,
                   cwd=tmp_path)
    assert not out.exists() or not any(out.iterdir()), "a failed run must not leave a report"
    return proc


def _rank3_model(path: Path) -> Path:
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 64])
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["out"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every onnxruntime in use reads
    onnx.save(model, str(path))
    return path


def test_missing_model(tmp_path, small_data):
    proc = _run(tmp_path, "--model", str(tmp_path / "nope.onnx"), "--data", str(small_data))
    assert_one_line_error(proc, "model not found", "nope.onnx")


def test_truncated_model(tmp_path, small_model, small_data):
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(small_model.read_bytes()[: small_model.stat().st_size // 2])
    proc = _run(tmp_path, "--model", str(bad), "--data", str(small_data))
    assert_one_line_error(proc, "cannot load ONNX model", "truncated.onnx")


def test_corrupt_model(tmp_path, small_data):
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    proc = _run(tmp_path, "--model", str(bad), "--data", str(small_data))
    assert_one_line_error(proc, "cannot load ONNX model", "garbage.onnx")


def test_wrong_input_rank(tmp_path, small_data):
    model = _rank3_model(tmp_path / "rank3.onnx")
    proc = _run(tmp_path, "--model", str(model), "--data", str(small_data))
    assert_one_line_error(proc, "rank 4")


def test_unknown_suffix(tmp_path, small_data):
    bad = tmp_path / "model.xyz"
    bad.write_bytes(b"x")
    proc = _run(tmp_path, "--model", str(bad), "--data", str(small_data))
    assert_one_line_error(proc, ".xyz")


def test_unreadable_image(tmp_path, small_model):
    img = tmp_path / "broken.jpg"
    img.write_bytes(b"not a jpeg at all")
    proc = run_cli("predict", "--model", str(small_model), "--source", str(img), "--out", str(tmp_path / "pred"),
                   cwd=tmp_path)
    assert_one_line_error(proc, "cannot decode image", "broken.jpg")


def test_predict_goes_on_past_an_unreadable_image(tmp_path, small_model):
    folder = tmp_path / "pics"
    folder.mkdir()
    for name in ("a.jpg", "c.jpg"):
        cv2.imwrite(str(folder / name), np.full((64, 80, 3), 127, np.uint8))
    (folder / "b.jpg").write_bytes(b"not a jpeg at all")
    proc = run_cli("predict", "-m", str(small_model), "-s", str(folder), "--out", str(tmp_path / "pred"),
                   "--json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert [json.loads(ln)["source"] for ln in proc.stdout.splitlines()] == ["a.jpg", "c.jpg"]
    err = proc.stderr.strip().splitlines()
    assert err[0].startswith("b.jpg: skipped: cannot decode image"), err
    assert err[-1] == "error: 1 of 3 images could not be read: b.jpg", err
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["a.jpg", "c.jpg"]


def test_predict_positional_form_still_works_with_a_notice(tmp_path, small_model):
    img = tmp_path / "ok.jpg"
    cv2.imwrite(str(img), np.full((64, 80, 3), 127, np.uint8))
    proc = run_cli("predict", str(small_model), str(img), "--out", "", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "note: predict MODEL SOURCE is deprecated; use predict --model MODEL --source SOURCE"]
    assert proc.stdout.startswith("ok.jpg: ")


def _corrupt_sidecar_artifact(tmp_path: Path, suffix: str) -> Path:
    """An artifact whose sidecar JSON is invalid (the artifact itself need not be read first)."""
    artifact = tmp_path / f"model{suffix}"
    artifact.write_bytes(b"7767517\n")
    artifact.with_name(artifact.name + ".json").write_text('{"imgsz": [128, 128],')
    return artifact


@pytest.mark.parametrize("suffix", [".param", ".tflite"])
def test_corrupt_sidecar_predict(tmp_path, suffix):
    pytest.importorskip("ncnn" if suffix == ".param" else "ai_edge_litert")
    model = _corrupt_sidecar_artifact(tmp_path, suffix)
    img = tmp_path / "ok.jpg"
    cv2.imwrite(str(img), np.full((64, 80, 3), 127, np.uint8))
    proc = run_cli("predict", "-m", str(model), "-s", str(img), "--out", str(tmp_path / "pred"), cwd=tmp_path)
    assert_one_line_error(proc, "sidecar", f"model{suffix}.json")
    assert not (tmp_path / "pred").exists()


@pytest.mark.parametrize("suffix", [".param", ".tflite"])
def test_corrupt_sidecar_run(tmp_path, small_data, suffix):
    pytest.importorskip("ncnn" if suffix == ".param" else "ai_edge_litert")
    model = _corrupt_sidecar_artifact(tmp_path, suffix)
    proc = _run(tmp_path, "--model", str(model), "--data", str(small_data))
    assert_one_line_error(proc, "sidecar", f"model{suffix}.json")


def test_export_replaces_a_stale_corrupt_sidecar(tmp_path, small_model):
    pytest.importorskip("openvino")
    out = tmp_path / "m.xml"
    (tmp_path / "m.xml.json").write_text("{not json")
    proc = run_cli("export", "-m", str(small_model), "--to", "openvino", "-o", str(out), "--threads", "1",
                   "--parity-images", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "parity" in json.loads((tmp_path / "m.xml.json").read_text())


def test_missing_image(tmp_path, small_model):
    proc = run_cli("predict", "--model", str(small_model), "--source", str(tmp_path / "none.jpg"), cwd=tmp_path)
    assert_one_line_error(proc, "not found", "none.jpg")


def test_malformed_labels_strict(tmp_path, small_model, small_data):
    label = small_data.parent / "labels" / "val" / "1.txt"
    label.write_text("0 0.5 0.5 0.2 0.2\n2 0.5 abc 0.1 0.1\n")
    proc = _run(tmp_path, "--model", str(small_model), "--data", str(small_data), "--strict-labels")
    assert_one_line_error(proc, "1.txt:2")


def test_missing_data(tmp_path, small_model):
    proc = _run(tmp_path, "--model", str(small_model), "--data", str(tmp_path / "nodata.yaml"))
    assert_one_line_error(proc, "nodata.yaml")


def test_unknown_profile(tmp_path, small_model, small_data):
    proc = _run(tmp_path, "--profile", "jetson-orin-xl", "--model", str(small_model), "--data", str(small_data))
    assert_one_line_error(proc, "jetson-orin-xl", "x86-cpu")


def test_unknown_profile_key(tmp_path, small_model, small_data):
    prof = tmp_path / "mine.yaml"
    prof.write_text("name: mine\ndevice: cpu\nbackend: onnxruntime\nprecisions: [fp32]\n"
                    "input_size: 128\nbench:\n  warmpu: 3\n")
    proc = _run(tmp_path, "--profile", str(prof), "--model", str(small_model), "--data", str(small_data))
    assert_one_line_error(proc, "mine.yaml", "warmpu", "warmup")


def test_missing_backend(tmp_path, small_model, small_data):
    """A device profile whose backend cannot run here and that names no host proxy: one line, exit 2."""
    from edge_sdk.profiles import load_profile

    profile = tmp_path / "orin-no-proxy.yaml"
    profile.write_text(load_profile("jetson-orin").to_yaml().replace("host_proxy: onnxruntime", "host_proxy: null"))
    proc = _run(tmp_path, "--profile", str(profile), "--model", str(small_model), "--data", str(small_data))
    assert_one_line_error(proc, "jetson-orin", "x86-cpu")


@pytest.mark.parametrize("args, needle", [
    (("run", "--duration", "-1"), "--duration"),
    (("run", "--threads", "0"), "--threads"),
    (("run", "--threads", "-2"), "--threads"),
    (("run", "--max-eval-images", "-3"), "--max-eval-images"),
    (("run", "--min-iterations", "-5"), "--min-iterations"),
    (("run", "--no-such-option"), "No such option"),
    (("compare", "--max-p99-ms", "-5", "x.json"), "--max-p99-ms"),
])
def test_click_usage_errors_are_one_line_too(args: tuple[str, ...], needle: str, tmp_path) -> None:
    assert_one_line_error(run_cli(*args, cwd=tmp_path), needle)
