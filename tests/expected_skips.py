"""The skips `make test` (every extra installed) may show, and the pytest hooks that fail a run on any other.

tests/conftest.py imports the hooks below, so every run ends with an "expected skips:" list (each skip
with its reason) and fails (exit status 1) when a test was skipped that this table does not expect:
a missing extra, a broken import or a fixture that gave up must not pass as "1 skipped". Developers
without some extras may set EDGEBENCH_ALLOW_SKIPS=1 to list unexpected skips without failing; CI does not.

A pattern is a test node id as pytest prints it (relative to the checkout), or a prefix of one
ending in "*"; the reason is a substring the skip's message must contain.
"""
from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import dataclass

import pytest

ALLOW_ENV = "EDGEBENCH_ALLOW_SKIPS"
SMOKE = "tests/test_benchmarks_smoke.py::"

#: node id pattern -> substring of the skip reason
EXPECTED_SKIPS: dict[str, str] = {
    # meant for hosts where ncnn is missing or not implemented; with edgebench[ncnn] there is nothing to check
    "tests/test_profiles.py::test_edge_profiles_not_runnable_here[rpi5-ncnn]": "ncnn is implemented and installed here",
    # host hardware, not extras: the x86-cpu profile check on other CPUs, OpenVINO bf16 on CPUs without it
    "tests/test_profiles.py::test_this_host_is_x86_cpu": "x86-cpu describes x86-64 hosts",
    "tests/test_openvino_backend.py::test_precision_used_is_what_the_compiled_model_runs": "no bf16 support",
    # Core ML predicts on macOS only (conversion and the package checks run everywhere)
    "tests/test_coreml.py::test_core_ml_prediction_matches_onnxruntime_on_macos": "CoreML prediction needs macOS",
    # tools that never go into our venv: Ultralytics lives in a scratch venv, Chromium is a system package
    SMOKE + "test_peer_train_ultralytics_runs_both_sides": "EDGEBENCH_ULTRALYTICS_PYTHON",
    SMOKE + "test_ultralytics_agreement_runs": "EDGEBENCH_ULTRALYTICS_PYTHON",
    SMOKE + "test_report_screenshot_runs": "headless Chromium",
    # TensorRT and the GPU it runs on: no wheel reaches these hosts and there is no GPU (the builder and runtime
    # code paths run against stand-ins in the other tests of the file)
    "tests/test_tensorrt.py::test_engine_build_and_run_on_a_real_gpu": "needs TensorRT 10 and an NVIDIA GPU",
    "tests/test_tensorrt.py::test_pinned_buffers_stream_and_events_on_a_real_gpu":
        "needs cuda-python and an NVIDIA GPU",
    # the real emulated arm64 run (qemu, chroot, minutes): root only, and only with EDGEBENCH_ARM64=1 (make test-arm64)
    "tests/test_emulate.py::test_real_emulated_ncnn_run_on_arm64": "set EDGEBENCH_ARM64=1 (make test-arm64)",
    # NVIDIA ModelOpt pins its own onnx/onnxruntime-gpu: it lives in its own venv (make modelopt-venv)
    "tests/test_calib_modelopt.py::*": "needs NVIDIA ModelOpt in its own interpreter",
}


@dataclass(frozen=True)
class Skip:
    nodeid: str
    reason: str


_seen: list[Skip] = []


def skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    """The message of a skip report, without pytest's "Skipped: " prefix."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


def is_expected(skip: Skip, table: dict[str, str] | None = None) -> bool:
    """Whether some entry of `table` (default EXPECTED_SKIPS) matches the skip's node id and reason."""
    for pattern, reason in (EXPECTED_SKIPS if table is None else table).items():
        id_ok = skip.nodeid.startswith(pattern[:-1]) if pattern.endswith("*") else skip.nodeid == pattern
        if id_ok and reason in skip.reason:
            return True
    return False


def _record(report: pytest.CollectReport | pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _seen.append(Skip(report.nodeid, skip_reason(report)))


def pytest_sessionstart(session: pytest.Session) -> None:
    _seen.clear()


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _record(report)  # module-level skips (importorskip, allow_module_level)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _record(report)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the session on an unexpected skip, unless EDGEBENCH_ALLOW_SKIPS=1."""
    unexpected = [s for s in _seen if not is_expected(s)]
    clean = session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
    if unexpected and os.environ.get(ALLOW_ENV) != "1" and clean:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: after pytest's own short summary
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Generator[None, None, None]:
    """At the end of the report, list the expected skips with their reasons, then any unexpected one."""
    yield
    _summary(terminalreporter)


def _summary(tr: pytest.TerminalReporter) -> None:
    expected = [s for s in _seen if is_expected(s)]
    unexpected = [s for s in _seen if not is_expected(s)]
    tr.write_line("expected skips:" + ("" if expected else " none"))
    for s in expected:
        tr.write_line(f"  {s.nodeid}: {s.reason}")
    if not unexpected:
        return
    strict = os.environ.get(ALLOW_ENV) != "1"
    allowed = "" if strict else f", allowed by {ALLOW_ENV}=1"
    tr.write_line(f"unexpected skips (not in tests/expected_skips.py){allowed}:", red=strict, yellow=not strict,
                  bold=True)
    for s in unexpected:
        tr.write_line(f"  {s.nodeid}: {s.reason}", red=strict, yellow=not strict)
    if strict:
        tr.write_line(f"failing the run: add the skip to EXPECTED_SKIPS with its reason, install the extra, "
                      f"or set {ALLOW_ENV}=1 locally", red=True)
