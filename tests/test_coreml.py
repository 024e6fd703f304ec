"""Core ML on a host without Core ML: the bundled model converts to valid ML Programs (fp16 and fp32) whose spec,
read with coremltools' own API, has the expected inputs, outputs, metadata and compute precision; a checkpoint
converts through `edgebench export` with weight compression; prediction is refused off macOS in one line, and
the macOS runtime path runs with coremltools' MLModel stood in by ONNX Runtime (Core ML itself: macOS only)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# before torch loads (coremltools imports it): spinning OpenMP workers slow this file down (see test_torch_backend)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ct = pytest.importorskip("coremltools", reason="Core ML conversion needs coremltools "
                                               "(pip install 'edgebench[coreml-export]')")
torch = pytest.importorskip("torch", reason="Core ML conversion needs torch (pip install 'edgebench[coreml-export]')")

from conftest import assert_one_line_error, run_cli  # noqa: E402
from coremltools.proto import MIL_pb2  # noqa: E402

from converters.coreml import CoremlOptions, inspect_mlpackage, to_coreml  # noqa: E402
from edge_sdk.detector import Detector  # noqa: E402
from edge_sdk.meta import ModelMeta  # noqa: E402
from runtimes import load  # noqa: E402
from runtimes.errors import EdgebenchError, HardwareUnavailableError, InputError  # noqa: E402
from runtimes.precision import PrecisionUnsupportedError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "edge_sdk" / "assets" / "default_model.onnx"
ON_MAC = sys.platform == "darwin"


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The bundled model as ML Programs: fp16 captured by torch.export, fp32 by a TorchScript trace."""
    out = tmp_path_factory.mktemp("coreml")
    return {"fp16": to_coreml(BUNDLED, out / "m16.mlpackage", "fp16"),
            "fp32": to_coreml(BUNDLED, out / "m32.mlpackage", "fp32", CoremlOptions(capture="trace"))}


def _main_ops(spec: Any) -> list[Any]:
    main = spec.mlProgram.functions["main"]
    return list(main.block_specializations[main.opset].operations)


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_bundled_model_converts_to_a_valid_ml_program(packages: dict[str, Path], precision: str) -> None:
    path = packages[precision]
    ct.models.MLModel(str(path), skip_model_load=True)  # the package's manifest, spec and weights file load
    spec = ct.utils.load_spec(str(path))
    assert spec.WhichOneof("Type") == "mlProgram" and spec.specificationVersion >= 7  # iOS16
    (inp,), (out,) = spec.description.input, spec.description.output
    assert inp.name == "images" and list(inp.type.multiArrayType.shape) == [1, 3, 320, 320]
    assert out.name == "output0" and list(out.type.multiArrayType.shape) == [1, 14, 2100]
    for feature in (inp, out):  # float32 in and out whatever the compute precision: apps feed what they always do
        assert feature.type.multiArrayType.dataType == ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    convs = [op for op in _main_ops(spec) if op.type == "conv"]
    assert len(convs) == 64
    want = "FLOAT16" if precision == "fp16" else "FLOAT32"
    assert {MIL_pb2.DataType.Name(op.outputs[0].type.tensorType.dataType) for op in convs} == {want}
    user = dict(spec.description.metadata.userDefined)
    meta, source = ModelMeta.from_props(user), ModelMeta.from_props(_onnx_props(BUNDLED))
    assert meta.names == source.names and len(meta.names) == 10 and meta.imgsz == (320, 320)
    assert meta.layout == "yolov8" and meta.stride == 32 and meta.source_hash == source.source_hash
    assert meta.precision == precision and meta.extra["target"] == "coreml"
    assert meta.extra["converted_from"] == "default_model.onnx" and user["edgebench.compute_units"] == "ALL"
    side = json.loads(Path(f"{path}.json").read_text())
    assert side["format"] == "coreml" and side["precision"] == precision


def _onnx_props(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def test_inspect_reports_size_ops_and_precision_without_running(packages: dict[str, Path]) -> None:
    half, full = inspect_mlpackage(packages["fp16"]), inspect_mlpackage(packages["fp32"])
    assert 0.4 < half["size_bytes"] / full["size_bytes"] < 0.6  # fp16 weights: half the package
    assert half["compute_precision"] == "fp16" and full["compute_precision"] == "fp32"
    assert half["ops"]["conv"] == full["ops"]["conv"] == half["compute_ops"] == 64
    assert half["ops"]["silu"] == 57 and half["weight_compression"] == {}
    assert half["inputs"] == [{"name": "images", "shape": [1, 3, 320, 320], "dtype": "float32"}]
    if not ON_MAC:
        assert half["prediction"].startswith("not measurable on this host: CoreML prediction needs macOS")


def test_prediction_needs_macos_and_says_so_in_one_line(packages: dict[str, Path]) -> None:
    if ON_MAC:
        with load(packages["fp32"]) as rt:
            assert rt.precision_used == "fp32"
        return
    for opening in (lambda: load(packages["fp16"]), lambda: Detector(packages["fp16"])):
        with pytest.raises(HardwareUnavailableError, match=r"^CoreML prediction needs macOS \(this host runs") as exc:
            opening()
        assert "\n" not in str(exc.value)
    proc = run_cli("predict", "--model", str(packages["fp16"]), "--source", str(ROOT / "README.md"), "--out", "")
    assert_one_line_error(proc, "CoreML prediction needs macOS")


def _tiny_checkpoint(path: Path) -> Path:
    from trainer.checkpoint import CKPT_KEY, checkpoint_info
    from trainer.model import build_model

    torch.manual_seed(0)
    model = build_model("n", 3).eval()
    state = {f"ema.module.{k}": v for k, v in model.state_dict().items()}
    torch.save({CKPT_KEY: checkpoint_info(model.config, {0: "a", 1: "b", 2: "c"}, 64), "state_dict": state}, path)
    return path


def test_export_cli_converts_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The checkpoint route: the trainer's detector captured as it is, the units stored; parity is run where
    Core ML predicts, and said to be unchecked elsewhere. (In this process: coremltools is loaded already.)"""
    from bench.cli import main

    ckpt = _tiny_checkpoint(tmp_path / "tiny.ckpt")
    out = tmp_path / "tiny.mlpackage"
    try:
        main(["export", "--model", str(ckpt), "--to", "coreml", "-o", str(out), "--precision", "fp16",
              "--coreml-units", "cpu_and_ne", "--no-simplify"])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    proc = capsys.readouterr()
    assert code == 0, proc.err
    assert f"exported {out}" in proc.out
    side = json.loads(Path(f"{out}.json").read_text())
    info = inspect_mlpackage(out)
    assert info["compute_precision"] == "fp16" and info["outputs"][0]["shape"] == [1, 7, 84]
    assert info["weight_compression"] == {} and info["ops"]["conv"] == 64
    assert info["metadata"]["edgebench.compute_units"] == "CPU_AND_NE"
    meta = ModelMeta.from_props(info["metadata"])
    assert meta.names == {0: "a", 1: "b", 2: "c"} and meta.extra["weights_storage"] == "fp16"
    assert meta.extra["converted_from"] == "tiny.ckpt" and meta.source_hash
    if ON_MAC:
        assert "parity PASS" in proc.out
    else:
        assert "note: parity not checked: CoreML prediction needs macOS" in proc.err
        assert side["parity_skipped"].startswith("CoreML prediction needs macOS") and "parity" not in side


@pytest.mark.parametrize("weights, op", [("int8", "constexpr_affine_dequantize"),
                                         ("palette4", "constexpr_lut_to_dense")])
def test_any_torch_module_converts_with_compressed_weights(tmp_path: Path, weights: str, op: str) -> None:
    from converters.coreml import convert_module

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 96, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(96, 8, 1))
    plain = convert_module(module, [1, 3, 32, 32], tmp_path / "plain.mlpackage", names=("x", ["y"]))
    small = convert_module(module, [1, 3, 32, 32], tmp_path / "small.mlpackage", "fp32", source="toy",
                           options=CoremlOptions(weights=weights), names=("x", ["y"]))
    info = inspect_mlpackage(small)
    assert info["weight_compression"] == {op: 1}  # the 3x3 conv; the 1x1 has fewer than coremltools' 2048 weights
    assert info["compute_precision"] == "fp32" and info["outputs"] == [{"name": "y", "shape": [1, 8, 32, 32],
                                                                       "dtype": "float32"}]
    assert info["size_bytes"] < inspect_mlpackage(plain)["size_bytes"]
    assert json.loads(Path(f"{small}.json").read_text())["weights_storage"] == weights


def test_options_are_checked_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="compute units must be one of ALL, CPU_AND_NE, CPU_AND_GPU, CPU_ONLY"):
        CoremlOptions(compute_units="GPU")
    with pytest.raises(InputError, match="weight compression must be one of int8, palette8"):
        CoremlOptions(weights="int4")
    with pytest.raises(InputError, match="compressed weights need deployment target iOS16"):
        CoremlOptions(weights="int8", deployment_target="iOS15")
    with pytest.raises(EdgebenchError, match="must be a .mlpackage path"):
        to_coreml(BUNDLED, tmp_path / "m.mlmodel")
    with pytest.raises(PrecisionUnsupportedError, match="the coreml converter writes fp32, fp16, not bf16"):
        to_coreml(BUNDLED, tmp_path / "m.mlpackage", "bf16")
    assert not list(tmp_path.iterdir())


class _StandIn:
    """coremltools.models.MLModel on a host without Core ML: predictions from ONNX Runtime on the bundled model."""

    units: list[Any] = []

    def __init__(self, path: str, compute_units: Any = None) -> None:
        import onnxruntime as ort

        self.units.append(compute_units)
        self._sess = ort.InferenceSession(str(BUNDLED), providers=["CPUExecutionProvider"])

    def predict(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert set(feed) == {"images"} and feed["images"].dtype == np.float32
        return {"output0": self._sess.run(None, feed)[0].astype(np.float64)}


def test_macos_runtime_path_with_mlmodel_stood_in(packages: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything of the macOS path but Core ML's own prediction: specs, metadata, units, precision, decoding."""
    import runtimes.coreml_backend as backend

    monkeypatch.setattr(backend, "prediction_unavailable", lambda: None)
    monkeypatch.setattr(ct.models, "MLModel", _StandIn)
    _StandIn.units.clear()
    with Detector(packages["fp32"]) as det, Detector(BUNDLED) as ref_det:
        assert det.runtime.name == "coreml" and det.precision_used == "fp32" and det.names == ref_det.names
        frame = (np.random.default_rng(0).random((240, 320, 3)) * 255).astype(np.uint8)
        got, ref = det(frame), ref_det(frame)
        np.testing.assert_allclose(got.xyxy, ref.xyxy, atol=1e-3)
    with load(packages["fp16"], extra={"compute_units": "cpu_only"}) as rt:
        assert rt.precision_used == "fp16" and rt.inputs[0].shape == (1, 3, 320, 320)
        assert rt.engine_versions()["coremltools"] == ct.__version__
    assert _StandIn.units == [ct.ComputeUnit.ALL, ct.ComputeUnit.CPU_ONLY]
    with pytest.raises(PrecisionUnsupportedError, match="coreml cannot run this model at fp32; it runs fp16"):
        load(packages["fp16"], precision="fp32")
    with pytest.raises(InputError, match="compute_units must be one of"):
        load(packages["fp16"], extra={"compute_units": "NPU"})


@pytest.mark.skipif(not ON_MAC, reason="CoreML prediction needs macOS")
def test_core_ml_prediction_matches_onnxruntime_on_macos(tmp_path: Path) -> None:
    """Unverified here (no Mac): the export's own parity check, Core ML against ONNX Runtime fp32."""
    from converters.export import export

    result = export(BUNDLED, "coreml", tmp_path / "m.mlpackage", "fp16", parity_images=4)
    assert result.parity is not None and result.parity.passed, result.parity


def test_importing_the_backend_and_converter_imports_no_engine() -> None:
    code = ("import sys, runtimes.coreml_backend, converters.coreml, bench.commands.export_cmd\n"
            "engines = {'coremltools', 'torch'} & set(sys.modules)\n"
            "assert not engines, engines\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
