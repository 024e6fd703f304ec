"""Shared fixtures: a small YOLOv8-architecture ONNX model, a tiny YOLO data set, a CLI runner."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from expected_skips import (  # noqa: F401  (hooks: fail the run on a skip that is not in EXPECTED_SKIPS)
    pytest_collectreport,
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_sessionstart,
    pytest_terminal_summary,
)

from converters.parity import match_detections
from edge_sdk.detections import Detections
from edge_sdk.detector import Detector
from testkit.models import make_yolov8_onnx

# QAT in tests runs NNCF's torch-native fake-quant kernels: no C++ build on a fresh machine, no build lock
os.environ.setdefault("EDGEBENCH_QAT_NATIVE_KERNELS", "1")

NAMES = {i: f"class{i}" for i in range(4)}


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A narrow YOLOv8-architecture ONNX (random weights) at 128x128 with 4 classes."""
    path = tmp_path_factory.mktemp("model") / "small.onnx"
    return make_yolov8_onnx(path, nc=len(NAMES), imgsz=128, width=0.125, depth=0.33, names=NAMES)


@pytest.fixture(scope="session")
def qdq_model(small_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """small_model quantized by ONNX Runtime's own quantizer (static, Q/DQ, int8), as a user would."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self._items = iter([{"images": rng.random((1, 3, 128, 128), dtype=np.float32)} for _ in range(2)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._items, None)

    out = tmp_path_factory.mktemp("qdq") / "q.onnx"
    quantize_static(str(small_model), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return out


def write_yolo_set(root: Path, n: int = 4, names: dict[int, str] = NAMES, seed: int = 0,
                   model: Path | None = None) -> Path:
    """A YOLO data set with n random images, one box each; returns data.yaml. With `model`, each label is
    that model's own best detection on the image (so its AP is real, not 0), else a fixed centred box."""
    rng = np.random.default_rng(seed)
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        det = stack.enter_context(Detector(model, conf=0.001)) if model else None
        for i in range(n):
            img = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
            cv2.imwrite(str(root / "images" / "val" / f"{i}.jpg"), img)
            label = _own_detection(det, cv2.imread(str(root / "images" / "val" / f"{i}.jpg"))) if det else None
            (root / "labels" / "val" / f"{i}.txt").write_text(label or f"{i % len(names)} 0.5 0.5 0.25 0.3\n")
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump({"path": ".", "val": "images/val", "names": dict(names)}))
    return data


def _own_detection(det: Detector, image: np.ndarray) -> str | None:
    """The detector's highest-scoring detection on `image` as a YOLO label line, or None."""
    d = det(image)
    if not len(d.scores):
        return None
    best = int(np.argmax(d.scores))
    x1, y1, x2, y2 = (float(v) for v in d.xyxy[best])
    h, w = image.shape[:2]
    cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
    return f"{int(d.class_ids[best])} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}\n"


@pytest.fixture()
def small_data(tmp_path: Path, small_model: Path) -> Path:
    """data.yaml of a 4-image YOLO data set matching small_model's classes, labelled with small_model's own
    best detection per image (so a correct run of small_model scores AP > 0)."""
    return write_yolo_set(tmp_path / "data", model=small_model)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `edgebench ARGS` in a fresh interpreter; returns the completed process (text mode)."""
    env = {**os.environ, "EDGEBENCH_CACHE": str((cwd or Path.cwd()) / ".cache")}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit code 2, one line on stderr starting with 'error:', no traceback, each needle in it."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def matched_same_class(ref: Detections, got: Detections) -> tuple[np.ndarray, np.ndarray]:
    """Indices of near-identical (IoU >= 0.99) detection pairs of the same class."""
    r_idx, g_idx = [], []
    for c in np.unique(ref.class_ids):
        rc, gc = np.nonzero(ref.class_ids == c)[0], np.nonzero(got.class_ids == c)[0]
        pairs = match_detections((ref.xyxy[rc], ref.scores[rc], rc), (got.xyxy[gc], got.scores[gc], gc), iou=0.99)
        r_idx += [rc[i] for i, _, _ in pairs]
        g_idx += [gc[j] for _, j, _ in pairs]
    return np.array(r_idx, np.int64), np.array(g_idx, np.int64)


def with_our_metadata(src: Path, dst: Path, source_hash: str = "abc123") -> Path:
    """A copy of a fixture ONNX whose metadata is edgebench's own (ModelMeta) instead of Ultralytics' keys."""
    import onnx

    from edge_sdk.meta import ModelMeta

    proto = onnx.load(str(src))
    del proto.metadata_props[:]
    ours = ModelMeta(names=dict(NAMES), imgsz=(128, 128), stride=32, layout="yolov8", source_hash=source_hash)
    for key, value in ours.to_props().items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(dst))
    return dst
