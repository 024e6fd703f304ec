"""More threads than this host's usable cores: a ThreadsWarning at the user's own line in the Python API
(edge_sdk.Detector, RunOptions / SweepOptions through run, sweep, prepare), one `warning:` line in the CLI."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import edge_sdk.host
from bench.options import validate_run_options
from bench.sweep.run import RunOptions, prepare
from bench.sweep.sweep import SweepOptions, sweep
from edge_sdk import Detector
from edge_sdk.host import ThreadsWarning, threads_excess
from runtimes.errors import ProfileError
from tests.conftest import run_cli


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """This host lets us use two cores."""
    monkeypatch.setattr(edge_sdk.host, "usable_cores", lambda logical=None: 2)


def test_excess_is_only_above_the_usable_cores(two_cores: None) -> None:
    assert threads_excess(None) is None and threads_excess(1) is None and threads_excess(2) is None
    assert (threads_excess(3) or "").startswith("3 exceeds the 2 cores this host lets us use")


def test_detector_warns_at_the_callers_line(two_cores: None, small_model: Path) -> None:
    with pytest.warns(ThreadsWarning, match="threads 3 exceeds the 2 cores") as record:
        Detector(small_model, threads=3).close()
    assert [w.filename for w in record] == [__file__]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThreadsWarning)
        Detector(small_model, threads=2).close()
        Detector(small_model).close()


def test_run_options_warn_at_the_users_call(two_cores: None, tmp_path: Path) -> None:
    with pytest.warns(ThreadsWarning, match="threads 8 exceeds") as record:
        validate_run_options(RunOptions(threads=8))
    with pytest.warns(ThreadsWarning) as deeper, pytest.raises(ProfileError):
        prepare(RunOptions(threads=8, profile="no-such-profile", out_dir=str(tmp_path)))
    assert [w.filename for w in [*record, *deeper]] == [__file__, __file__]  # not bench's own lines
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThreadsWarning)
        validate_run_options(RunOptions(threads=2))


def test_sweep_validates_twice_but_warns_once(two_cores: None, tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as record, pytest.raises(ProfileError):
        warnings.simplefilter("always")  # every warning issued is recorded
        sweep(SweepOptions(threads=8, profile="no-such-profile", out_dir=str(tmp_path / "s")))
    assert [(w.category, w.filename) for w in record] == [(ThreadsWarning, __file__)]


@pytest.mark.parametrize("command", [["run"], ["sweep", "--out", "s"]])
def test_cli_prints_one_warning_line(command: list[str], tmp_path: Path) -> None:
    proc = run_cli(*command, "--threads", "1024", "--profile", "no-such-profile", cwd=tmp_path)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 2 and lines[0].startswith("warning: --threads 1024 exceeds the "), proc.stderr
    assert lines[1].startswith("error: ") and "ThreadsWarning" not in proc.stderr


def test_the_measured_child_does_not_warn_again(two_cores: None, small_model: Path) -> None:
    from bench.measure.runner import MeasureSpec, open_detector

    spec = MeasureSpec(model=str(small_model), backend="onnxruntime", precision="fp32", threads=3, warmup=0,
                       min_iterations=1, min_duration_s=0.0, deploy={}, accuracy=None, timing_images=[])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThreadsWarning)  # the parent validated the options and warned
        open_detector(spec).close()


def test_cli_refuses_absurd_threads_without_a_warning(tmp_path: Path) -> None:
    proc = run_cli("run", "--threads", "99999", cwd=tmp_path)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "'--threads'" in lines[0] and "1024" in lines[0]
    assert list(tmp_path.iterdir()) in ([], [tmp_path / ".cache"])


def test_a_cli_run_prints_the_warning_once(two_cores: None, tmp_path: Path, small_model: Path,
                                           capfd: pytest.CaptureFixture[str]) -> None:
    from bench.cli import main

    main(["run", "--model", str(small_model), "--threads", "3", "--no-accuracy", "--precisions", "fp32",
          "--warmup", "0", "--min-iterations", "1", "--min-duration", "0", "--duration", "0",
          "--out", str(tmp_path / "r")])
    err = capfd.readouterr().err  # the measuring child's stderr too (file descriptor level)
    assert err.count("exceeds the 2 cores") == 1 and "ThreadsWarning" not in err, err
