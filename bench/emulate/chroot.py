"""Mounts into the root filesystem and the clean-environment chroot command that runs inside it."""
from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from bench.emulate.errors import EmulationError

#: PATH inside (the venv's bin first)
VENV_INSIDE = "/opt/edgebench-venv"
INSIDE_PATH = f"{VENV_INSIDE}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def inside_env(cpu: str, ca_file: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a process inside: nothing of the host's leaks in (its pip settings point
    at host-only paths); QEMU_CPU picks the emulated core; the CA bundle copied from the host."""
    env = {"PATH": INSIDE_PATH, "HOME": "/root", "LANG": "C.UTF-8", "QEMU_CPU": cpu,
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    if ca_file:
        env.update({"SSL_CERT_FILE": ca_file, "PIP_CERT": ca_file, "REQUESTS_CA_BUNDLE": ca_file})
    env.update(extra or {})
    return env


def chroot_argv(root: Path, env: Mapping[str, str], argv: Sequence[str]) -> list[str]:
    """`env -i K=V ... chroot ROOT argv...`: the command run on the host."""
    return ["env", "-i", *(f"{k}={v}" for k, v in env.items()), "chroot", str(root), *argv]


def run_inside(root: Path, env: Mapping[str, str], argv: Sequence[str], timeout: float | None = None,
               capture: bool = False, stdout: IO[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `argv` inside the root filesystem (stdout/stderr to ours, or captured, or stdout to a file)."""
    cmd = chroot_argv(root, env, argv)
    try:
        return subprocess.run(cmd, text=True, timeout=timeout, check=False,
                              stdout=subprocess.PIPE if capture else stdout,
                              stderr=subprocess.STDOUT if capture else None)
    except subprocess.TimeoutExpired as exc:
        raise EmulationError(f"'{' '.join(argv[:3])}' under emulation did not finish in {timeout:.0f} s") \
            from exc


def inside(root: Path, host_path: Path) -> Path:
    """Where an absolute host path appears inside the root filesystem when bind-mounted at the same path."""
    return root / host_path.resolve().relative_to("/")


@contextmanager
def mounted(root: Path, cpuinfo: Path | None, binds: Sequence[tuple[Path, bool]] = ()) -> Iterator[None]:
    """/proc, /sys and /dev inside `root`, an ARM cpuinfo over its /proc/cpuinfo, and each (host folder,
    writable) bind-mounted at its own absolute path; all unmounted again, innermost first."""
    with ExitStack() as stack:
        _mount(stack, root / "proc", ["-t", "proc", "proc"])
        if cpuinfo is not None:
            _mount(stack, root / "proc/cpuinfo", ["--bind", str(cpuinfo)], is_file=True)
        _mount(stack, root / "sys", ["--rbind", "/sys"], slave=True)
        _mount(stack, root / "dev", ["--rbind", "/dev"], slave=True)
        for host, writable in binds:
            target = inside(root, host)
            _mount(stack, target, ["--bind", str(host.resolve())], is_file=host.is_file())
            if not writable:
                _check(["mount", "-o", "remount,bind,ro", str(target)])
        yield


def _mount(stack: ExitStack, target: Path, args: list[str], is_file: bool = False, slave: bool = False) -> None:
    if is_file:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(exist_ok=True)
    else:
        target.mkdir(parents=True, exist_ok=True)
    _check(["mount", *args, str(target)])
    stack.callback(_umount, target, slave)
    if slave:
        _check(["mount", "--make-rslave", str(target)])


def _umount(target: Path, recursive: bool) -> None:
    args = ["umount", "-R"] if recursive else ["umount"]
    if subprocess.run([*args, str(target)], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


def _check(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise EmulationError(f"{' '.join(cmd)} failed: {(proc.stderr or proc.stdout).strip() or proc.returncode}")
