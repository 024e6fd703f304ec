"""The host side of emulation: root, the Debian packages, binfmt_misc with qemu's aarch64 handler."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from bench.emulate.errors import EmulationError

#: Debian packages the emulation needs on the host
PACKAGES = ("qemu-user-static", "binfmt-support", "mmdebstrap", "arch-test")
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
#: Debian architecture -> (binfmt handler name, qemu-user-static binary)
ARCHES = {"arm64": ("qemu-aarch64", "qemu-aarch64-static")}
APT_TIMEOUT_S = 900


def require_root() -> None:
    """EmulationError unless this process runs as root (mounts, chroot and apt need it)."""
    if os.geteuid() != 0:
        raise EmulationError("edgebench emulate needs root (it mounts binfmt_misc, builds a root filesystem "
                             "and runs chroot); run it with sudo")


def missing_packages(packages: Sequence[str] = PACKAGES) -> list[str]:
    """The packages dpkg does not list as installed."""
    missing = []
    for name in packages:
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0 or "install ok installed" not in proc.stdout:
            missing.append(name)
    return missing


def ensure_packages(packages: Sequence[str] = PACKAGES) -> list[str]:
    """Install the missing packages with apt-get; returns those installed; EmulationError when apt cannot."""
    missing = missing_packages(packages) if shutil.which("dpkg-query") else list(packages)
    if not missing:
        return []
    if not shutil.which("apt-get"):
        raise EmulationError(f"packages {', '.join(missing)} cannot be installed: no apt-get on this host "
                             "(emulation is set up for Debian/Ubuntu hosts)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = _run(["apt-get", "install", "-y", "-q", *missing], env=env, timeout=APT_TIMEOUT_S)
    if proc.returncode != 0:
        raise EmulationError(f"packages {', '.join(missing)} cannot be installed: apt-get exit "
                             f"{proc.returncode}: {_last_line(proc.stdout)}")
    return missing


def ensure_binfmt(arch: str = "arm64") -> None:
    """Mount binfmt_misc when needed and enable qemu's handler for `arch`; EmulationError when it cannot."""
    handler, _ = arch_names(arch)
    if not (BINFMT_DIR / "status").exists():
        proc = _run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)])
        if proc.returncode != 0:
            raise EmulationError(f"binfmt_misc cannot be mounted at {BINFMT_DIR} ({_last_line(proc.stdout)}); "
                                 "a container needs --privileged, or a host with binfmt_misc")
    if not (BINFMT_DIR / handler).exists() or "enabled" not in (BINFMT_DIR / handler).read_text():
        _run(["update-binfmts", "--enable", handler])
    if not (BINFMT_DIR / handler).exists():
        raise EmulationError(f"binfmt_misc has no {handler} handler after update-binfmts --enable {handler}")
    proc = _run(["arch-test", arch])
    if proc.returncode != 0 or "ok" not in proc.stdout:
        raise EmulationError(f"{arch} binaries do not run here under qemu (arch-test {arch}: "
                             f"{_last_line(proc.stdout)})")


def arch_names(arch: str) -> tuple[str, str]:
    """(binfmt handler, qemu binary) of a Debian architecture; EmulationError for one not supported."""
    if arch not in ARCHES:
        raise EmulationError(f"--arch {arch} is not supported (supported: {', '.join(ARCHES)})")
    return ARCHES[arch]


def qemu_version(arch: str = "arm64") -> str:
    """qemu-user-static's version ('7.2.22'); EmulationError when the binary is missing."""
    _, binary = arch_names(arch)
    if not shutil.which(binary):
        raise EmulationError(f"{binary} is not installed (package qemu-user-static)")
    out = _run([binary, "--version"]).stdout
    found = re.search(r"version\s+(\d+(?:\.\d+)+)", out)
    if not found:
        raise EmulationError(f"cannot read the version of {binary}: {_last_line(out)}")
    return found.group(1)


def prepare_host(arch: str = "arm64") -> str:
    """Root, packages and binfmt_misc, in that order; returns the qemu version."""
    require_root()
    ensure_packages()
    ensure_binfmt(arch)
    return qemu_version(arch)


def _run(cmd: Sequence[str], env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise EmulationError(f"{cmd[0]} is not installed: {exc.strerror}") from exc
    except subprocess.TimeoutExpired as exc:
        raise EmulationError(f"{' '.join(cmd[:3])} did not finish in {timeout:.0f} s") from exc


def _last_line(text: str | None) -> str:
    lines = [x.strip() for x in (text or "").splitlines() if x.strip()]
    return lines[-1] if lines else "no output"
