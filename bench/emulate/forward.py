"""The `run` arguments forwarded into the emulated root filesystem: host paths made absolute (and bind-mounted
read-only at the same place), --out redirected inside, and short timing defaults (timings under emulation are
not meaningful, so long timed loops only cost time)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from runtimes.errors import InputError

#: options whose value may name a host file or folder (`--calib DATA.yaml:SPLIT` too)
PATH_OPTIONS = ("--model", "--data", "--profile", "--class-map", "--calib")
#: timing options set when not given: one warm-up, three timed iterations, no sustained run
TIMING_DEFAULTS = (("--warmup", "1"), ("--min-iterations", "3"), ("--min-duration", "0"), ("--duration", "0"))


@dataclass
class Forwarded:
    """The run's arguments for inside, the host folders they need, and the host's --out."""

    args: list[str]
    binds: list[Path] = field(default_factory=list)
    out: str | None = None
    overwrite: bool = False
    profile: str | None = None


def run_options() -> tuple[dict[str, str], set[str]]:
    """`edgebench run`'s options: every spelling -> its long name, and the long names that are flags."""
    from bench.commands.run_cmd import command

    names: dict[str, str] = {}
    flags: set[str] = set()
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        spellings = [*param.opts, *param.secondary_opts]
        long = max(spellings, key=len)
        names.update({s: long for s in spellings})
        if param.is_flag:
            flags.add(long)
    return names, flags


def split_run_args(args: Sequence[str]) -> list[tuple[str, str | None]]:
    """(long option, value or None) pairs of `run ARGS`; InputError for anything `run` does not take."""
    if not args or args[0] != "run":
        raise InputError("edgebench emulate runs `run` under emulation: give it as `edgebench emulate "
                         f"--arch arm64 -- run --profile rpi5 ...` (got: {' '.join(args[:2]) or 'nothing'})")
    names, flags = run_options()
    pairs: list[tuple[str, str | None]] = []
    rest = list(args[1:])
    while rest:
        token = rest.pop(0)
        opt, eq, value = token.partition("=")
        long = names.get(opt)
        if long is None:
            raise InputError(f"edgebench run has no option '{opt}' (see `edgebench run --help`)")
        if long in flags:
            pairs.append((long, None))
            continue
        if not eq:
            if not rest:
                raise InputError(f"{opt} needs a value")
            value = rest.pop(0)
        pairs.append((long, value))
    return pairs


def host_path(value: str) -> tuple[Path, str] | None:
    """(the existing host file or folder a path option names, its ':SPLIT' suffix or ''), else None."""
    if value and Path(value).expanduser().exists():
        return Path(value).expanduser().resolve(), ""
    head, sep, tail = value.rpartition(":")
    if sep and head and Path(head).expanduser().exists():
        return Path(head).expanduser().resolve(), f":{tail}"
    return None


def forward(args: Sequence[str], out_inside: str) -> Forwarded:
    """Rewrite `run ARGS` for inside; --profile is required (no host inside matches a device profile)."""
    fwd = Forwarded(args=["run"])
    given = set()
    for opt, value in split_run_args(args):
        given.add(opt)
        if opt == "--out":
            fwd.out = value
            continue
        if opt == "--overwrite":
            fwd.overwrite = True
            continue
        if opt == "--profile":
            fwd.profile = value
        if value is not None and opt in PATH_OPTIONS:
            value = _absolute(value, fwd.binds)
            if opt in ("--data", "--calib"):
                add_binds(fwd.binds, data_binds(value))
        fwd.args += [opt] if value is None else [opt, value]
    if fwd.profile is None:
        raise InputError("edgebench emulate needs run's --profile: the device profile whose CPU is emulated "
                         "(e.g. --profile rpi5)")
    for opt, value in TIMING_DEFAULTS:
        if opt not in given:
            fwd.args += [opt, value]
    fwd.args += ["--out", out_inside]
    return fwd


def _absolute(value: str, binds: list[Path]) -> str:
    """The value with its host path made absolute; the folder holding it joins `binds` (once)."""
    found = host_path(value)
    if found is None:
        return value  # a built-in name (profile) or a path that does not exist: run says what is wrong
    path, suffix = found
    folder = path if path.is_dir() else path.parent
    if folder not in binds:
        binds.append(folder)
    return f"{path}{suffix}"


def data_binds(value: str) -> list[Path]:
    """The host folders a data.yaml (`value`, with or without ':SPLIT') reads from: its own folder, its `path:`
    root and each split's folder (the one above its `images/` component, so `labels/` comes along; the folders
    of a .txt list's images too). Only the yaml's folder for anything else; [] when `value` names nothing."""
    found = host_path(value)
    if found is None:
        return []
    path = found[0]
    if path.is_dir() or path.suffix.lower() not in (".yaml", ".yml"):
        return [path if path.is_dir() else path.parent]
    import yaml

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return [path.parent]  # run inside says what is wrong with it
    if not isinstance(config, dict):
        return [path.parent]
    raw = config.get("path")
    root = (path.parent / Path(str(raw)).expanduser()).resolve() if raw not in (None, "") else path.parent
    folders = [path.parent, root]
    for split in ("train", "val", "test"):
        entries = config.get(split)
        for item in entries if isinstance(entries, list) else [entries]:
            if item not in (None, ""):
                folders += _split_folders((root / Path(str(item)).expanduser()).resolve())
    return [f for f in dict.fromkeys(folders) if f.exists()]


def _split_folders(entry: Path) -> list[Path]:
    """The folders one split entry needs: a folder, an image's or a .txt list's (and its images')."""
    if entry.is_file() and entry.suffix.lower() == ".txt":
        lines = entry.read_text(encoding="utf-8-sig").splitlines()
        listed = [(entry.parent / line.strip()).resolve() for line in lines if line.strip()]
        return [entry.parent, *dict.fromkeys(_dataset_folder(p.parent) for p in listed)]
    return [_dataset_folder(entry if entry.is_dir() else entry.parent)]


def _dataset_folder(folder: Path) -> Path:
    """The folder above the last `images` component of `folder` (its labels live beside it), else `folder`."""
    parts = folder.parts
    for i in range(len(parts) - 1, 0, -1):
        if parts[i] == "images":
            return Path(*parts[:i])
    return folder


def add_binds(binds: list[Path], folders: Sequence[Path]) -> None:
    """Add each folder not already under a bound one (and drop bound folders under a new one)."""
    for folder in folders:
        if any(folder == b or folder.is_relative_to(b) for b in binds):
            continue
        binds[:] = [b for b in binds if not b.is_relative_to(folder)] + [folder]


def share_default_calibration(fwd: Forwarded) -> Path | None:
    """For int8 rows of the bundled model without --calib: the host's cached synthetic calibration set (made
    here if missing), added as `--calib DATA.yaml:train` with its folder bound read-only, so both sides
    calibrate on the same images; None when it does not apply (another model, --calib given, no int8)."""
    from bench.sweep.defaults import default_calibration, default_model
    from runtimes.errors import ModelLoadError

    if calib_note(fwd) is None:
        return None
    try:
        bundled = default_model().resolve()
    except ModelLoadError:
        return None
    args = fwd.args
    if "--model" in args and Path(args[args.index("--model") + 1]) != bundled:
        return None
    calib = default_calibration(bundled_meta(bundled))
    add_binds(fwd.binds, [calib.parent.resolve()])
    at = args.index("--out") if "--out" in args else len(args)
    args[at:at] = ["--calib", f"{calib.resolve()}:train"]
    return calib


def bundled_meta(model: Path) -> dict[str, Any]:
    """The bundled ONNX's metadata as a dict (what run passes to bench.sweep.defaults)."""
    import dataclasses

    import onnx

    from edge_sdk.meta import ModelMeta

    proto = onnx.load(str(model), load_external_data=False)
    return dataclasses.asdict(ModelMeta.from_props({p.key: p.value for p in proto.metadata_props}))


def calib_note(fwd: Forwarded) -> str | None:
    """A note when int8 may run without --calib: its default calibration set is generated inside the root
    filesystem's own cache, so it is not the set an x86 run calibrates on."""
    args = fwd.args
    precisions = args[args.index("--precisions") + 1].lower() if "--precisions" in args else "int8"
    if "int8" not in precisions or "--calib" in args:
        return None
    return ("int8 without --calib calibrates on the synthetic set generated inside the emulated root filesystem; "
            "pass --calib DATA.yaml:train to calibrate on the same images as an x86 run")
