"""The venv inside the root filesystem: this checkout's own wheel, its backend extras and the engines' aarch64
wheels at the host's versions (so a difference from x86 is the kernels', not a version's). A stamp in the
venv records what it holds; only what changed is installed again."""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import subprocess
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.emulate.chroot import VENV_INSIDE, run_inside
from bench.emulate.errors import EmulationError

#: the backend extras installed (runtimes with aarch64 wheels: ncnn for the Pi, LiteRT/XNNPACK for Android)
EXTRAS = ("ncnn", "tflite")
#: engine packages pinned to the host's versions when the host has them
PINNED = ("numpy", "onnxruntime", "onnx", "opencv-python-headless", "ncnn", "ai-edge-litert", "pycocotools")
#: installed without its dependencies: pnnx's wheel asks for torch, but edgebench only runs its binary
NO_DEPS = ("pnnx",)
WHEELS_INSIDE = "/opt/edgebench-wheels"
STAMP = "edgebench-stamp.json"
PIP_TIMEOUT_S = 3600


def project_root() -> Path:
    """The source checkout this edgebench runs from; EmulationError when it is installed from a wheel."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or 'name = "edgebench"' not in pyproject.read_text():
        raise EmulationError("edgebench emulate builds this project's wheel from its source checkout, and this "
                             f"edgebench is not running from one ({root})")
    return root


def build_wheel(out_dir: Path, source: Path | None = None) -> Path:
    """`pip wheel --no-deps` of the checkout into `out_dir` (emptied of older edgebench wheels first)."""
    src = source or project_root()
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("edgebench-*.whl"):
        old.unlink()
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out_dir), str(src)],
                          capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    wheels = sorted(out_dir.glob("edgebench-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise EmulationError(f"cannot build edgebench's wheel from {src}: {tail[0]}")
    return wheels[-1]


def host_pins(packages: Sequence[str] = (*PINNED, *NO_DEPS)) -> dict[str, str]:
    """package -> the version installed here, for those installed."""
    pins = {}
    for name in packages:
        try:
            pins[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def wanted_stamp(wheel: Path, pins: Mapping[str, str], extras: Sequence[str] = EXTRAS) -> dict[str, object]:
    """What the venv must hold: the wheel (name and sha256), the extras and the pins."""
    return {"wheel": wheel.name, "wheel_sha256": wheel_digest(wheel), "extras": list(extras), "pins": dict(pins)}


def wheel_digest(wheel: Path) -> str:
    """sha256 of the wheel's files (names and contents, RECORD left out): the same for a rebuild of the same
    source, whose zip timestamps differ."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            if not name.endswith(".dist-info/RECORD"):
                digest.update(name.encode() + b"\0" + archive.read(name) + b"\0")
    return digest.hexdigest()


def pip_commands(wheel_inside: str, pins: Mapping[str, str], extras: Sequence[str] = EXTRAS,
                 deps_current: bool = False) -> list[list[str]]:
    """The pip commands run inside: the wheel with its extras and the pinned engines, the no-deps packages,
    then the wheel itself again (a rebuilt wheel of the same version is otherwise left alone). With
    `deps_current`, only that last step."""
    pip = [f"{VENV_INSIDE}/bin/python", "-m", "pip", "install", "-q"]
    spec = f"{wheel_inside}[{','.join(extras)}]" if extras else wheel_inside
    pinned = [f"{n}=={v}" for n, v in pins.items() if n not in NO_DEPS]
    loose = [f"{n}=={pins[n]}" if n in pins else n for n in NO_DEPS]
    steps = [] if deps_current else [[*pip, spec, *pinned], [*pip, "--no-deps", *loose]]
    return [*steps, [*pip, "--no-deps", "--force-reinstall", wheel_inside]]


def ensure_venv(root: Path, env: Mapping[str, str], wheel: Path, pins: Mapping[str, str] | None = None,
                extras: Sequence[str] = EXTRAS) -> bool:
    """Create and fill the venv inside `root` unless its stamp already says so; True when it installed."""
    pins = host_pins() if pins is None else pins
    want = wanted_stamp(wheel, pins, extras)
    stamp_path = root / VENV_INSIDE.lstrip("/") / STAMP
    have = _read_stamp(stamp_path)
    if have == want:
        return False
    if not (root / VENV_INSIDE.lstrip("/") / "bin/python").exists():
        _inside(root, env, ["python3", "-m", "venv", VENV_INSIDE], "create the venv")
    wheels = root / WHEELS_INSIDE.lstrip("/")
    wheels.mkdir(parents=True, exist_ok=True)
    for old in wheels.glob("edgebench-*.whl"):
        old.unlink()
    (wheels / wheel.name).write_bytes(wheel.read_bytes())
    same_deps = have is not None and all(have.get(k) == want[k] for k in ("extras", "pins"))
    for cmd in pip_commands(f"{WHEELS_INSIDE}/{wheel.name}", pins, extras, deps_current=same_deps):
        _inside(root, env, cmd, "install into the arm64 venv")
    stamp_path.write_text(json.dumps(want, indent=1))
    return True


def _read_stamp(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _inside(root: Path, env: Mapping[str, str], argv: list[str], what: str) -> None:
    proc = run_inside(root, env, argv, timeout=PIP_TIMEOUT_S, capture=True)
    if proc.returncode != 0:
        lines = [x for x in (proc.stdout or "").splitlines() if x.strip()]
        raise EmulationError(f"cannot {what}: {' '.join(argv[2:6])} exit {proc.returncode}: "
                             f"{lines[-1] if lines else 'no output'}")
