"""`edgebench export --rewrite`: rewrites applied before conversion, listed in the sidecar and printed,
parity still against the original ONNX (so a function-changing rewrite fails it)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.tasks.export import export_model
from converters.rewrites import REWRITES
from runtimes.base import sidecar_path
from runtimes.errors import EdgebenchError, RewriteError
from tests.conftest import assert_one_line_error, run_cli

pytest.importorskip("openvino", reason="the export target here is OpenVINO (pip install 'edgebench[openvino]')")


def test_exact_rewrites_are_recorded_and_keep_parity(small_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "ir" / "model.xml"
    result = export_model(small_model, "openvino", out, rewrites="upsample_d2s,dfl_4d", parity_images=2)
    assert [(r.name, r.exact) for r in result.rewrites] == [("upsample_d2s", True), ("dfl_4d", True)]
    assert result.rewrites[0].sites == 2 and result.rewrites[1].sites == 0
    side = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    assert side["rewrites"] == [r.to_dict() for r in result.rewrites]
    assert side["source"] == small_model.name
    assert result.parity is not None and result.parity.passed, result.parity.summary()
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.bin", "model.xml", "model.xml.json"]


def test_cli_prints_each_rewrite_and_a_function_change_fails_parity(small_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "hs.xml"
    proc = run_cli("export", "--model", str(small_model), "--to", "openvino", "-o", str(out),
                   "--rewrite", "silu_hardswish", "--parity-images", "2")
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert lines[0].startswith("rewrite silu_hardswish: ") and "function-changing" in lines[0]
    side = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    assert side["rewrites"][0]["exact"] is False and side["rewrites"][0]["sites"] > 0
    assert side["parity"]["passed"] is False


def test_unknown_rewrite_is_one_line_error_before_any_work(small_model: Path, tmp_path: Path) -> None:
    proc = run_cli("export", "--model", str(small_model), "--to", "openvino", "-o", str(tmp_path / "m.xml"),
                   "--rewrite", "dfl_4d,bogus")
    assert_one_line_error(proc, "bogus", *REWRITES)
    assert not list(tmp_path.iterdir())
    with pytest.raises(RewriteError):
        export_model(small_model, "openvino", tmp_path / "m.xml", rewrites=["nope"])


def test_rewrites_are_refused_for_the_onnx_target(tmp_path: Path) -> None:
    ckpt = tmp_path / "m.ckpt"
    ckpt.write_bytes(b"")
    with pytest.raises(EdgebenchError, match="rewrites"):
        export_model(ckpt, "onnx", tmp_path / "m.onnx", rewrites="dfl_4d")


@pytest.mark.slow
def test_tflite_export_with_upsample_d2s_is_one_xnnpack_partition(small_model: Path, tmp_path: Path) -> None:
    """The reason for upsample_d2s: XNNPACK leaves RESIZE_NEAREST_NEIGHBOR on the CPU, DepthToSpace not."""
    for module in ("ai_edge_litert", "litert_torch"):
        pytest.importorskip(module, reason="the TFLite export needs ai-edge-litert and litert-torch")
    from runtimes import load

    result = export_model(small_model, "tflite", tmp_path / "m.tflite", rewrites="upsample_d2s", parity_images=1)
    with load(result.path, threads=1) as rt:
        delegation = rt.delegation()
    assert delegation.fully_delegated and delegation.partitions == 1, delegation.summary()
    assert result.parity is not None and result.parity.passed, result.parity.summary()
