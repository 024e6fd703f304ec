"""ncnn backend and ONNX -> ncnn converter (pnnx): outputs, fixed input size, precision switches, metadata, CLI."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("ncnn", reason="the ncnn backend needs ncnn (pip install 'edgebench[ncnn]')")

from conftest import NAMES, assert_one_line_error, matched_same_class, run_cli, with_our_metadata  # noqa: E402

from converters import ncnn as ncnn_converter  # noqa: E402
from converters.ncnn import pnnx_binary, to_ncnn  # noqa: E402
from converters.parity import check_parity, parity_inputs  # noqa: E402
from edge_sdk.detector import Detector  # noqa: E402
from edge_sdk.meta import ModelMeta  # noqa: E402
from edge_sdk.synth import CLASS_NAMES, render_image  # noqa: E402
from runtimes import (  # noqa: E402
    RuntimeOptions,
    availability,
    backend_for_path,
    load,
    ncnn_backend,  # noqa: E402
)
from runtimes.errors import BackendUnavailableError, EdgebenchError, InputError, ModelLoadError  # noqa: E402
from runtimes.ncnn_backend import unsupported_layers  # noqa: E402
from runtimes.ncnn_precision import switches_take_effect  # noqa: E402
from runtimes.precision import Precision, PrecisionUnsupportedError  # noqa: E402
from testkit.graph import GraphBuilder, float_input  # noqa: E402

try:
    pnnx_binary()
except BackendUnavailableError:
    pytest.skip("ONNX -> ncnn conversion needs pnnx (pip install 'edgebench[ncnn-export]')", allow_module_level=True)

IMGSZ = (128, 128)
#: ncnn fp32 vs ONNX Runtime on small_model, measured: boxes <= 0.0202 px (values up to ~760 px),
#: scores <= 3.8e-5, with 1 or 2 threads. The limits leave ~2.5x headroom.
BOX_ATOL_PX, SCORE_ATOL = 0.05, 1e-4


@pytest.fixture(scope="module")
def ncnn_model(small_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return to_ncnn(small_model, tmp_path_factory.mktemp("ncnn") / "small.param")


@pytest.fixture(scope="module")
def inputs() -> list[np.ndarray]:
    return parity_inputs(IMGSZ, n=2)


def outputs(path: Path, xs: list[np.ndarray], backend: str | None = None, **options) -> np.ndarray:
    with load(path, backend, threads=1, **options) as rt:
        return np.concatenate([rt.infer(x)[0] for x in xs])


def test_registry_maps_param_to_ncnn() -> None:
    assert backend_for_path("m.param") == "ncnn"
    assert availability("ncnn") == (True, "ok")


def test_converter_keeps_only_param_bin_and_sidecar(ncnn_model: Path) -> None:
    assert sorted(p.name for p in ncnn_model.parent.iterdir()) == ["small.bin", "small.param", "small.param.json"]
    side = json.loads((ncnn_model.parent / "small.param.json").read_text())
    assert side["input_names"] == ["in0"] and side["output_names"] == ["out0"]
    assert side["input_shape"] == [1, 3, *IMGSZ] and side["output_shapes"] == [[1, 8, 336]]


def test_fp32_outputs_match_onnxruntime(small_model: Path, ncnn_model: Path, inputs: list[np.ndarray]) -> None:
    ref = outputs(small_model, inputs, "onnxruntime")
    got = outputs(ncnn_model, inputs, precision="fp32")
    assert got.shape == ref.shape == (2, 4 + len(NAMES), 16 * 16 + 8 * 8 + 4 * 4)
    np.testing.assert_allclose(got[:, :4], ref[:, :4], rtol=0, atol=BOX_ATOL_PX)
    np.testing.assert_allclose(got[:, 4:], ref[:, 4:], rtol=0, atol=SCORE_ATOL)


def test_parity_check_passes_at_fp32(small_model: Path, ncnn_model: Path) -> None:
    res = check_parity(small_model, ncnn_model, options=RuntimeOptions(threads=1), images=2)
    assert res.passed, res.summary()
    assert res.precision_used == "fp32" and res.ref_detections > 0 and res.matched == res.ref_detections


@pytest.mark.parametrize("batch, hw", [(2, IMGSZ), (1, (160, 160)), (1, (128, 96))])
def test_other_batch_or_size_is_an_input_error(ncnn_model: Path, batch: int, hw: tuple[int, int]) -> None:
    with load(ncnn_model, threads=1) as rt, pytest.raises(InputError, match="in0"):
        rt.infer(np.zeros((batch, 3, *hw), np.float32))


def test_non_float32_input_is_an_input_error(ncnn_model: Path) -> None:
    with load(ncnn_model, threads=1) as rt, pytest.raises(InputError, match="float32"):
        rt.infer(np.zeros((1, 3, *IMGSZ), np.float64))


def test_precision_switches_are_set_explicitly(ncnn_model: Path, inputs: list[np.ndarray], monkeypatch) -> None:
    fp16_keys = ("use_fp16_storage", "use_fp16_arithmetic", "use_fp16_packed")
    monkeypatch.setattr(ncnn_backend, "switches_take_effect", lambda ncnn, p: True)  # as on an ARM CPU with fp16
    for precision, on in (("fp32", ()), ("fp16", fp16_keys), ("bf16", ("use_bf16_storage", "use_bf16_packed"))):
        with load(ncnn_model, threads=1, precision=precision) as rt:
            assert rt.precision_used == precision
            for key in (*fp16_keys, "use_bf16_storage", "use_bf16_packed"):
                assert rt.engine_option(key) is (key in on), (precision, key)
            assert rt.engine_option("openmp_blocktime") == 0
    with load(ncnn_model, threads=1) as rt:  # no request: fp32 switches, whatever ncnn's defaults are
        assert rt.precision_used == "fp32" and not any(rt.engine_option(k) for k in fp16_keys)


def test_precision_used_is_measured_not_echoed(ncnn_model: Path, inputs: list[np.ndarray]) -> None:
    """fp16/bf16 count only where their switches change a convolution's output on this CPU."""
    import ncnn

    for precision in ("fp16", "bf16"):
        if switches_take_effect(ncnn, Precision(precision)):
            with load(ncnn_model, threads=1, precision=precision) as rt:
                assert rt.precision_used == precision
            fp32 = outputs(ncnn_model, inputs, precision="fp32")
            other = outputs(ncnn_model, inputs, precision=precision)
            assert np.abs(other[:, 4:] - fp32[:, 4:]).max() > 1e-4  # really computed in it, not just labelled
        else:  # e.g. fp16 on x86: the switches change nothing, so the request is refused with the reason
            with pytest.raises(PrecisionUnsupportedError, match=f"at {precision}; it runs fp32.*change nothing"):
                load(ncnn_model, threads=1, precision=precision)


def test_int8_request_on_a_float_param_is_refused(ncnn_model: Path) -> None:
    with pytest.raises(PrecisionUnsupportedError, match="at int8; it runs fp32: the .param has no int8 layers"):
        load(ncnn_model, threads=1, precision="int8")


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_reach_the_net(ncnn_model: Path, threads: int) -> None:
    with load(ncnn_model, threads=threads) as rt:
        assert rt.engine_option("num_threads") == threads
        assert rt.engine_versions()["ncnn"].startswith("1.")


def test_metadata_survives_conversion(small_model: Path, tmp_path: Path) -> None:
    with_our_metadata(small_model, tmp_path / "ours.onnx", source_hash="abc123")
    for src, layout in ((small_model, None), (tmp_path / "ours.onnx", "yolov8")):  # Ultralytics keys / ours
        param = to_ncnn(src, tmp_path / f"{src.stem}.param", precision="fp16")
        with load(param, threads=1) as rt:
            meta = ModelMeta.from_props(rt.metadata())
        assert meta.names == NAMES and meta.imgsz == IMGSZ and meta.stride == 32 and meta.layout == layout
        assert meta.precision == "fp16" and meta.extra["weights_storage"] == "fp16"
        assert meta.extra["converted_from"] == src.name and meta.extra["target"] == "ncnn"
    assert meta.source_hash == "abc123"


def test_fp16_weights_halve_the_bin(small_model: Path, ncnn_model: Path, tmp_path: Path) -> None:
    half = to_ncnn(small_model, tmp_path / "half.param", precision="fp16")
    assert half.with_suffix(".bin").stat().st_size < 0.6 * ncnn_model.with_suffix(".bin").stat().st_size


def assert_same_detections(onnx_path: Path, param: Path, frames: list[np.ndarray], clip: bool = True) -> None:
    with Detector(onnx_path, threads=1, clip=clip) as ref_det, Detector(param, threads=1, clip=clip) as nc_det:
        assert nc_det.names == ref_det.names and nc_det.input_size == ref_det.input_size
        for frame in frames:
            ref, got = ref_det(frame), nc_det(frame)
            # a random-weight net has many near-duplicate boxes: an NMS decision may flip at fp32 noise
            assert len(ref) > 0 and abs(len(got) - len(ref)) <= max(1, 0.03 * len(ref))
            r, g = matched_same_class(ref, got)
            close = ((np.abs(got.xyxy[g] - ref.xyxy[r]).max(1) < BOX_ATOL_PX)
                     & (np.abs(got.scores[g] - ref.scores[r]) < SCORE_ATOL))
            assert close.sum() >= 0.95 * len(ref)


def test_detector_on_ncnn_matches_detector_on_onnx(small_model: Path, ncnn_model: Path) -> None:
    frames = [render_image(1, "test", i, 200, CLASS_NAMES, nonsquare=1.0).image for i in range(2)]
    assert_same_detections(small_model, ncnn_model, frames)


def ultralytics_onnx(path: Path, nc: int = 3, hw: tuple[int, int] = (64, 96)) -> Path:
    """A small head-only graph, dynamic batch/height/width, output [B, 4+nc, N], only Ultralytics' metadata keys."""
    g, rng = GraphBuilder(), np.random.default_rng(0)
    weight = g.const("head.weight", rng.normal(0, 0.3, (4 + nc, 3, 8, 8)).astype(np.float32))
    bias = g.const("head.bias", np.r_[np.zeros(4), np.full(nc, -1.5)].astype(np.float32))
    feat = g.node("Conv", ["images", weight, bias], strides=[8, 8])
    flat = g.node("Reshape", [feat, g.const("flat", np.array([0, 4 + nc, -1], np.int64))])
    box, cls = g.node_multi("Split", [flat, g.const("sizes", np.array([4, nc], np.int64))], 2, axis=1)
    ys, xs = np.mgrid[0:hw[0] // 8, 0:hw[1] // 8] * 8.0 + 4.0  # cell centres: boxes near their cell
    base = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, 8.0), np.full(xs.size, 8.0)])[None]
    scaled = g.node("Mul", [g.node("Sigmoid", [box]), g.const("scale", np.array([[[8], [8], [40], [30]]], np.float32))])
    px = g.node("Add", [scaled, g.const("anchors", base.astype(np.float32))])
    g.nodes.append(onnx.helper.make_node("Concat", [px, g.node("Sigmoid", [cls])], ["output0"], axis=1))
    props = {"names": repr({i: f"thing{i}" for i in range(nc)}), "imgsz": repr(list(hw)), "stride": "32",
             "task": "detect"}
    model = g.model([float_input("images", ["batch", 3, "height", "width"])],
                    [float_input("output0", ["batch", 4 + nc, "anchors"])], props, "ultralytics_style")
    onnx.save(model, str(path))
    return path


def test_ultralytics_style_onnx_converts_and_runs(tmp_path: Path) -> None:
    src = ultralytics_onnx(tmp_path / "ultra.onnx")
    param = to_ncnn(src, tmp_path / "ultra.param")
    with load(param, threads=1) as rt:
        assert rt.inputs[0].shape == (1, 3, 64, 96)
        assert ModelMeta.from_props(rt.metadata()).names == {0: "thing0", 1: "thing1", 2: "thing2"}
    xs = parity_inputs((64, 96), n=2)
    ref, got = outputs(src, xs, "onnxruntime"), outputs(param, xs)
    assert got.shape == ref.shape == (2, 7, 8 * 12)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)
    assert check_parity(src, param, options=RuntimeOptions(threads=1), images=2).passed
    frames = [render_image(2, "test", i, 150, CLASS_NAMES, nonsquare=1.0).image for i in range(2)]
    assert_same_detections(src, param, frames, clip=False)  # clipping makes boxes in the padding zero-area


def test_missing_bin_or_sidecar_are_load_errors(ncnn_model: Path, tmp_path: Path) -> None:
    lonely = tmp_path / "lonely.param"
    shutil.copy(ncnn_model, lonely)
    with pytest.raises(ModelLoadError, match="lonely.bin"):
        load(lonely)
    shutil.copy(ncnn_model.with_suffix(".bin"), tmp_path / "lonely.bin")
    with pytest.raises(ModelLoadError, match="lonely.param.json"):  # no sidecar: the input size is unknown
        load(lonely)
    with load(lonely, threads=1, extra={"input_shape": [1, 3, *IMGSZ]}) as rt:
        assert rt.infer(np.zeros((1, 3, *IMGSZ), np.float32))[0].shape == (1, 8, 336)


def where_onnx(path: Path) -> Path:
    """Relu(x) written as Where(x > 0, x, 0): pnnx keeps torch.gt/torch.where, which ncnn cannot load."""
    g = GraphBuilder()
    mask = g.node("Greater", ["images", g.const("zero", np.array(0.0, np.float32))])
    g.nodes.append(onnx.helper.make_node("Where", [mask, "images", "zero"], ["out"]))
    model = g.model([float_input("images", [1, 3, 8, 8])], [float_input("out", [1, 3, 8, 8])], {}, "where")
    onnx.save(model, str(path))
    return path


def test_ops_ncnn_cannot_load_fail_conversion_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "out" / "where.param"
    with pytest.raises(ModelLoadError, match="torch.where") as err:
        to_ncnn(where_onnx(tmp_path / "where.onnx"), out)
    assert "\n" not in str(err.value)
    assert not any(out.parent.iterdir())  # nothing half-written, no pnnx side files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "where.onnx"]


def test_unsupported_layers_with_and_without_ncnn() -> None:
    import ncnn

    text = ("7767517\n4 4\nInput in0 0 1 in0\npnnx.Expression pnnx_expr_0 0 1 1\n"
            "CumSum cumsum_0 2 1 in0 1 2\nSwish silu_0 1 1 2 out0\n")
    assert unsupported_layers(text, ncnn) == ["CumSum", "pnnx.Expression"]
    assert unsupported_layers(text) == ["pnnx.Expression"]  # without ncnn: only pnnx/torch leftovers are known


def test_corrupt_onnx_is_a_load_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    out = tmp_path / "out" / "bad.param"
    with pytest.raises(ModelLoadError, match="bad.onnx"):
        to_ncnn(bad, out)
    assert not out.parent.exists() or not any(out.parent.iterdir())


@pytest.mark.parametrize("script, needle", [("echo 'fatal: no such op' >&2; exit 3", "exit 3): fatal: no such op"),
                                            ("exit 0", "wrote no ncnn .param/.bin")])
def test_pnnx_failures_are_one_line_load_errors(small_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                script: str, needle: str) -> None:
    fake = tmp_path / "fake_pnnx"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    monkeypatch.setattr(ncnn_converter, "pnnx_binary", lambda: fake)
    out = tmp_path / "out" / "m.param"
    with pytest.raises(ModelLoadError, match=re.escape(needle)) as err:
        to_ncnn(small_model, out)
    assert "\n" not in str(err.value) and not any(out.parent.iterdir())


def test_missing_pnnx_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pnnx" else find_spec(name, *a))
    monkeypatch.setenv("PATH", "")
    with pytest.raises(BackendUnavailableError, match=r"pip install 'edgebench\[ncnn-export\]'"):
        pnnx_binary()


def test_export_cli_writes_param_bin_and_sidecar_with_parity(small_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.param"
    proc = run_cli("export", "--model", str(small_model), "--to", "ncnn", "-o", str(out),
                   "--threads", "1", "--parity-images", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "parity PASS" in proc.stdout
    side = json.loads((tmp_path / "x.param.json").read_text())
    assert side["parity"]["passed"] and side["parity"]["precision_used"] == "fp32"
    assert side["parity"]["ref_detections"] > 0 and side["parity"]["score_max_abs"] < SCORE_ATOL
    assert side["input_names"] == ["in0"] and ModelMeta.from_props({"edgebench": side["edgebench"]}).names == NAMES
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".cache")) == \
        ["x.bin", "x.param", "x.param.json"]


def test_export_cli_missing_input_is_one_line_error(tmp_path: Path) -> None:
    proc = run_cli("export", "--model", str(tmp_path / "missing.onnx"), "--to", "ncnn",
                   "-o", str(tmp_path / "y.param"), cwd=tmp_path)
    assert_one_line_error(proc, "missing.onnx")
    assert not (tmp_path / "y.param").exists()


def test_an_export_never_overwrites_another_formats_bin(small_model: Path, tmp_path: Path) -> None:
    from converters.openvino import to_openvino

    to_openvino(small_model, tmp_path / "m.xml")
    before = (tmp_path / "m.bin").read_bytes()
    with pytest.raises(EdgebenchError, match="holds the weights of the openvino model m.xml"):
        to_ncnn(small_model, tmp_path / "m.param")
    assert (tmp_path / "m.bin").read_bytes() == before and not (tmp_path / "m.param").exists()
