"""Every script in benchmarks/ runs, the way the README runs it (`python benchmarks/X.py ...`), with tiny arguments.

Not a measurement: the point is that a README table's command cannot rot. Scripts that need a tool
kept out of our venv (Ultralytics in a scratch venv, headless Chromium) skip their run with the
reason (tests/expected_skips.py lists those skips), but their argument parsing is still checked.
Set EDGEBENCH_ULTRALYTICS_PYTHON to the python of a venv with Ultralytics to run those too.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from bench.measure.early_stop import min_queries

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
ULTRALYTICS_ENV = "EDGEBENCH_ULTRALYTICS_PYTHON"
P99_MIN = min_queries(tail=0.01, confidence=0.99)  # the harness's early-stopping rule for p99 (459)


def run_script(name: str, *args: str, tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python benchmarks/NAME ARGS` from the checkout root, in a fresh interpreter (text mode)."""
    env = {**os.environ, "EDGEBENCH_CACHE": str(tmp_path / ".cache")}
    return subprocess.run([sys.executable, str(Path("benchmarks") / name), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


def ok(proc: subprocess.CompletedProcess) -> str:
    """stdout of a run that must have exited 0 (stderr tail in the failure message)."""
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    return proc.stdout


def load_script(name: str) -> ModuleType:
    """Import benchmarks/NAME as a module (benchmarks/ on sys.path, as when the script runs)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmarks_{Path(name).stem}", BENCHMARKS / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ultralytics_python() -> str:
    """The interpreter of a venv with Ultralytics, from EDGEBENCH_ULTRALYTICS_PYTHON, or skip."""
    python = os.environ.get(ULTRALYTICS_ENV)
    if not python:
        pytest.skip(f"needs Ultralytics in a scratch venv (never ours): set {ULTRALYTICS_ENV} to its python")
    return python


def test_every_script_has_a_smoke_test() -> None:
    scripts = {p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_")}
    tested = {"backend_latency.py", "detector_overhead.py", "harness_overhead.py", "peer_train_ultralytics.py",
              "report_screenshot.py", "train_throughput.py", "ultralytics_agreement.py", "int8_accuracy.py",
              "qat_accuracy.py", "qat_layer_drift.py",  # below
              "arm64_parity.py"}  # tests/test_emulate.py (its emulated half needs root and qemu)
    assert scripts == tested


# --- p99 cells -------------------------------------------------------------------------------------

def test_p99_cell_marks_too_few_samples() -> None:
    tail = load_script("_tail.py")
    assert tail.P99_MIN_SAMPLES == P99_MIN == 459
    assert tail.p99_cell([1.0] * (P99_MIN - 1)) == "1.0*"
    assert tail.p99_cell([1.0] * P99_MIN) == "1.0"
    assert tail.p99_footnote([P99_MIN, P99_MIN - 1]) == f"* fewer than {P99_MIN} samples: p99 is close to the max"
    assert tail.p99_footnote([P99_MIN]) is None


# --- scripts that run here ---------------------------------------------------------------------------

def test_backend_latency(tmp_path: Path) -> None:
    out = ok(run_script("backend_latency.py", "--iters", "3", "--warmup", "1", "--sizes", "64", "--threads", "1",
                        "--backends", "onnxruntime", "openvino", tmp_path=tmp_path))
    assert "| p50 ms | p99 ms | n |" in out
    assert re.search(r"\| 64 \| 1 \| onnxruntime \| fp32 / fp32 \| - \| [0-9.]+ \| [0-9.]+\* \| 3 \| reference \| - \|",
                     out), out  # delegation "-": the base Runtime reports None
    assert f"* fewer than {P99_MIN} samples: p99 is close to the max" in out


def test_int8_accuracy(tmp_path: Path) -> None:
    doc = tmp_path / "q.md"
    doc.write_text("before\n<!-- int8-bench -->\nold\n<!-- int8-bench -->\nafter\n")
    out = ok(run_script("int8_accuracy.py", "--backends", "onnxruntime", "--methods", "minmax", "entropy",
                        "--calib-images", "4", "--max-images", "4", "--sizes", "64", "--iters", "3",
                        "--write", str(doc), tmp_path=tmp_path))
    assert re.search(r"\| onnxruntime \| minmax \| auto \| [0-9.]+ \| [0-9.]+ \| [-+][0-9.]+ \|", out), out
    assert re.search(r"\| onnxruntime \| minmax \| none \| [0-9.]+ \| 0\.0000 \|", out), out  # crushed scores
    assert re.search(r"\| 64 \| onnxruntime \| \d+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+× \| (int8|mixed) \|", out), out
    text = doc.read_text()
    assert text.startswith("before\n<!-- int8-bench -->\nModel:") and text.endswith("<!-- int8-bench -->\nafter\n")


def test_detector_overhead(tmp_path: Path) -> None:
    out = ok(run_script("detector_overhead.py", "--iters", "50", "--warmup", "1", "--sizes", "64", tmp_path=tmp_path))
    assert re.search(r"^\| 64 \| ", out, re.M), out


def test_harness_overhead(tmp_path: Path) -> None:
    out = ok(run_script("harness_overhead.py", "--repeats", "1", "--duration", "0.01", tmp_path=tmp_path))
    assert "StageTimer overhead" in out and "spread" in out


def _needs_trainer() -> None:
    for module in ("torch", "lightning"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"training needs {module} (pip install 'edgebench[train]')")


@pytest.mark.slow
def test_train_throughput(tmp_path: Path) -> None:
    _needs_trainer()
    out = ok(run_script("train_throughput.py", "--steps", "5", "--warmup", "1", "--batch", "2", "--imgsz", "64",
                        "--workers", "0", tmp_path=tmp_path))
    assert "5 timed steps after 1 warm-up" in out and "images/s" in out


PEER_TINY = ("--train", "4", "--val", "2", "--epochs", "1", "--imgsz", "64", "--batch", "2", "--workers", "0")


@pytest.mark.slow
def test_peer_train_ultralytics_runs_our_side(tmp_path: Path) -> None:
    _needs_trainer()
    out = ok(run_script("peer_train_ultralytics.py", "--only", "ours", *PEER_TINY, "--work", str(tmp_path / "peer"),
                        tmp_path=tmp_path, timeout=300))
    assert re.search(r"^\| edgebench n \| [0-9.]+ \| ", out, re.M), out


# --- scripts that need a tool kept out of our venv: arguments here, the run where the tool is -------

@pytest.mark.parametrize("name", ["peer_train_ultralytics.py", "ultralytics_agreement.py", "report_screenshot.py"])
def test_help(tmp_path: Path, name: str) -> None:
    out = ok(run_script(name, "--help", tmp_path=tmp_path))
    assert out.startswith("usage: ") and "--" in out


@pytest.mark.parametrize("name", ["peer_train_ultralytics.py", "ultralytics_agreement.py"])
def test_ultralytics_python_is_required(tmp_path: Path, name: str) -> None:
    proc = run_script(name, tmp_path=tmp_path)
    assert proc.returncode == 2 and "--ultralytics-python" in proc.stderr, proc.stderr


def test_peer_train_ultralytics_runs_both_sides(tmp_path: Path) -> None:
    python = ultralytics_python()
    out = ok(run_script("peer_train_ultralytics.py", "--ultralytics-python", python, *PEER_TINY,
                        "--work", str(tmp_path / "peer"), tmp_path=tmp_path, timeout=600))
    assert "| Ultralytics YOLOv8n |" in out and "ours/theirs" in out


def test_ultralytics_agreement_runs(tmp_path: Path) -> None:
    python = ultralytics_python()
    from edge_sdk.synth import generate

    data = generate(tmp_path / "data", train=0, val=2, imgsz=320, seed=0) / "data.yaml"
    out = ok(run_script("ultralytics_agreement.py", "--ultralytics-python", python, "--data", str(data),
                        tmp_path=tmp_path, timeout=600))
    assert "(b) Ultralytics val, its own AP" in out


def test_report_screenshot_runs(tmp_path: Path) -> None:
    if load_script("report_screenshot.py").find_chromium() is None:
        pytest.skip("needs headless Chromium (a system package: apt-get install -y chromium)")
    png = tmp_path / "shot.png"
    ok(run_script("report_screenshot.py", "--out", str(png), "--backends", "onnxruntime", "--precisions", "fp32",
                  "--min-iterations", "5", "--max-eval-images", "2", tmp_path=tmp_path, timeout=300))
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size < 1_000_000


def test_qat_accuracy(tmp_path: Path) -> None:
    """fp32 / PTQ / QAT rows and the recovery line, from a tiny checkpoint trained for one epoch."""
    pytest.importorskip("torch", reason="the trainer needs torch (pip install 'edgebench[train]')")
    pytest.importorskip("lightning", reason="the trainer needs lightning (pip install 'edgebench[train]')")
    pytest.importorskip("nncf", reason="QAT needs NNCF (pip install 'edgebench[train]')")
    from test_trainer_export import NAMES, save_checkpoint
    from test_trainer_fixtures import make_yolo_dataset

    ckpt = tmp_path / "tiny.ckpt"
    save_checkpoint(ckpt)
    data = make_yolo_dataset(tmp_path / "ds", train=4, val=4, names=NAMES)
    doc = tmp_path / "q.md"
    doc.write_text("a\n<!-- int8-bench:qat -->\nold\n<!-- int8-bench:qat -->\nb\n")
    out = ok(run_script("qat_accuracy.py", "--model", str(ckpt), "--data", str(data), "--target", "onnxruntime",
                        "--epochs", "1", "--batch", "4", "--calib-images", "4", "--run", str(tmp_path / "run"),
                        "--write", str(doc), tmp_path=tmp_path, timeout=400))
    for label in ("fp32", "int8-ptq", "int8-qat"):
        assert re.search(rf"\| {label}[^|]*\| [0-9.]+ \|", out), out
    assert "QAT recovered" in out or "PTQ lost nothing" in out
    assert "old" not in doc.read_text() and "int8-qat" in doc.read_text()
    drift = ok(run_script("qat_layer_drift.py", "--run", str(tmp_path / "run"), tmp_path=tmp_path, timeout=200))
    found = re.search(r"(\d+) of (\d+) activation quantizers found", drift)
    assert found and found.group(1) == found.group(2) != "0", drift
    assert re.search(r"\| x__0\.0 \| 0\.00% \| 0\.0 \|", drift), drift  # the input quantizer: identical
