"""The torch reference backend on the bundled model's checkpoint route: the bundled ONNX's trained weights are
lifted into one of our checkpoints, which runs on torch and, exported again by our exporter, on ONNX Runtime;
the two agree within float rounding. Also: the backend conformance template, TorchScript and torch.export
archives with their metadata, typed errors, and no torch import until a model loads."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# as the backend does when it is the first to import torch (runtimes.torch_backend.passive_openmp): without it,
# OpenMP's spinning workers make this file 5x slower on a busy 2-core machine
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
torch = pytest.importorskip("torch", reason="the torch backend needs torch (pip install 'edgebench[train]')")

from conformance import BackendConformance, conformance_frames  # noqa: E402
from conftest import matched_same_class  # noqa: E402

from converters.parity import check_parity, parity_inputs  # noqa: E402
from edge_sdk.detector import Detector  # noqa: E402
from runtimes import load  # noqa: E402
from runtimes.errors import HardwareUnavailableError, InputError, ModelLoadError  # noqa: E402
from runtimes.torch_backend import EXTRA_FILE  # noqa: E402
from trainer.lift import lift_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "edge_sdk" / "assets" / "default_model.onnx"


def _lift_bundled(onnx_path: Path, out_dir: Path) -> Path:
    return lift_checkpoint(onnx_path, out_dir / "default_model.ckpt")


@pytest.fixture(scope="session")
def default_onnx() -> Path:
    """The bundled model (the conformance template's reference)."""
    return BUNDLED


@pytest.fixture(scope="module")
def bundled_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _lift_bundled(BUNDLED, tmp_path_factory.mktemp("torch"))


class TestTorch(BackendConformance):
    """The lifted checkpoint on torch against the bundled ONNX on ONNX Runtime (tests/conformance.py)."""

    backend = "torch"
    convert = staticmethod(_lift_bundled)


def test_checkpoint_route_matches_onnxruntime(bundled_ckpt: Path, tmp_path: Path) -> None:
    """checkpoint -> our ONNX export -> ONNX Runtime against the checkpoint on torch: the same raw outputs within
    float rounding, the same detections, the same metadata."""
    from trainer.export import export_onnx

    onnx_path = export_onnx(bundled_ckpt, tmp_path / "exported.onnx")
    result = check_parity(onnx_path, bundled_ckpt, backend="torch", images=4)
    assert result.passed and result.precision_used == "fp32", result.summary()
    assert result.ref_detections > 10 and result.matched == result.ref_detections
    with load(onnx_path, "onnxruntime") as ort_rt, load(bundled_ckpt) as torch_rt:
        assert torch_rt.name == "torch" and torch_rt.outputs[0].shape == ort_rt.outputs[0].shape == (1, 14, 2100)
        assert torch_rt.metadata()["edgebench"] == ort_rt.metadata()["edgebench"]  # names, sizes, source hash
        for x in parity_inputs((320, 320), 2, seed=3):
            ref, got = ort_rt.infer(x)[0], torch_rt.infer(x)[0]
            assert np.abs(ref[:, :4] - got[:, :4]).max() < 0.01  # pixels, of 320
            assert np.abs(ref[:, 4:] - got[:, 4:]).max() < 1e-4
    with Detector(onnx_path) as ref_det, Detector(bundled_ckpt) as det:
        for frame in conformance_frames()[:2]:
            ref, got = ref_det(frame), det(frame)
            r, g = matched_same_class(ref, got)
            assert len(ref) > 0 and len(r) == len(ref) == len(got)
            assert np.abs(ref.xyxy[r] - got.xyxy[g]).max() < 0.01


def _trainer_model(ckpt: Path) -> tuple[torch.nn.Module, dict[str, str]]:
    from trainer.checkpoint import load_detector
    from trainer.export import model_meta

    loaded = load_detector(ckpt)
    return loaded.model.eval(), model_meta(loaded, loaded.imgsz).to_props()


def test_torchscript_and_exported_programs_run_with_their_metadata(bundled_ckpt: Path, tmp_path: Path) -> None:
    model, props = _trainer_model(bundled_ckpt)
    x = torch.from_numpy(parity_inputs((320, 320), 1)[0])
    with torch.no_grad():
        expected = model(x).numpy()
        scripted = torch.jit.trace(model, x, check_trace=False)
    torch.jit.save(scripted, str(tmp_path / "m.pt"), _extra_files={EXTRA_FILE: json.dumps(props)})
    program = torch.export.export(model, (x,))
    torch.export.save(program, str(tmp_path / "m.pt2"), extra_files={EXTRA_FILE: json.dumps(props)})
    for name in ("m.pt", "m.pt2"):
        with load(tmp_path / name) as rt:
            assert rt.inputs[0].shape == (1, 3, 320, 320) and rt.precision_used == "fp32"
            assert rt.metadata()["names"] == props["names"]
            np.testing.assert_allclose(rt.infer(x.numpy())[0], expected, rtol=1e-4, atol=1e-3)
    torch.jit.save(scripted, str(tmp_path / "bare.pt"))
    with pytest.raises(ModelLoadError, match="has no 'imgsz' metadata"):
        load(tmp_path / "bare.pt")
    (tmp_path / "bare.pt.json").write_text(json.dumps(props))  # the sidecar serves as well
    with Detector(tmp_path / "bare.pt") as det:
        assert det.input_size == (320, 320) and det.names[0] == "circle"


def test_options_and_errors_are_typed(bundled_ckpt: Path, tmp_path: Path) -> None:
    with load(bundled_ckpt, extra={"imgsz": 256}) as rt:
        assert rt.inputs[0].shape == (1, 3, 256, 256)
        assert rt.outputs[0].shape == (1, 14, 32 * 32 + 16 * 16 + 8 * 8)
        assert json.loads(rt.metadata()["edgebench"])["imgsz"] == [256, 256]
    with pytest.raises(InputError, match="multiple of the model stride 32"):
        load(bundled_ckpt, extra={"imgsz": 100})
    with pytest.raises(InputError, match="'cpu' or 'gpu'"):
        load(bundled_ckpt, device="npu")
    if torch.cuda.is_available():
        with load(bundled_ckpt, device="gpu") as rt:
            assert rt.infer(np.zeros((1, 3, 320, 320), np.float32))[0].shape == (1, 14, 2100)
    else:
        with pytest.raises(HardwareUnavailableError, match="torch sees no CUDA GPU"):
            load(bundled_ckpt, device="gpu")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="not a PyTorch zip archive"):
        load(junk)
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    with pytest.raises(ModelLoadError, match="cannot load TorchScript"):
        load(tmp_path / "junk.pt")


def test_importing_the_backend_imports_no_torch_and_loading_asks_for_passive_waiting() -> None:
    code = ("import os, sys\n"
            "os.environ.pop('OMP_WAIT_POLICY', None)\n"
            "import edge_sdk, runtimes.torch_backend as tb\n"
            "assert 'torch' not in sys.modules and 'trainer' not in sys.modules\n"
            "assert tb.passive_openmp() and os.environ['OMP_WAIT_POLICY'] == 'PASSIVE'\n"
            "os.environ['OMP_WAIT_POLICY'] = 'ACTIVE'\n"
            "assert not tb.passive_openmp()  # the user's own setting wins\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
