"""TensorRT INT8 through NVIDIA ModelOpt (calibration.modelopt), run in ModelOpt's own interpreter.

Without that interpreter (CI): the refusals (a method ModelOpt lacks, no interpreter, one without ModelOpt, a
child that fails or hangs) and the wiring (`quantize_to` for tensorrt wants a .onnx). With it
(EDGEBENCH_MODELOPT_PYTHON or `make modelopt-venv`): on the bundled model with 16 calibration images, every Conv
outside the decode tail reads its activation through a DequantizeLinear, nothing in the tail does, zero points
are 0 and weight scales per output channel; export's parity runs on ONNX Runtime and says it is a proxy; a
second export is a cache hit."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from calibration import modelopt
from calibration.cache import CalibrationCache
from calibration.dataset import CalibrationSet, build_calibration_set
from calibration.exclusions import resolve_exclusion
from calibration.methods import Method
from calibration.onnx_prep import float32_onnx
from calibration.request import QuantizeRequest, QuantizeResult
from converters.int8 import Int8Options, quantize_to
from edge_sdk.synth import generate
from runtimes.capabilities import quantizer_targets
from runtimes.errors import BackendUnavailableError, CalibrationError, ModelLoadError

BUNDLED = Path(__file__).resolve().parents[1] / "edge_sdk" / "assets" / "default_model.onnx"
SKIP_REASON = ("needs NVIDIA ModelOpt in its own interpreter (make modelopt-venv, or set "
               f"{modelopt.PYTHON_ENV} to a Python with nvidia-modelopt[onnx])")


def _no_calib() -> CalibrationSet:
    return CalibrationSet(files=(), sha256="0" * 64, input_hw=(32, 32))


def _req(tmp: Path, method: Method = Method.MINMAX) -> QuantizeRequest:
    return QuantizeRequest(source=tmp / "m.onnx", artifact=tmp / "m.onnx", out=tmp / "q.onnx", calib=_no_calib(),
                           method=method)


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


# --- without ModelOpt ------------------------------------------------------------------------------------------

def test_tensorrt_has_a_quantizer() -> None:
    assert "tensorrt" in quantizer_targets()


@pytest.mark.parametrize("method", [Method.PERCENTILE, Method.MOVING_AVERAGE, Method.DISTRIBUTION])
def test_a_method_modelopt_lacks_is_refused_in_one_line(tmp_path: Path, method: Method,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(modelopt.PYTHON_ENV, str(tmp_path / "absent"))  # refused before the interpreter is looked at
    with pytest.raises(CalibrationError) as err:
        modelopt.quantize(_req(tmp_path, method))
    assert _one_line(err.value) == (f"the TensorRT quantizer (ModelOpt) has no '{method}' calibration; it supports "
                                    "minmax, entropy")
    assert modelopt.modelopt_method(Method.MINMAX) == "max" and modelopt.modelopt_method(Method.ENTROPY) == "entropy"


def test_missing_interpreter_says_how_to_make_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(modelopt.PYTHON_ENV, raising=False)
    monkeypatch.setenv("EDGEBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(BackendUnavailableError) as err:
        modelopt.quantize(_req(tmp_path))
    text = _one_line(err.value)
    assert "make modelopt-venv" in text and modelopt.PYTHON_ENV in text
    assert str(tmp_path / "cache" / "modelopt-venv" / "bin" / "python") in text
    monkeypatch.setenv(modelopt.PYTHON_ENV, str(tmp_path / "nope" / "python"))
    with pytest.raises(BackendUnavailableError, match="make modelopt-venv") as err:
        modelopt.modelopt_python()
    assert f"{modelopt.PYTHON_ENV}={tmp_path / 'nope' / 'python'}" in _one_line(err.value)
    assert modelopt.missing() == str(err.value)
    monkeypatch.setenv(modelopt.PYTHON_ENV, sys.executable)
    assert modelopt.missing() is None  # an interpreter is there (whether it has ModelOpt is found when it runs)


def test_an_interpreter_without_modelopt_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Our own interpreter has no ModelOpt (it must never get it): the version probe and the side script both
    say so, as BackendUnavailableError with the hint."""
    monkeypatch.setenv(modelopt.PYTHON_ENV, sys.executable)
    with pytest.raises(BackendUnavailableError, match="not installed in .*make modelopt-venv") as err:
        modelopt.quantize(_req(tmp_path))
    _one_line(err.value)
    data = generate(tmp_path / "data", train=1, val=0, imgsz=64, seed=3) / "data.yaml"
    calib = build_calibration_set(data, 64, limit=1)
    with pytest.raises(BackendUnavailableError, match="ModelOpt's ONNX quantizer is not importable here") as err:
        modelopt.run_side(Path(sys.executable), BUNDLED, calib, "max", (), tmp_path / "q.onnx")
    _one_line(err.value)


def _fake_python(tmp: Path, body: str) -> Path:
    path = tmp / "python"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def one_image(tmp_path: Path) -> CalibrationSet:
    data = generate(tmp_path / "data", train=1, val=0, imgsz=64, seed=3) / "data.yaml"
    return build_calibration_set(data, 64, limit=1)


def test_a_failing_child_gives_its_stderr_tail(tmp_path: Path, one_image: CalibrationSet) -> None:
    python = _fake_python(tmp_path, "echo 'line one' >&2\necho 'ValueError: bad graph' >&2\nexit 1")
    with pytest.raises(CalibrationError) as err:
        modelopt.run_side(python, BUNDLED, one_image, "max", (), tmp_path / "q.onnx")
    text = _one_line(err.value)
    assert "failed (exit 1): line one | ValueError: bad graph" in text
    assert not (tmp_path / "q.onnx").exists()


def test_a_hanging_child_is_stopped(tmp_path: Path, one_image: CalibrationSet) -> None:
    python = _fake_python(tmp_path, "exec sleep 30")
    with pytest.raises(CalibrationError, match=r"no result after 1 s \(stopped\)") as err:
        modelopt.run_side(python, BUNDLED, one_image, "max", (), tmp_path / "q.onnx", timeout=1)
    _one_line(err.value)


def test_the_calibration_tensors_are_the_preprocessed_images(one_image: CalibrationSet, tmp_path: Path) -> None:
    path = modelopt.write_tensors(one_image, tmp_path / "c.npy")
    stack = np.load(path)
    assert stack.shape == (1, 3, 64, 64) and stack.dtype == np.float32
    np.testing.assert_array_equal(stack[0], next(one_image.arrays())[0])


def test_exclusions_are_exact_names() -> None:
    """ModelOpt matches nodes_to_exclude as prefix regexes: ours are escaped and anchored."""
    import re

    from calibration.modelopt_side import exact_patterns

    (pattern,) = exact_patterns(["/head/Concat"])
    assert re.match(pattern, "/head/Concat") and not re.match(pattern, "/head/Concat_1")
    (dotted,) = exact_patterns(["/model.22/Mul"])
    assert not re.match(dotted, "/model_22/Mul")


def test_tensorrt_int8_artifact_is_an_onnx(small_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """quantize_to for tensorrt writes the Q/DQ .onnx a TensorRT builder consumes (not .engine), and a missing
    ModelOpt interpreter is the one-line BackendUnavailableError before anything is written."""
    data = generate(tmp_path / "data", train=2, val=0, imgsz=128, seed=4) / "data.yaml"
    opts = Int8Options(calib=str(data), calib_images=2, cache=False)
    with pytest.raises(ModelLoadError, match="a tensorrt int8 artifact ends in .onnx"):
        quantize_to(small_model, "tensorrt", tmp_path / "m.engine", opts)
    monkeypatch.setenv(modelopt.PYTHON_ENV, str(tmp_path / "absent"))
    with pytest.raises(BackendUnavailableError, match="make modelopt-venv"):
        quantize_to(small_model, "tensorrt", tmp_path / "out" / "m.int8.onnx", opts)
    assert not list((tmp_path / "out").glob("*.onnx"))


# --- with ModelOpt ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def modelopt_python() -> Path:
    try:
        python = modelopt.modelopt_python()
        modelopt.side_versions(python)
    except BackendUnavailableError:
        pytest.skip(SKIP_REASON)
    return python


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("modelopt")


@pytest.fixture(scope="module")
def data(work: Path) -> Path:
    return generate(work / "data", train=16, val=8, imgsz=320, seed=7) / "data.yaml"


@pytest.fixture(scope="module")
def source(work: Path) -> Path:
    return float32_onnx(BUNDLED, work / "f32.onnx")


@pytest.fixture(scope="module")
def int8(modelopt_python: Path, source: Path, data: Path, work: Path) -> tuple[QuantizeRequest, QuantizeResult]:
    req = QuantizeRequest(source=source, artifact=source, out=work / "int8" / "model.onnx",
                          calib=build_calibration_set(data, 320, limit=16), method=Method.MINMAX,
                          exclude=resolve_exclusion("auto", onnx.load(str(source))).nodes,
                          cache=CalibrationCache(work / "cache"))
    return req, modelopt.quantize(req)


def _dq_fed(graph: onnx.GraphProto) -> set[str]:
    """Nodes (other than Q/DQ) that read some input through a DequantizeLinear."""
    dq = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
            and any(i in dq for i in n.input)}


def test_qdq_before_every_conv_outside_the_exclusion(int8: tuple[QuantizeRequest, QuantizeResult]) -> None:
    req, result = int8
    assert result.path == req.out and req.out.is_file() and not result.cache_hit
    assert result.quantizer.startswith("nvidia-modelopt 0.") and "TensorRT explicit quantization" in result.scheme
    assert modelopt.PROXY_NOTE in result.notes and result.excluded == req.exclude and result.float_ops == ()
    graph = onnx.load(str(req.out)).graph
    fed, kept = _dq_fed(graph), set(req.exclude)
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    assert {"/head/dfl/Conv", "/head/Concat_9"} <= kept and len(convs) == 64
    assert [c for c in convs if c not in kept and c not in fed] == []
    assert sorted(fed & kept) == []  # nothing kept in float reads a DequantizeLinear


def test_symmetric_activations_and_per_channel_weights(int8: tuple[QuantizeRequest, QuantizeResult]) -> None:
    req, _ = int8
    graph = onnx.load(str(req.out)).graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    dqs = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    zero_points = [init[n.input[2]] for n in dqs if len(n.input) > 2]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    weight_scales = {n.output[0]: init[n.input[1]] for n in dqs
                     if any(init.get(q.input[0]) is not None and q.output[0] == n.input[0]
                            for q in graph.node if q.op_type == "QuantizeLinear")}
    quantized = [n for n in graph.node if n.op_type == "Conv" and n.name not in req.exclude]
    conv_weights = [n.input[1] for n in quantized if n.input[1] in weight_scales]
    assert len(conv_weights) == len(quantized) > 50
    assert all(weight_scales[w].ndim == 1 and weight_scales[w].size > 1 for w in conv_weights)


def test_export_checks_parity_on_the_ort_proxy_and_hits_the_cache(int8: tuple[QuantizeRequest, QuantizeResult],
                                                                 data: Path, work: Path) -> None:
    from converters.export import export

    req, _ = int8
    opts = Int8Options(calib=str(data), calib_images=16, method="minmax", cache_dir=str(work / "cache"))
    result = export(BUNDLED, "tensorrt", work / "exp" / "m.int8.onnx", "int8", int8=opts)
    assert result.quantization is not None and result.quantization["cache_hit"]
    assert result.parity is not None and result.parity.passed, result.parity.summary()
    assert modelopt.PROXY_NOTE in (result.parity.note or "")
    side = json.loads((work / "exp" / "m.int8.onnx.json").read_text())
    assert side["precision"] == "int8" and modelopt.PROXY_NOTE in side["int8"]["notes"]
    assert os.path.getsize(work / "exp" / "m.int8.onnx") > 1_000_000
