"""`edgebench profiles list|show` and `edgebench env`."""
from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
from edge_sdk.profiles import list_profiles, load_profile
from runtimes.registry import BACKENDS

ON_X86 = platform.machine().lower() in ("x86_64", "amd64")


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def run_main(*args: str) -> subprocess.CompletedProcess:
    code = "from bench.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=60)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0]


def test_profiles_list_shows_every_profile_and_host_match():
    lines = invoke("profiles", "list").strip().splitlines()
    assert lines[0].split()[:3] == ["NAME", "DEVICE", "BACKEND"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert sorted(rows) == list_profiles()
    assert "90-120 (fp16@640)" in rows["jetson-orin"] and "tensorrt" in rows["jetson-orin"]
    assert " no: " in rows["rpi5"] and " no: " in rows["iphone15"]
    if ON_X86:
        assert rows["x86-cpu"].rstrip().endswith("yes")


def test_profiles_show_prints_validated_yaml(tmp_path: Path):
    out = invoke("profiles", "show", "rpi5")
    assert out.startswith("# device_profiles/rpi5.yaml")
    path = tmp_path / "copy.yaml"
    path.write_text(out, encoding="utf-8")
    assert load_profile(path) == load_profile("rpi5")


def test_profiles_show_path_fills_defaults(tmp_path: Path):
    path = tmp_path / "mine.yaml"
    path.write_text("device: Box\nbackend: onnxruntime\nprecisions: [fp32]\ninput_size: 320\n")
    out = invoke("profiles", "show", str(path))
    assert "name: mine" in out and "max_det: 300" in out and "conf: 0.001" in out


def test_env_json_parses_and_reports_backends():
    env = json.loads(invoke("env", "--json"))
    assert set(env) == {"host", "backends", "profile"}
    assert set(env["backends"]) == set(BACKENDS)
    ort = env["backends"]["onnxruntime"]
    assert ort["available"] is True and ort["reason"] == ""
    assert ort["version"] == importlib.metadata.version("onnxruntime")
    for name, status in env["backends"].items():
        assert status["available"] or status["reason"], name
    assert env["host"]["logical_cores"] >= 1 and isinstance(env["host"]["cpu_flags"], list)
    if ON_X86:
        assert env["profile"] == "x86-cpu"


def test_env_text():
    out = invoke("env")
    assert "cpu_model" in out and "onnxruntime" in out and "profile matching this host:" in out


def test_env_imports_no_engine():
    code = ("import sys; from edge_sdk.host import environment; environment(); "
            "print(sorted(m for m in ('onnxruntime', 'torch', 'openvino', 'ncnn', 'tensorrt') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_profiles_show_unknown_name_is_one_line_exit_2():
    assert_one_line_error(run_main("profiles", "show", "nope"), "unknown profile 'nope'",
                          "x86-cpu", "rpi5")


@pytest.mark.parametrize("extra, needles", [
    ("bench:\n  warmpu: 3\n", ("unknown key 'warmpu'", "did you mean 'warmup'?")),
    ("threads: many\n", ("key 'threads'",)),
])
def test_profiles_show_bad_file_is_one_line_exit_2(tmp_path: Path, extra: str, needles: tuple):
    path = tmp_path / "bad.yaml"
    path.write_text("device: Box\nbackend: onnxruntime\nprecisions: [fp32]\ninput_size: 320\n"
                    + extra)
    assert_one_line_error(run_main("profiles", "show", str(path)), str(path), *needles)
