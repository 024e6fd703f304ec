"""`edgebench sweep --model CKPT --imgsz a,b`: the checkpoint is exported once per size, each size measured."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch", reason="exporting a checkpoint needs torch (edgebench[train])")

from test_trainer_export import save_checkpoint  # noqa: E402

from bench.sweep.sweep import SweepOptions, sweep  # noqa: E402


def test_a_checkpoint_is_measured_at_every_size(tmp_path: Path, small_data: Path) -> None:
    ckpt = tmp_path / "m.ckpt"
    save_checkpoint(ckpt)
    opts = SweepOptions(model=str(ckpt), data=str(small_data), out_dir=str(tmp_path / "sweep"), imgsz=(64, 96),
                        precisions=("fp32",), warmup=1, min_iterations=3, min_duration_s=0.0, threads=1,
                        accuracy=False, timeout_s=120.0)
    report, _, md_path = sweep(opts)
    rows = report.results
    assert [r.status for r in rows] == ["ok", "ok"], [r.error for r in rows]
    assert [r.imgsz for r in rows] == [[64, 64], [96, 96]]
    assert [Path(r.artifact).name for r in rows] == ["m-64.onnx", "m-96.onnx"]
    assert "96" in md_path.read_text()


def test_an_onnx_serves_only_its_own_size(tmp_path: Path, small_model: Path, small_data: Path) -> None:
    opts = SweepOptions(model=str(small_model), data=str(small_data), out_dir=str(tmp_path / "sweep"),
                        imgsz=(128, 160), precisions=("fp32",), warmup=1, min_iterations=3, min_duration_s=0.0,
                        threads=1, accuracy=False)
    ok, other = sweep(opts)[0].results
    assert ok.status == "ok" and other.status == "skipped"
    assert "sweep a training checkpoint (.ckpt) to measure 160" in (other.error or "")


def test_a_missing_checkpoint_is_a_load_error(tmp_path: Path, small_data: Path) -> None:
    from runtimes.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="model not found"):
        sweep(SweepOptions(model=str(tmp_path / "nope.ckpt"), data=str(small_data), out_dir=str(tmp_path / "s")))
