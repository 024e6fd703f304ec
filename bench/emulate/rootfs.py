"""The arm64 Debian root filesystem: built once with mmdebstrap into edgebench's cache dir, keyed by the
Debian release, the architecture and qemu's version (the venv inside is keyed by this project's version: venv.py).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.emulate.errors import EmulationError
from edge_sdk.cachedir import cache_dir

RELEASE = "bookworm"
#: the Debian archive the root filesystem comes from ($EDGEBENCH_DEBIAN_MIRROR overrides it)
MIRROR = "http://deb.debian.org/debian"
INCLUDE = ("python3", "python3-venv", "python3-pip", "ca-certificates")
MMDEBSTRAP_TIMEOUT_S = 3600
#: where the host's CA bundle is copied inside (HTTPS may go through an intercepting proxy)
CA_INSIDE = "etc/ssl/certs/edgebench-host-ca.crt"
HOST_CA_FILES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


@dataclass(frozen=True)
class RootfsSpec:
    """What a root filesystem is built from; `key` names its cache folder."""

    arch: str
    release: str
    qemu: str
    mirror: str = MIRROR

    @property
    def key(self) -> str:
        """'arm64-bookworm-qemu7.2.22'."""
        return f"{self.arch}-{self.release}-qemu{self.qemu}"

    @property
    def home(self) -> Path:
        """The cache folder holding the root filesystem, its stamp, the cpuinfo files and the wheels."""
        return cache_dir() / "emulate" / self.key

    @property
    def root(self) -> Path:
        return self.home / "rootfs"

    @property
    def stamp(self) -> Path:
        return self.home / "rootfs.stamp.json"


def spec_for(arch: str, qemu: str, release: str = RELEASE) -> RootfsSpec:
    """The spec of this host's emulation ($EDGEBENCH_DEBIAN_MIRROR picks the Debian archive)."""
    return RootfsSpec(arch, release, qemu, os.environ.get("EDGEBENCH_DEBIAN_MIRROR") or MIRROR)


def is_built(spec: RootfsSpec) -> bool:
    """The stamp exists, matches the spec and the root filesystem has its python3."""
    try:
        stamp = json.loads(spec.stamp.read_text())
    except (OSError, ValueError):
        return False
    return bool(stamp.get("spec") == asdict(spec) and (spec.root / "usr/bin/python3").exists())


def build_rootfs(spec: RootfsSpec, log: Path | None = None) -> float:
    """Build the root filesystem unless it is built; returns the seconds spent (0 when cached).

    mmdebstrap writes into `rootfs.partial`, renamed when it succeeds, so an interrupted build is
    never taken for a finished one."""
    if is_built(spec):
        return 0.0
    if not shutil.which("mmdebstrap"):
        raise EmulationError("mmdebstrap is not installed (package mmdebstrap)")
    partial = spec.home / "rootfs.partial"
    for old in (partial, spec.root):
        _remove_tree(old)
    spec.home.mkdir(parents=True, exist_ok=True)
    cmd = ["mmdebstrap", f"--arch={spec.arch}", "--variant=apt", f"--include={','.join(INCLUDE)}",
           spec.release, str(partial), spec.mirror]
    start = time.monotonic()
    out = (log or spec.home / "mmdebstrap.log").open("w")
    with out:
        try:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=MMDEBSTRAP_TIMEOUT_S,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise EmulationError(f"mmdebstrap did not finish in {MMDEBSTRAP_TIMEOUT_S} s") from exc
    if proc.returncode != 0:
        raise EmulationError(f"mmdebstrap failed (exit {proc.returncode}); see {out.name}")
    partial.rename(spec.root)
    spec.stamp.write_text(json.dumps({"spec": asdict(spec), "built_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                     time.gmtime())}))
    return time.monotonic() - start


def copy_ca_bundle(root: Path) -> Path | None:
    """Copy the host's CA bundle into the root filesystem ($SSL_CERT_FILE first); its path there, or None."""
    for candidate in (os.environ.get("SSL_CERT_FILE"), *HOST_CA_FILES):
        if candidate and Path(candidate).is_file():
            target = root / CA_INSIDE
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(candidate, target)
            return Path("/") / CA_INSIDE
    return None


def mounted_under(path: Path, mounts: str = "/proc/mounts") -> list[str]:
    """Mount points at or below `path` (from /proc/mounts)."""
    base = str(path.resolve())
    points = []
    for line in Path(mounts).read_text().splitlines():
        fields = line.split()
        if len(fields) > 1:
            point = fields[1].replace("\\040", " ")
            if point == base or point.startswith(base + "/"):
                points.append(point)
    return points


def _remove_tree(path: Path) -> None:
    """Remove a stale root filesystem; refuses while anything is mounted inside it."""
    if not path.exists():
        return
    busy = mounted_under(path)
    if busy:
        raise EmulationError(f"cannot remove {path}: still mounted there: {', '.join(busy[:3])}")
    shutil.rmtree(path)
