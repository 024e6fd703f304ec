"""tests/expected_skips.py: a run lists its expected skips and fails on any other (unless EDGEBENCH_ALLOW_SKIPS=1)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from expected_skips import ALLOW_ENV, EXPECTED_SKIPS, Skip, is_expected

TESTS = Path(__file__).resolve().parent

CONFTEST = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
import expected_skips
expected_skips.EXPECTED_SKIPS = {{"test_demo.py::test_expected": "on purpose"}}
from expected_skips import (pytest_collectreport, pytest_runtest_logreport, pytest_sessionfinish,
                            pytest_sessionstart, pytest_terminal_summary)
"""

DEMO = """
import pytest

def test_expected():
    pytest.skip("on purpose, for this demo")

def test_passes():
    pass
"""


def run_demo(root: Path, extra: str = "", allow: bool = False) -> subprocess.CompletedProcess:
    """pytest on a demo folder whose conftest uses the hooks with a one-entry table."""
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "conftest.py").write_text(CONFTEST)
    (root / "test_demo.py").write_text(DEMO + extra)
    env = {k: v for k, v in os.environ.items() if k != ALLOW_ENV} | ({ALLOW_ENV: "1"} if allow else {})
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root)], cwd=root,
                          capture_output=True, text=True, timeout=120, env=env)


def test_expected_skip_is_listed_with_its_reason(tmp_path: Path) -> None:
    proc = run_demo(tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert "expected skips:\n  test_demo.py::test_expected: on purpose, for this demo" in proc.stdout
    assert "unexpected" not in proc.stdout


def test_any_other_skip_fails_the_run(tmp_path: Path) -> None:
    extra = "\ndef test_other():\n    pytest.skip('some extra is missing')\n"
    proc = run_demo(tmp_path, extra)
    assert proc.returncode == 1, proc.stdout
    assert "unexpected skips" in proc.stdout and "test_demo.py::test_other: some extra is missing" in proc.stdout
    allowed = run_demo(tmp_path, extra, allow=True)
    assert allowed.returncode == 0 and f"allowed by {ALLOW_ENV}=1" in allowed.stdout, allowed.stdout


def test_module_level_skip_is_caught(tmp_path: Path) -> None:
    (tmp_path / "test_gone.py").write_text("import pytest\npytest.importorskip('no_such_module_here')\n")
    proc = run_demo(tmp_path)
    assert proc.returncode == 1 and "test_gone.py: could not import 'no_such_module_here'" in proc.stdout, proc.stdout


def test_matching_needs_the_node_id_and_the_reason() -> None:
    table = {"a.py::t[x]": "why", "b.py::t*": "because"}
    assert is_expected(Skip("a.py::t[x]", "why not"), table)
    assert not is_expected(Skip("a.py::t[y]", "why"), table)  # brackets are literal, not a glob
    assert not is_expected(Skip("a.py::t[x]", "other"), table)
    assert is_expected(Skip("b.py::t_two", "because so"), table)
    assert all(reason for reason in EXPECTED_SKIPS.values())
