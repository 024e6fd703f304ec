"""`run` and `sweep` write the same layout: `--out DIR` is the folder itself (refused when it already holds
a report.json, unless --overwrite); without --out, a new runs/<YYYYmmdd-HHMMSS>-<profile>/."""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from bench.report.writer import load_report
from bench.sweep.outdir import out_folder, profile_name, stamped
from bench.sweep.run import RunOptions, run
from bench.sweep.sweep import SweepOptions, sweep
from runtimes.errors import InputError

REPORT_FILES = {"report.json", "report.md", "report.html"}


def _fast(model: Path, data: Path) -> dict[str, Any]:
    return {"model": str(model), "data": str(data), "precisions": ("fp32",), "warmup": 1, "min_iterations": 2,
            "min_duration_s": 0.0, "threads": 1, "accuracy": False, "duration_s": 0}


def test_out_is_the_folder_itself_on_run_and_sweep(tmp_path: Path, small_model: Path, small_data: Path) -> None:
    fast = _fast(small_model, small_data)
    _, run_json, _ = run(RunOptions(out_dir=str(tmp_path / "a"), **fast))
    _, sweep_json, _ = sweep(SweepOptions(out_dir=str(tmp_path / "b"), **fast))
    assert (run_json, sweep_json) == (tmp_path / "a" / "report.json", tmp_path / "b" / "report.json")
    for folder in ("a", "b"):
        assert REPORT_FILES <= {p.name for p in (tmp_path / folder).iterdir()}


def test_without_out_both_write_a_new_stamped_folder(tmp_path: Path, small_model: Path, small_data: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fast = _fast(small_model, small_data)
    _, run_json, _ = run(RunOptions(**fast))
    _, sweep_json, _ = sweep(SweepOptions(**fast))
    name = profile_name(None)
    for path in (run_json, sweep_json):
        assert path.parent.parent == Path("runs") and path.name == "report.json"
        assert re.fullmatch(rf"\d{{8}}-\d{{6}}-{re.escape(name)}(-\d+)?", path.parent.name), path
    assert run_json.parent != sweep_json.parent  # the same second gets a "-2" folder, never a shared one
    assert load_report(sweep_json).sweep is not None and load_report(run_json).sweep is None


def test_a_folder_holding_a_report_is_refused_unless_overwrite(tmp_path: Path, small_model: Path,
                                                               small_data: Path) -> None:
    fast, out = _fast(small_model, small_data), tmp_path / "r"
    run(RunOptions(out_dir=str(out), **fast))
    before = (out / "report.json").read_bytes()
    with pytest.raises(InputError, match="already holds a report .*--overwrite"):
        run(RunOptions(out_dir=str(out), **fast))
    with pytest.raises(InputError, match="already holds a report"):
        sweep(SweepOptions(out_dir=str(out), **fast))
    assert (out / "report.json").read_bytes() == before
    _, json_path, _ = sweep(SweepOptions(out_dir=str(out), overwrite=True, **fast))
    assert json_path == out / "report.json" and load_report(json_path).sweep is not None  # replaced


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_cli_refusal_is_one_line_before_anything_loads(command: str, tmp_path: Path,
                                                       capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    out.mkdir()
    (out / "report.json").write_text("{}")
    for target, needle in ((out, f"{out} already holds a report (report.json); pass --overwrite"),
                           (out / "report.json", "is a file, not a folder")):
        with pytest.raises(SystemExit) as exc:
            main([command, "--model", str(tmp_path / "missing.onnx"), "--out", str(target)])
        err = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
        assert exc.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert [p.name for p in out.iterdir()] == ["report.json"] and (out / "report.json").read_text() == "{}"


@pytest.mark.parametrize("command, module, fn", [("run", "run_cmd", "run"), ("sweep", "sweep_cmd", "sweep")])
def test_cli_passes_out_and_overwrite(command: str, module: str, fn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    seen: list[Any] = []

    class Stop(InputError):
        pass

    def fake(opts: Any, **_: Any) -> Any:
        seen.append(opts)
        raise Stop("stop")

    monkeypatch.setattr(importlib.import_module(f"bench.commands.{module}"), fn, fake)
    for argv in ([command], [command, "--out", "d", "--overwrite"]):
        with pytest.raises(SystemExit):
            main(argv)
    assert [(o.out_dir, o.overwrite) for o in seen] == [(None, False), ("d", True)]


def test_out_folder_rules(tmp_path: Path) -> None:
    assert out_folder(str(tmp_path / "new"), "x86-cpu") == tmp_path / "new"  # nothing created
    assert not (tmp_path / "new").exists()
    now = datetime(2026, 1, 2, 3, 4, 5)
    first = stamped(tmp_path, "rpi5", now)
    assert first == tmp_path / "20260102-030405-rpi5"
    for expected in ("20260102-030405-rpi5-2", "20260102-030405-rpi5-3"):
        first.mkdir(exist_ok=True)
        (first / "report.json").write_text("{}")
        first = stamped(tmp_path, "rpi5", now)
        assert first.name == expected
    assert out_folder(str(tmp_path / "20260102-030405-rpi5"), None, overwrite=True).name == "20260102-030405-rpi5"
