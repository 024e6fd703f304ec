"""Lightning training end to end on a tiny data set: CLI run, logs, close-mosaic, exact resume, DDP."""
from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the trainer needs torch (pip install 'edgebench[train]')")
pytest.importorskip("lightning", reason="the trainer needs lightning (pip install 'edgebench[train]')")

import lightning as L  # noqa: E402
from test_trainer_fixtures import make_yolo_dataset  # noqa: E402

from trainer.train import TrainConfig, fit  # noqa: E402

TINY = dict(imgsz=64, batch=4, workers=0, progress=False, accelerator="cpu", seed=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_yolo_dataset(tmp_path_factory.mktemp("ds"), train=8, val=4)


class StopAfter(L.Callback):
    """Stop (as an interrupted run would) once `epochs` epochs have finished."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


class MosaicLog(L.Callback):
    def __init__(self) -> None:
        self.seen: list[bool] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.seen.append(trainer.datamodule.train_set.mosaic_on)


def test_train_cli_writes_checkpoints_and_logs(data: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bench.commands.train_cmd import command

    out = tmp_path / "run"
    args = ["--data", str(data), "--imgsz", "64", "--epochs", "2", "--batch", "4", "--workers", "0",
            "--out", str(out), "--accelerator", "cpu", "--quiet", "--close-mosaic", "1"]
    res = CliRunner().invoke(command, args)
    assert res.exit_code == 0, res.output
    assert "val/mAP50-95:" in res.output and "trained 2 epochs" in res.output
    assert (out / "weights" / "best.ckpt").is_file() and (out / "weights" / "last.ckpt").is_file()
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    columns = set(rows[0])
    assert {"train/box", "train/cls", "train/dfl", "train/loss", "val/mAP50-95", "val/mAP50"} <= columns
    assert sum(1 for r in rows if r.get("val/mAP50-95")) == 2  # validated each epoch


def test_close_mosaic_turns_mosaic_off_for_the_last_epochs(data: Path, tmp_path: Path) -> None:
    log = MosaicLog()
    fit(TrainConfig(data=str(data), epochs=3, close_mosaic=2, out_dir=str(tmp_path), **TINY), callbacks=[log])
    assert log.seen == [True, False, False]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_resume_continues_exactly(data: Path, tmp_path: Path) -> None:
    base = dict(data=str(data), epochs=2, limit_train_batches=2, **TINY)
    full = fit(TrainConfig(out_dir=str(tmp_path / "full"), **base))
    part = fit(TrainConfig(out_dir=str(tmp_path / "part"), **base), callbacks=[StopAfter(1)])
    assert part.epochs_run == 1
    resumed = fit(TrainConfig(out_dir=str(tmp_path / "part"), resume=str(part.last), **base))
    assert resumed.epochs_run == 2
    a, b = _weights(full.last), _weights(resumed.last)
    assert a.keys() == b.keys()
    for key in a:  # live weights, EMA weights, batch-norm statistics and the EMA update count
        assert torch.equal(a[key], b[key]), key
    assert resumed.metrics["val/mAP50-95"] == pytest.approx(full.metrics["val/mAP50-95"], abs=1e-9)


DDP_SCRIPT = """
import sys
from trainer.train import TrainConfig, fit

if __name__ == "__main__":
    data, out = sys.argv[1], sys.argv[2]
    cfg = TrainConfig(data=data, out_dir=out, imgsz=64, batch=2, workers=0, epochs=1, max_steps=2,
                      limit_val_batches=1, accelerator="cpu", devices=2, strategy="ddp", progress=False)
    result = fit(cfg)
    print("WORLD", result.world_size, "MAP", result.metrics["val/mAP50-95"], "LAST", result.last)
"""


def test_ddp_on_two_cpu_processes(data: Path, tmp_path: Path) -> None:
    script = tmp_path / "ddp_fit.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    root = Path(__file__).resolve().parents[1]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), str(data), str(tmp_path / "run")], cwd=root,
                          capture_output=True, text=True, timeout=240,
                          env={**__import__("os").environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WORLD 2 MAP" in proc.stdout, proc.stdout  # two ranks, and the gathered validation ran
    assert (tmp_path / "run" / "weights" / "last.ckpt").is_file()
    print(f"DDP smoke took {time.perf_counter() - start:.1f} s")


def test_resume_from_a_foreign_checkpoint_is_one_clear_error(data: Path, tmp_path: Path) -> None:
    from runtimes.errors import ModelLoadError

    foreign = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "epoch": 3}, foreign)
    with pytest.raises(ModelLoadError, match="not an edgebench checkpoint"):
        fit(TrainConfig(data=str(data), out_dir=str(tmp_path), resume=str(foreign), **TINY))
