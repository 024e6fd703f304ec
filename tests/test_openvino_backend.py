"""OpenVINO backend and ONNX -> IR converter: outputs, real precision, metadata, threads, CLI export."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

ov = pytest.importorskip("openvino", reason="the OpenVINO backend needs openvino (pip install 'edgebench[openvino]')")

from conftest import NAMES, assert_one_line_error, matched_same_class, run_cli, with_our_metadata  # noqa: E402

from converters.openvino import to_openvino  # noqa: E402
from converters.parity import parity_inputs  # noqa: E402
from edge_sdk.detector import Detector  # noqa: E402
from edge_sdk.meta import ModelMeta  # noqa: E402
from edge_sdk.synth import CLASS_NAMES, render_image  # noqa: E402
from runtimes import availability, backend_for_path, load  # noqa: E402
from runtimes.errors import ModelLoadError  # noqa: E402

IMGSZ = (128, 128)


@pytest.fixture(scope="module")
def ir_model(small_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return to_openvino(small_model, tmp_path_factory.mktemp("ir") / "small.xml")


@pytest.fixture(scope="module")
def inputs() -> list[np.ndarray]:
    return parity_inputs(IMGSZ, n=2)


def outputs(path: Path, xs: list[np.ndarray], backend: str, **options) -> np.ndarray:
    with load(path, backend, threads=1, **options) as rt:
        return np.concatenate([rt.infer(x)[0] for x in xs])


def cpu_has_bf16() -> bool:
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_registry_maps_xml_to_openvino() -> None:
    assert backend_for_path("m.xml") == "openvino"
    assert availability("openvino") == (True, "ok")


@pytest.mark.parametrize("which", ["onnx", "ir"])
def test_fp32_outputs_match_onnxruntime(which: str, small_model: Path, ir_model: Path,
                                        inputs: list[np.ndarray]) -> None:
    ref = outputs(small_model, inputs, "onnxruntime")
    got = outputs(small_model if which == "onnx" else ir_model, inputs, "openvino", precision="fp32")
    assert got.shape == ref.shape == (2, 4 + len(NAMES), 16 * 16 + 8 * 8 + 4 * 4)
    np.testing.assert_allclose(got[:, :4], ref[:, :4], atol=0.05)  # boxes, input pixels
    np.testing.assert_allclose(got[:, 4:], ref[:, 4:], atol=1e-4)  # scores


def test_precision_used_is_what_the_compiled_model_runs(ir_model: Path, inputs: list[np.ndarray]) -> None:
    with load(ir_model, threads=1, precision="fp32") as rt:
        assert rt.precision_used == "fp32"
        assert rt.compiled_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    if not cpu_has_bf16():
        pytest.skip("this CPU has no bf16 support in OpenVINO (OPTIMIZATION_CAPABILITIES lacks BF16)")
    with load(ir_model, threads=1, precision="bf16") as rt:
        assert rt.precision_used == "bf16"
    fp32 = outputs(ir_model, inputs, "openvino", precision="fp32")
    bf16 = outputs(ir_model, inputs, "openvino", precision="bf16")
    assert np.abs(bf16[:, 4:] - fp32[:, 4:]).max() > 1e-3  # really computed in bf16, not just labelled


def test_metadata_survives_conversion(small_model: Path, tmp_path: Path) -> None:
    with_our_metadata(small_model, tmp_path / "ours.onnx", source_hash="abc123")
    for src, layout in ((small_model, None), (tmp_path / "ours.onnx", "yolov8")):  # Ultralytics keys / ours
        xml = to_openvino(src, tmp_path / f"{src.stem}.xml", precision="fp16")
        with load(xml, threads=1) as rt:
            meta = ModelMeta.from_props(rt.metadata())
        assert meta.names == NAMES and meta.imgsz == IMGSZ and meta.stride == 32 and meta.layout == layout
        assert meta.precision == "fp16" and meta.extra["weights_storage"] == "fp16"
        assert meta.extra["converted_from"] == src.name
    assert meta.source_hash == "abc123"
    side = json.loads((tmp_path / "ours.xml.json").read_text())
    assert side["weights_storage"] == "fp16" and side["source"] == "ours.onnx"


def test_fp16_weights_halve_the_bin(small_model: Path, ir_model: Path, tmp_path: Path) -> None:
    half = to_openvino(small_model, tmp_path / "half.xml", precision="fp16")
    assert half.with_suffix(".bin").stat().st_size < 0.6 * ir_model.with_suffix(".bin").stat().st_size


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_option_reaches_the_compiled_model(ir_model: Path, threads: int) -> None:
    with load(ir_model, threads=threads) as rt:
        assert rt.compiled_property("INFERENCE_NUM_THREADS") == threads
        assert rt.compiled_property("NUM_STREAMS") == 1
        assert rt.engine_versions()["openvino"].startswith("20")


def test_detector_on_ir_matches_detector_on_onnx(small_model: Path, ir_model: Path) -> None:
    frames = [render_image(1, "test", i, 200, CLASS_NAMES, nonsquare=1.0).image for i in range(2)]
    with Detector(small_model, threads=1) as ref_det, Detector(ir_model, threads=1) as ov_det:
        assert ov_det.names == ref_det.names and ov_det.input_size == ref_det.input_size
        for frame in frames:
            ref, got = ref_det(frame), ov_det(frame)
            # a random-weight net has many near-duplicate boxes: an NMS decision may flip at fp32 noise
            assert len(ref) > 0 and abs(len(got) - len(ref)) <= max(1, 0.03 * len(ref))
            r, g = matched_same_class(ref, got)
            close = (np.abs(got.xyxy[g] - ref.xyxy[r]).max(1) < 0.05) & (np.abs(got.scores[g] - ref.scores[r]) < 1e-4)
            assert close.sum() >= 0.95 * len(ref)


def test_ir_without_its_bin_and_corrupt_onnx_give_typed_errors(ir_model: Path, tmp_path: Path) -> None:
    lonely = tmp_path / "lonely.xml"
    shutil.copy(ir_model, lonely)
    with pytest.raises(ModelLoadError, match="lonely.bin"):
        load(lonely)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    out = tmp_path / "out" / "bad.xml"
    with pytest.raises(ModelLoadError, match="bad.onnx"):
        to_openvino(bad, out)
    assert not out.parent.exists() or not any(out.parent.iterdir())  # nothing half-written


def test_export_cli_writes_ir_bin_and_sidecar_with_parity(small_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.xml"
    proc = run_cli("export", "--model", str(small_model), "--to", "openvino", "-o", str(out),
                   "--threads", "1", "--parity-images", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "parity PASS" in proc.stdout and out.is_file() and out.with_suffix(".bin").is_file()
    parity = json.loads((tmp_path / "x.xml.json").read_text())["parity"]
    assert parity["passed"] and parity["precision_used"] == "fp32" and parity["ref_detections"] > 0
    assert parity["box_cosine"] > 0.9999 and parity["score_max_abs"] < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".cache")) == \
        ["x.bin", "x.xml", "x.xml.json"]


def test_export_cli_missing_input_is_one_line_error(tmp_path: Path) -> None:
    proc = run_cli("export", "--model", str(tmp_path / "missing.onnx"), "--to", "openvino",
                   "-o", str(tmp_path / "y.xml"), cwd=tmp_path)
    assert_one_line_error(proc, "missing.onnx")
    assert not (tmp_path / "y.xml").exists()
