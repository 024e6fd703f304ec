"""An Ultralytics-style YOLOv8 ONNX (layout [1, 4+nc, N], only Ultralytics' metadata keys) goes through
the same `edgebench export` and `edgebench predict` commands on every backend.

The model is the numpy YOLOv8 fixture (backbone, PAN neck with nearest upsampling, DFL head) built
in the test: nothing is downloaded.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from converters.parity import parity_inputs
from edge_sdk.meta import ModelMeta
from runtimes import availability, load
from testkit.models import make_yolov8_onnx

NAMES = {0: "car", 1: "person", 2: "dog"}
IMGSZ = 160
#: target -> (artifact file name, python module the conversion needs (None: always there))
TARGETS = {
    "openvino": ("model.xml", "openvino"),
    "ncnn": ("model.param", "pnnx"),
    "tflite": ("model.tflite", "litert_torch"),
}


@pytest.fixture(scope="module")
def ultralytics_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ultra") / "yolov8_ultra.onnx"
    return make_yolov8_onnx(path, nc=len(NAMES), imgsz=IMGSZ, width=0.125, depth=0.33, names=NAMES)


def _require(target: str) -> None:
    ok, why = availability(target)
    if not ok:
        pytest.skip(f"{target} unavailable: {why}")
    needed = TARGETS[target][1]
    if importlib.util.find_spec(needed) is None:
        pytest.skip(f"converting to {target} needs the '{needed}' package")


def test_the_fixture_carries_only_ultralytics_metadata(ultralytics_onnx: Path) -> None:
    import onnx

    props = {p.key for p in onnx.load(str(ultralytics_onnx)).metadata_props}
    assert props == {"names", "imgsz", "stride", "task", "batch"}
    with load(ultralytics_onnx, "onnxruntime") as rt:
        meta = ModelMeta.from_props(rt.metadata())
        assert rt.outputs[0].shape == (1, 4 + len(NAMES), sum((IMGSZ // s) ** 2 for s in (8, 16, 32)))
    assert meta.names == NAMES and meta.layout is None  # Ultralytics does not say; the Detector infers it


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_export_then_predict_on_every_backend(target: str, ultralytics_onnx: Path, tmp_path: Path) -> None:
    _require(target)
    artifact = tmp_path / TARGETS[target][0]
    proc = run_cli("export", "--model", str(ultralytics_onnx), "--to", target, "-o", str(artifact),
                   "--threads", "1", "--parity-images", "2", cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "PASS" in proc.stdout
    side = json.loads(artifact.with_name(artifact.name + ".json").read_text())
    assert side["parity"]["passed"] is True

    xs = parity_inputs((IMGSZ, IMGSZ), n=2)
    with load(ultralytics_onnx, "onnxruntime", threads=1) as ref, load(artifact, target, threads=1) as rt:
        assert ModelMeta.from_props(rt.metadata()).names == NAMES
        for x in xs:
            want, got = ref.infer(x)[0], rt.infer(x)[0]
            assert got.shape == want.shape
            box_err = np.abs(got[:, :4] - want[:, :4]).max()
            score_err = np.abs(got[:, 4:] - want[:, 4:]).max()
            assert box_err < 0.05 and score_err < 1e-3, (box_err, score_err)

    image = tmp_path / "frame.png"
    _write_frame(image)
    out = tmp_path / "pred"
    proc = run_cli("predict", "-m", str(artifact), "-s", str(image), "--out", str(out), "--json", cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)


def _write_frame(path: Path) -> None:
    import cv2

    from edge_sdk.synth import CLASS_NAMES, render_image

    cv2.imwrite(str(path), render_image(3, "test", 0, 200, CLASS_NAMES, nonsquare=1.0).image)
