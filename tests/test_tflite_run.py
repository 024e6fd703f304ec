"""`edgebench run` on a .tflite model: the row and report.md say how many ops XNNPACK took."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conftest import run_cli


@pytest.fixture(scope="module")
def tflite_model(small_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("litert_torch") is None or importlib.util.find_spec("ai_edge_litert") is None:
        pytest.skip("needs litert-torch and ai-edge-litert (edgebench[tflite,tflite-export])")
    from converters.tflite import to_tflite

    return to_tflite(small_model, tmp_path_factory.mktemp("tfl") / "small.tflite")


def test_run_reports_xnnpack_delegation(tflite_model: Path, small_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli("run", "-p", "android-arm64", "-m", str(tflite_model), "-d", str(small_data),
                   "--precisions", "fp32", "--threads", "1", "--warmup", "1", "--min-iterations", "3",
                   "--min-duration", "0", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(next(out.rglob("report.json")).read_text())
    row = report["results"][0]
    assert row["status"] == "ok" and row["backend"] == "tflite"
    d = row["delegation"]
    # the small YOLOv8 fixture has two 2x nearest upsamples, which XNNPACK leaves on TFLite's own kernels
    assert d["cpu_ops"] == {"RESIZE_NEAREST_NEIGHBOR": 2} and d["delegated_ops"] == d["total_ops"] - 2
    assert d["summary"] in next(out.rglob("report.md")).read_text()
