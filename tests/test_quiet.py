"""converters.quiet: native writes to fds 1/2 and warnings are kept off the terminal, and kept for errors."""
from __future__ import annotations

import os
import warnings

import pytest

from converters.quiet import VERBOSE_ENV, quiet_output


def test_native_writes_and_warnings_are_captured(capfd: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    with quiet_output() as log:
        os.write(2, b"I0000 native log line\n")
        os.write(1, b"progress 100%\n")
        warnings.warn("deprecated thing", FutureWarning, stacklevel=1)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert "native log line" in log.text and log.last_line() == "progress 100%"
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"  # fd 2 restored


def test_verbose_lets_everything_through(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VERBOSE_ENV, "1")
    with quiet_output() as log:
        os.write(2, b"shown\n")
    assert capfd.readouterr().err == "shown\n" and log.text == ""


def test_fds_are_restored_when_the_block_raises(capfd: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    with pytest.raises(RuntimeError):
        with quiet_output():
            raise RuntimeError("boom")
    os.write(2, b"visible\n")
    assert capfd.readouterr().err == "visible\n"
