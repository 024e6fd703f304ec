"""Where `edgebench run` and `edgebench sweep` write: one rule for both.

`--out DIR` writes report.json/.md/.html and artifacts/ into DIR itself, and refuses a DIR that
already holds a report.json unless `--overwrite`; without `--out`, a new `runs/<YYYYmmdd-HHMMSS>-<profile>/`.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from runtimes.errors import InputError

#: Parent of the stamped folders written when no --out is given.
DEFAULT_ROOT = Path("runs")
#: The file whose presence marks a folder as holding a report.
REPORT = "report.json"


def out_folder(out_dir: str | None, profile: str | None, overwrite: bool = False) -> Path:
    """The folder a run or sweep writes into: `out_dir` itself (checked by `check_out`), else a new
    stamped folder under runs/ named after `profile` (the profile matching this host when None).
    Creates nothing."""
    if out_dir is not None:
        out = Path(out_dir)
        check_out(out, overwrite)
        return out
    return stamped(DEFAULT_ROOT, profile_name(profile))


def check_out(out: Path, overwrite: bool) -> None:
    """InputError when `out` is a file, or already holds a report.json and `overwrite` is not set."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    if (out / REPORT).exists() and not overwrite:
        raise InputError(f"{out} already holds a report ({REPORT}); pass --overwrite to replace it, "
                         "or choose another --out")


def stamped(root: Path, profile: str, now: datetime | None = None) -> Path:
    """`root/<YYYYmmdd-HHMMSS>-<profile>`, with `-2`, `-3`... when that one already holds a report."""
    base = root / f"{(now or datetime.now()):%Y%m%d-%H%M%S}-{profile}"
    out, n = base, 1
    while (out / REPORT).exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def profile_name(profile: str | None) -> str:
    """The name of profile `profile` (a built-in name or a YAML path), or of the one matching this host."""
    from edge_sdk.host import match_host_profile
    from edge_sdk.profiles import load_profile

    return load_profile(profile or match_host_profile()).name
