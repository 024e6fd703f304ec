"""Checkpoint loading (weights_only, foreign files) and ONNX export parity through edge_sdk.Detector."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the trainer needs torch (pip install 'edgebench[train]')")

from edge_sdk.decode import DecodeConfig  # noqa: E402
from runtimes.errors import ModelLoadError  # noqa: E402
from trainer.checkpoint import CKPT_KEY, checkpoint_info, load_detector  # noqa: E402
from trainer.model import build_model  # noqa: E402

NAMES = {0: "rect", 1: "disc", 2: "star"}
IMGSZ = 128


def save_checkpoint(path: Path, seed: int = 0) -> torch.nn.Module:
    """A checkpoint in our format of a random but healthy network: batch-norm statistics measured on
    random images (so activations vary across the image) and class biases giving a few dozen boxes."""
    torch.manual_seed(seed)
    model = build_model("n", len(NAMES))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average of the calibration batch
            m.reset_running_stats()
    with torch.no_grad():
        model.train()(torch.rand(4, 3, IMGSZ, IMGSZ))
    for conv in model.head.cls:
        conv[-1].bias.data.fill_(-2.0)
    model.eval()
    state = {f"ema.module.{k}": v for k, v in model.state_dict().items()}
    torch.save({CKPT_KEY: checkpoint_info(model.config, NAMES, IMGSZ), "state_dict": state}, path)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from trainer.export import export_onnx

    root = tmp_path_factory.mktemp("export")
    ckpt = root / "model.ckpt"
    save_checkpoint(ckpt)
    return ckpt, export_onnx(ckpt, root / "model.onnx")


def test_export_carries_metadata(exported: tuple[Path, Path]) -> None:
    import onnx

    from edge_sdk.meta import ModelMeta
    from trainer.checkpoint import file_sha256

    ckpt, onnx_path = exported
    proto = onnx.load(str(onnx_path))
    meta = ModelMeta.from_props({p.key: p.value for p in proto.metadata_props})
    assert meta.names == NAMES and meta.imgsz == (IMGSZ, IMGSZ) and meta.stride == 32
    assert meta.layout == "yolov8" and meta.source_hash == file_sha256(ckpt)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]


def test_fp16_stored_export_is_half_the_size_and_keeps_extra_metadata(exported: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    import onnxruntime as ort

    from edge_sdk.meta import ModelMeta
    from trainer.export import export_onnx

    ckpt, full = exported
    half = export_onnx(ckpt, tmp_path / "half.onnx", weights_fp16=True, extra={"synth": {"seed": 3}})
    assert half.stat().st_size < 0.6 * full.stat().st_size
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (full, half)]
    meta = ModelMeta.from_props(sessions[1].get_modelmeta().custom_metadata_map)
    assert meta.extra["synth"] == {"seed": 3} and meta.extra["weights_storage"] == "fp16"
    assert meta.precision == "fp32"  # computed in float32
    x = np.random.default_rng(1).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    ref, got = (s.run(None, {"images": x})[0] for s in sessions)
    box_err, score_err = np.abs(got[:, :4] - ref[:, :4]), np.abs(got[:, 4:] - ref[:, 4:])
    # input pixels; a random, untrained net (flat DFL distributions) is far more sensitive than a trained one
    assert 0 < np.median(box_err) < 0.25 and np.percentile(box_err, 95) < 1.5
    assert score_err.max() < 2e-2


def test_onnx_raw_output_matches_pytorch(exported: tuple[Path, Path]) -> None:
    import onnxruntime as ort

    ckpt, onnx_path = exported
    x = np.random.default_rng(1).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    with torch.no_grad():
        ref = load_detector(ckpt).model(torch.from_numpy(x)).numpy()
    out = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    assert out.shape == ref.shape == (1, 4 + len(NAMES), 16 * 16 + 8 * 8 + 4 * 4)
    np.testing.assert_allclose(out[:, :4], ref[:, :4], rtol=1e-3, atol=1e-3)  # boxes (px)
    np.testing.assert_allclose(out[:, 4:], ref[:, 4:], rtol=1e-3, atol=1e-5)  # scores


def test_dynamic_batch_export_runs_any_batch(exported: tuple[Path, Path], tmp_path: Path) -> None:
    import onnxruntime as ort

    from trainer.export import export_onnx

    path = export_onnx(exported[0], tmp_path / "dyn.onnx", imgsz=64, dynamic_batch=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"images": np.zeros((3, 3, 64, 64), np.float32)})[0]
    assert out.shape == (3, 4 + len(NAMES), 8 * 8 + 4 * 4 + 2 * 2)
    with pytest.raises(ModelLoadError, match="multiple of the model stride"):
        export_onnx(exported[0], tmp_path / "bad.onnx", imgsz=100)


def test_onnx_through_detector_matches_pytorch(exported: tuple[Path, Path]) -> None:
    from edge_sdk.detector import Detector
    from trainer.predict_torch import detect

    ckpt, onnx_path = exported
    loaded = load_detector(ckpt)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (100, 150, 3), dtype=np.uint8), rng.integers(0, 255, (128, 96, 3), dtype=np.uint8)]
    cfg = DecodeConfig(conf=0.25, iou=0.7, max_det=300, multi_label=True)
    with Detector(onnx_path, conf=0.25, iou=0.7, multi_label=True) as det:
        for frame in frames:
            ours = det(frame)
            ref = detect(loaded.model, [frame], IMGSZ, cfg, loaded.names)[0]
            assert 10 < len(ref) < 100
            assert len(ours) == len(ref)
            assert (ours.class_ids == ref.class_ids).all()
            np.testing.assert_allclose(ours.xyxy, ref.xyxy, rtol=1e-3, atol=1e-3)
            np.testing.assert_allclose(ours.scores, ref.scores, rtol=1e-3, atol=1e-5)


def test_loaded_checkpoint_matches_the_saved_model(tmp_path: Path) -> None:
    model = save_checkpoint(tmp_path / "m.ckpt", seed=1)
    loaded = load_detector(tmp_path / "m.ckpt")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded.model(x))
    assert loaded.names == NAMES and loaded.imgsz == IMGSZ


def test_foreign_checkpoints_give_one_clear_error(tmp_path: Path) -> None:
    pickled = tmp_path / "other.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, pickled)  # a pickled module, as other tools save
    with pytest.raises(ModelLoadError, match="not an edgebench checkpoint"):
        load_detector(pickled)
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, plain)
    with pytest.raises(ModelLoadError, match="not an edgebench checkpoint"):
        load_detector(plain)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match="cannot read checkpoint"):
        load_detector(garbage)


def test_export_cli_rejects_a_foreign_checkpoint_in_one_line(tmp_path: Path) -> None:
    pickled = tmp_path / "other.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, pickled)
    code = ("import bench.cli as c; c.COMMANDS.setdefault('export', 'export_cmd'); c.main()")
    proc = subprocess.run([sys.executable, "-c", code, "export", "--model", str(pickled), "-o",
                           str(tmp_path / "x.onnx")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "not an edgebench checkpoint" in lines[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "x.onnx").exists()


def test_val_cli_scores_the_onnx_and_the_checkpoint_alike(exported: tuple[Path, Path], tmp_path: Path) -> None:
    from click.testing import CliRunner
    from test_trainer_fixtures import make_yolo_dataset

    from bench.commands.val_cmd import command

    data = make_yolo_dataset(tmp_path / "ds", train=1, val=3, size=(100, 128), names=NAMES)
    ckpt, onnx_path = exported
    results = []
    for model in (ckpt, onnx_path):
        res = CliRunner().invoke(command, ["--model", str(model), "--data", str(data), "--json"])
        assert res.exit_code == 0, res.output
        results.append(json.loads(res.output))
    assert results[0]["num_images"] == 3
    assert results[0]["num_detections"] == pytest.approx(results[1]["num_detections"], rel=0.03)
    assert results[0]["stats"]["AP"] == pytest.approx(results[1]["stats"]["AP"], abs=1e-3)


def test_val_rejects_a_model_with_other_classes(exported: tuple[Path, Path], tmp_path: Path) -> None:
    from test_trainer_fixtures import make_yolo_dataset

    from runtimes.errors import DatasetError
    from trainer.val import validate

    data = make_yolo_dataset(tmp_path / "ds", train=1, val=1)  # 2 classes; the model has 3
    for model in exported:
        with pytest.raises(DatasetError, match="3 classes"):
            validate(model, data)
