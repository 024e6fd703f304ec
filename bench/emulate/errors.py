"""The typed error of the emulated-ARM runner (one line, exit code 2 through the CLI)."""
from __future__ import annotations

from runtimes.errors import EdgebenchError


class EmulationError(EdgebenchError):
    """The emulation environment cannot be prepared or used (not root, no binfmt_misc, no packages, ...)."""
