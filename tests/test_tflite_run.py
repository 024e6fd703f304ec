"""`edgebench run --profile android-arm64 --rewrite upsample_d2s` on an ONNX model: rewritten and converted
to TFLite in a child of its own, measured in another; the row and report.md say how many ops XNNPACK took."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import run_cli


def test_run_converts_to_tflite_and_reports_xnnpack_delegation(small_model: Path, small_data: Path,
                                                               tmp_path: Path) -> None:
    if importlib.util.find_spec("litert_torch") is None or importlib.util.find_spec("ai_edge_litert") is None:
        pytest.skip("needs litert-torch and ai-edge-litert (edgebench[tflite,tflite-export])")
    out = tmp_path / "out"
    proc = run_cli("run", "-p", "android-arm64", "-m", str(small_model), "-d", str(small_data),
                   "--precisions", "fp32", "--threads", "1", "--warmup", "1", "--min-iterations", "3",
                   "--min-duration", "0", "--duration", "0", "--rewrite", "upsample_d2s", "--out", str(out),
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(next(out.rglob("report.json")).read_text())
    row = report["results"][0]
    assert row["status"] == "ok" and row["backend"] == "tflite", row.get("error")
    assert row["parity"]["passed"] is True and row["artifact"].endswith(".tflite")
    # converting loads torch + jax (~800 MiB); it ran in another child, so it is not in this figure
    assert row["memory"]["peak_rss_mb"] < 400
    d = row["delegation"]
    # without the rewrite the fixture's two 2x nearest upsamples stay on TFLite's own kernels
    # (tests/test_tflite_backend.py); rewritten as concat + DepthToSpace, XNNPACK takes the whole graph
    assert d["cpu_ops"] == {} and d["delegated_ops"] == d["total_ops"] and d["partitions"] == 1
    assert d["summary"] in next(out.rglob("report.md")).read_text()
