"""The capability table is the one source of backend facts: a backend added as one record plus one runtime
class and one converter appears in env, in run planning and in export's choices, and runs."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.cli import main
from bench.measure.memory import file_size_mb
from bench.sweep.artifacts import ConfigSkipped, plan_artifact
from converters.export import export, targets
from edge_sdk import Detector
from runtimes import capabilities, registry
from runtimes.capabilities import BACKENDS, Capability, files_beside
from runtimes.precision import Precision

FAKE = Capability("fake", import_name="numpy", pip_package="numpy", extra=None, suffixes=(".fake",),
                  runtime="fake_backend:FakeRuntime", converter="fake_backend:to_fake",
                  runs=(Precision.FP32, Precision.INT8), writes=(Precision.FP32,), devices=("test host",))


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """`edgebench ARGS` in this process (so the registered backend is there): (exit code, stdout + stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture()
def fake() -> Iterator[Capability]:
    capabilities.register(FAKE)
    yield FAKE
    capabilities.unregister("fake")


def test_a_registered_backend_is_in_env(fake: Capability, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _cli(capsys, "env", "--json")
    assert code == 0, out
    row = json.loads(out)["backends"]["fake"]
    assert row["available"] and row["suffixes"] == [".fake"] and row["writes"] == ["fp32"]
    table = _cli(capsys, "env")[1]
    assert any(line.split()[:2] == ["fake", "yes"] for line in table.splitlines())


def test_a_registered_backend_is_planned_and_converted(fake: Capability, small_model: Path, tmp_path: Path) -> None:
    plan = plan_artifact(small_model, "fake", "fp32", "fp32", tmp_path)
    assert plan.target == "fake" and plan.artifact.suffix == ".fake" and plan.source == small_model
    with pytest.raises(ConfigSkipped, match="fake int8: this version has no INT8 quantizer for fake"):
        plan_artifact(small_model, "fake", "int8", "fp32", tmp_path)
    assert "fake" in targets()
    result = export(small_model, "fake", plan.artifact)
    assert result.parity is not None and result.parity.passed, result.parity
    assert registry.backend_for_path(plan.artifact) == "fake"
    with Detector(plan.artifact) as det:
        assert det.runtime.name == "fake" and det.precision_used is Precision.FP32


def test_export_cli_lists_a_registered_target(fake: Capability, small_model: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _cli(capsys, "export", "--model", str(small_model), "--to", "nope", "-o", "x")
    listed = {t.strip(" ,)\n") for t in out.split("available: ")[1].split(")")[0].split(",")}
    assert code == 2 and {"onnx", "openvino", "ncnn", "tflite", "coreml", "fake"} <= listed, out
    code, out = _cli(capsys, "export", "--model", str(small_model), "--to", "fake", "-o", str(tmp_path / "m.fake"))
    assert code == 0 and "parity PASS" in out, out


def test_unregistered_it_is_gone(small_model: Path) -> None:
    assert "fake" not in BACKENDS and "fake" not in targets()


def test_two_file_formats_come_from_the_table(tmp_path: Path) -> None:
    assert files_beside("m.xml") == [Path("m.bin")] and files_beside("m.param") == [Path("m.bin")]
    assert files_beside("m.onnx") == [] and files_beside("m.unknown") == []
    (tmp_path / "m.param").write_bytes(b"x" * 1024)
    (tmp_path / "m.bin").write_bytes(b"x" * 3 * 1024)
    assert file_size_mb(tmp_path / "m.param") == pytest.approx(4 / 1024)


def test_every_runnable_backend_names_its_runtime_and_suffix() -> None:
    for cap in BACKENDS.values():
        assert cap.suffixes and all(s.startswith(".") for s in cap.suffixes)
        assert set(cap.writes) <= set(cap.runs) and set(cap.hints) <= set(cap.runs), cap.name
        if cap.runtime:
            assert issubclass(cap.load_runtime_class(), registry.Runtime)
        if cap.converter:
            assert callable(cap.load_converter())
