"""`edgebench val` shows progress over its mAP pass: trainer.val calls progress(done, total) as images
are detected (per image for artifacts, per batch for checkpoints); the CLI draws a click progress bar
on stderr only when stderr is a terminal."""
from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import write_yolo_set


class TtyStream(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_validate_reports_each_artifact_image(small_model: Path, small_data: Path) -> None:
    from trainer.val import validate

    calls: list[tuple[int, int]] = []
    result = validate(small_model, small_data, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert result.to_dict()["num_images"] == 4
    calls.clear()
    validate(small_model, small_data, limit=2, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]  # the total is what is scored, not the split's size


def test_checkpoint_detections_report_each_batch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from edge_sdk.datasets import load_dataset
    from trainer.predict_torch import checkpoint_detections
    from trainer.val import map_config

    class Empty(torch.nn.Module):  # type: ignore[misc]
        """A 'model' with no boxes above any threshold: yolov8 output [B, 4 + nc, N] of zeros."""

        def forward(self, x: Any) -> Any:
            return torch.zeros(x.shape[0], 4 + 4, 10)

    ds = load_dataset(write_yolo_set(tmp_path / "data", n=5), "val")
    loaded = SimpleNamespace(model=Empty(), names={i: str(i) for i in range(4)}, imgsz=64)
    calls: list[tuple[int, int]] = []
    dets = checkpoint_detections(loaded, ds.samples, ds.category_ids, map_config(), batch=2,  # type: ignore[arg-type]
                                 progress=lambda done, total: calls.append((done, total)))
    assert dets == [] and calls == [(2, 5), (4, 5), (5, 5)]


def test_progress_bar_draws_only_on_a_terminal() -> None:
    from bench.commands.val_cmd import progress_bar

    tty = TtyStream()
    with progress_bar(tty) as show:
        assert show is not None
        show(1, 3)
        show(3, 3)
    out = tty.getvalue()
    assert "detecting" in out and "3/3" in out and out.endswith("\n"), out
    pipe = io.StringIO()
    with progress_bar(pipe) as none:
        assert none is None
    assert pipe.getvalue() == ""


def test_val_cli_passes_a_progress_bar_on_a_tty(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import trainer.val
    from bench.cli import main

    seen: list[Any] = []

    def fake_validate(*args: Any, progress: Any = None, **kwargs: Any) -> Any:
        seen.append(progress)
        if progress is not None:
            progress(1, 2)
            progress(2, 2)
        return SimpleNamespace(to_dict=lambda: {"num_images": 2})

    monkeypatch.setattr(trainer.val, "validate", fake_validate)
    monkeypatch.setattr("bench.commands.val_cmd.check_inputs", lambda *args: ([], None))  # m.onnx does not exist
    main(["val", "-m", "m.onnx", "-d", "d.yaml", "--json"])  # pytest's stderr is not a terminal
    assert seen == [None] and capsys.readouterr().err == ""
    tty = TtyStream()
    monkeypatch.setattr("sys.stderr", tty)
    main(["val", "-m", "m.onnx", "-d", "d.yaml", "--json"])
    assert callable(seen[-1]) and "2/2" in tty.getvalue(), tty.getvalue()
    assert json.loads(capsys.readouterr().out) == {"num_images": 2}  # stdout stays clean JSON
