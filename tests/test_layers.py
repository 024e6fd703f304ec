"""The layers point one way (docs/architecture.md), read from the source, lazy imports included; and the
wheel ships the library, not the test and benchmark model builders."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"runtimes", "edge_sdk", "calibration", "converters", "trainer", "bench", "device_profiles", "testkit"}
#: package -> the packages of ours it may import (docs/architecture.md, "Layers")
ALLOWED = {
    "runtimes": set(),
    "edge_sdk": {"runtimes"},
    "calibration": {"edge_sdk", "runtimes"},
    "converters": {"calibration", "edge_sdk", "runtimes"},
    "trainer": {"converters", "edge_sdk", "runtimes"},
    "bench": {"calibration", "converters", "edge_sdk", "runtimes", "trainer", "device_profiles"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level packages of ours that a module imports anywhere (module level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value.split(".")[0])
            elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                found.add(str(arg.values[0].value).split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    bad = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        wrong = imported_packages(path) - ALLOWED[package] - {package}
        if wrong:
            bad[str(path.relative_to(ROOT))] = sorted(wrong)
    assert not bad, f"{package} imports layers above it or test code: {bad}"


def test_the_checker_sees_lazy_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from bench.cli import main\n    import importlib\n"
                   "    importlib.import_module('edge_sdk.x')\n    importlib.import_module(f'trainer.{1}')\n")
    assert imported_packages(src) == {"bench", "edge_sdk", "trainer"}


def test_the_capability_table_names_runtimes_and_converters_in_their_layers() -> None:
    from runtimes.capabilities import BACKENDS

    for cap in BACKENDS.values():
        assert cap.runtime is None or cap.runtime.startswith("runtimes."), cap.name
        assert cap.converter is None or cap.converter.startswith("converters."), cap.name


@pytest.mark.slow
def test_the_wheel_holds_the_library_and_no_test_fixtures(tmp_path: Path) -> None:
    src = tmp_path / "src"  # a copy: setuptools would leave build/ in the checkout and reuse stale files from it
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "runs", "__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("edgebench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("edgebench-")}
    assert tops == {"bench", "calibration", "converters", "device_profiles", "edge_sdk", "runtimes", "trainer"}
    assert not [n for n in names if "fixture" in n or n.startswith(("tests/", "testkit/", "benchmarks/"))]
    for needed in ("runtimes/capabilities.py", "edge_sdk/assets/default_model.onnx", "device_profiles/rpi5.yaml",
                   "bench/measure/timing.py", "bench/report/writer.py", "bench/sweep/run.py"):
        assert needed in names
