"""`edgebench env`: host facts, which backends can run here, and the profile matching this host."""
from __future__ import annotations

import json
from typing import Any

import click

from bench.commands.profiles_cmd import format_table
from edge_sdk.host import environment

#: CPU features worth showing by name (the full list is in --json)
NOTABLE_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
                 "amx_int8", "amx_bf16", "asimd", "asimddp", "asimdhp", "i8mm", "bf16", "sve")
HOST_KEYS = ("os_release", "machine", "cpu_model", "physical_cores", "logical_cores",
             "usable_cores", "memory_total_mb", "python", "device_tree_model", "nvidia_gpus",
             "accelerators")


def _host_lines(host: dict[str, Any]) -> list[str]:
    lines = [f"{key:<18} {host[key]}" for key in HOST_KEYS if host.get(key) not in (None, [])]
    flags = [f for f in NOTABLE_FLAGS if f in host["cpu_flags"]]
    lines.append(f"{'cpu_flags':<18} {len(host['cpu_flags'])} flags; notable: "
                 f"{' '.join(flags) or 'none'}")
    return lines


def _backend_rows(backends: dict[str, dict[str, Any]]) -> list[tuple[str, ...]]:
    return [(name, "yes" if b["available"] else "no", b["version"] or "-", " ".join(b["suffixes"]),
             _made(b), b["reason"] or "") for name, b in backends.items()]


def _made(b: dict[str, Any]) -> str:
    """What this version can give an artifact of the backend: converter-written and load-time hinted precisions."""
    made = ",".join(b["writes"]) if b["converter"] else ""
    hinted = [p for p in b["hints"] if p not in b["writes"]]
    int8 = ("int8" if not b.get("int8_missing") else "int8 (quantizer missing)") if b.get("int8") else ""
    return " ".join(x for x in (made, f"hint {','.join(hinted)}" if hinted else "", int8) if x) or "-"


@click.command(name="env")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def command(as_json: bool) -> None:
    """Show host facts, each backend's availability/version, and the matching profile."""
    env = environment()
    if as_json:
        click.echo(json.dumps(env, indent=2))
        return
    click.echo("\n".join(_host_lines(env["host"])))
    click.echo("")
    click.echo(format_table(("BACKEND", "AVAILABLE", "VERSION", "ARTIFACT", "CONVERTS TO", "WHY NOT"),
                            _backend_rows(env["backends"])))
    click.echo("")
    click.echo(f"profile matching this host: {env['profile'] or 'none'}")
