"""`edgebench profiles list|show`: the built-in device profiles and their validated contents."""
from __future__ import annotations

from collections.abc import Sequence

import click

from edge_sdk.host import host_facts, host_matches
from edge_sdk.profiles import DeviceProfile, list_profiles, load_profile

HEADERS = ("NAME", "DEVICE", "BACKEND", "PRECISIONS", "REFERENCE FPS", "THIS HOST")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned text table with a header row."""
    widths = [max(len(str(r[i])) for r in (headers, *rows)) for i in range(len(headers))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)).rstrip()
             for r in (headers, *rows)]
    return "\n".join(lines)


def _reference(p: DeviceProfile) -> str:
    ref = p.reference
    if ref is None:
        return "-"
    lo, hi = (f"{v:g}" for v in ref.fps)
    return f"{lo}-{hi} ({ref.precision}@{ref.imgsz})"


def profile_rows() -> list[tuple[str, ...]]:
    """One row per built-in profile: name, device, backend, precisions, reference, match."""
    facts = host_facts()
    rows: list[tuple[str, ...]] = []
    for name in list_profiles():
        p = load_profile(name)
        ok, why = host_matches(p, facts)
        rows.append((p.name, p.device, p.backend, ",".join(p.precisions), _reference(p),
                     "yes" if ok else f"no: {why}"))
    return rows


@click.group(name="profiles")
def command() -> None:
    """Device profiles: list the built-in ones, show one validated."""


@command.command(name="list")
def list_cmd() -> None:
    """List the built-in profiles and whether each matches this host."""
    click.echo(format_table(HEADERS, profile_rows()))


@command.command(name="show")
@click.argument("name_or_path")
def show_cmd(name_or_path: str) -> None:
    """Print a built-in profile (by name) or a profile file (by path), validated, as YAML."""
    profile = load_profile(name_or_path)
    click.echo(f"# {profile.source}")
    click.echo(profile.to_yaml().rstrip())
