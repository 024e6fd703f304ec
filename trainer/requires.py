"""A clear error when the training extra (torch + lightning) is not installed."""
from __future__ import annotations

import importlib.util

from runtimes.errors import EdgebenchError


def require_torch(need_lightning: bool = False, need_nncf: bool = False) -> None:
    """Raise one line naming the missing package and the pip extra that provides it."""
    needed = ("torch", "lightning") if need_lightning else ("torch",)
    needed += ("nncf",) if need_nncf else ()
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise EdgebenchError(f"this command needs {' and '.join(missing)}; install it with: "
                             f"pip install 'edgebench[train]'")
