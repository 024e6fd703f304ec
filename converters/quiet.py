"""Keep third-party converter chatter (absl/glog lines, progress prints, warnings) off the user's terminal.

litert-torch, torch.export and the MLIR lowering write to file descriptor 2 from native code, so
`contextlib.redirect_stderr` is not enough: fds 1 and 2 themselves are pointed at a temporary file for the
duration, and what was written is kept on the `Captured` object (the caller shows it on failure).
Set EDGEBENCH_VERBOSE=1 to let everything through.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

VERBOSE_ENV = "EDGEBENCH_VERBOSE"
#: stdout and stderr: some converters print progress with print(), others log from native code
FDS = (1, 2)


@dataclass
class Captured:
    """What the quiet block wrote to stderr (filled when the block ends)."""

    text: str = ""
    terminal_fd: int | None = None  # the real stderr while the block runs (for a progress line), else None

    def last_line(self) -> str:
        lines = [ln for ln in self.text.splitlines() if ln.strip()]
        return lines[-1].strip() if lines else ""


@contextlib.contextmanager
def quiet_output() -> Iterator[Captured]:
    """Silence fds 1 and 2 and Python warnings inside the block (unless EDGEBENCH_VERBOSE is set)."""
    captured = Captured()
    if os.environ.get(VERBOSE_ENV):
        yield captured
        return
    _flush()
    saved = {fd: os.dup(fd) for fd in FDS}
    with tempfile.TemporaryFile(mode="w+b") as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fd in FDS:
            os.dup2(sink.fileno(), fd)
        captured.terminal_fd = saved[2]
        try:
            yield captured
        finally:
            _flush()
            captured.terminal_fd = None
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace")


def _flush() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
