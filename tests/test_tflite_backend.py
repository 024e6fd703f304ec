"""TFLite/LiteRT backend: NHWC feeding, fixed size, XNNPACK delegation report, threads, quantized I/O, errors."""
from __future__ import annotations

import importlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert",
                    reason="the tflite backend needs ai-edge-litert (pip install 'edgebench[tflite]')")
torch = pytest.importorskip("torch", reason="building test .tflite files needs torch")
litert_torch = pytest.importorskip("litert_torch", reason="building test .tflite files needs litert-torch")

from runtimes import availability, backend_for_path, load, registry  # noqa: E402
from runtimes.errors import BackendUnavailableError, InputError, ModelLoadError  # noqa: E402
from runtimes.precision import PrecisionUnsupportedError  # noqa: E402
from runtimes.tflite_delegation import delegation_report  # noqa: E402
from runtimes.tflite_quant import dequantize, quantize  # noqa: E402

HW = (16, 24)


class ConvSigmoid(torch.nn.Module):
    """Every op (conv, logistic, transposes) is one XNNPACK supports."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x))


class Upsample(ConvSigmoid):
    """Adds a 2x nearest upsample: RESIZE_NEAREST_NEIGHBOR, which XNNPACK (ai-edge-litert 2.3) does not take."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(super().forward(x), scale_factor=2, mode="nearest")


def to_tflite(module: torch.nn.Module, path: Path, nhwc: bool = True) -> Path:
    """Convert with litert-torch; NHWC input (channel-last I/O wrapper) unless told otherwise."""
    x = torch.rand(1, 3, *HW)
    if nhwc:
        module, x = litert_torch.to_channel_last_io(module, args=[0]), x.permute(0, 2, 3, 1).contiguous()
    litert_torch.convert(module.eval(), (x,)).export(str(path))
    return path


@pytest.fixture(scope="module")
def modules() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {"cs": ConvSigmoid().eval(), "up": Upsample().eval()}


@pytest.fixture(scope="module")
def models(modules: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("tflite")
    made = {name: to_tflite(m, out / f"{name}.tflite") for name, m in modules.items()}
    made["up_nchw"] = to_tflite(modules["up"], out / "up_nchw.tflite", nhwc=False)
    return made


def test_registry_maps_tflite_to_this_backend() -> None:
    assert backend_for_path("m.tflite") == "tflite"
    assert availability("tflite") == (True, "ok")


@pytest.mark.parametrize("name", ["up", "up_nchw"])
def test_nchw_input_gives_the_torch_output(models: dict, modules: dict, name: str) -> None:
    x = np.random.default_rng(1).random((1, 3, *HW), dtype=np.float32)
    ref = modules["up"](torch.from_numpy(x)).detach().numpy()
    with load(models[name], threads=1) as rt:
        assert rt.input_layouts == ["NHWC" if name == "up" else "NCHW"]
        assert rt.inputs[0].shape == (1, 3, *HW) and rt.outputs[0].shape == ref.shape
        got = rt.infer(x)[0]
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    assert np.abs(got - np.roll(ref, 1, axis=-1)).max() > 1e-3  # a wrong transpose would not pass


@pytest.mark.parametrize("shape", [(1, 3, 24, 16), (2, 3, *HW), (1, *HW, 3), (3, *HW)])
def test_other_size_or_layout_is_an_input_error(models: dict, shape: tuple[int, ...]) -> None:
    with load(models["cs"], threads=1) as rt, pytest.raises(InputError):
        rt.infer(np.zeros(shape, np.float32))


def test_non_float32_input_is_an_input_error(models: dict) -> None:
    with load(models["cs"], threads=1) as rt, pytest.raises(InputError, match="float32"):
        rt.infer(np.zeros((1, 3, *HW), np.float64))


def test_delegation_counts_the_op_xnnpack_leaves(models: dict) -> None:
    with load(models["cs"], threads=1) as rt:
        full = rt.delegation()
    with load(models["up"], threads=1) as rt:
        part = rt.delegation()
    with load(models["up"], threads=1, extra={"xnnpack": False}) as rt:
        none = rt.delegation()
    assert full.fully_delegated and full.partitions == 1 and full.cpu_ops == {}
    assert full.delegated_ops == full.total_ops >= 2
    assert not part.fully_delegated and part.cpu_ops == {"RESIZE_NEAREST_NEIGHBOR": 1}
    assert part.delegated_ops == part.total_ops - 1 and part.partitions == 2
    assert "RESIZE_NEAREST_NEIGHBOR x1" in part.summary()
    assert none.delegated_ops == none.partitions == 0 and sum(none.cpu_ops.values()) == none.total_ops


def test_delegation_agrees_with_compiled_model(models: dict) -> None:
    from ai_edge_litert.compiled_model import CompiledModel

    for name in ("cs", "up"):
        with load(models[name], threads=1) as rt:
            ours = rt.delegation().fully_delegated
        assert CompiledModel.from_file(str(models[name])).is_fully_accelerated() is ours


def test_delegation_report_walks_partitions() -> None:
    def op(name: str, ins: list[int], outs: list[int]) -> dict:
        return {"op_name": name, "inputs": np.array(ins), "outputs": np.array(outs)}

    ops = [op("CONV_2D", [0, 1, -1], [2]), op("RESIZE_NEAREST_NEIGHBOR", [2, 3], [4]), op("ADD", [4, 2], [5]),
           op("DELEGATE", [0, 1], [2]), op("DELEGATE", [4, 2], [5])]
    rep = delegation_report(ops)
    assert (rep.total_ops, rep.delegated_ops, rep.partitions) == (3, 2, 2)
    assert rep.cpu_ops == {"RESIZE_NEAREST_NEIGHBOR": 1}


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_give_the_same_output(models: dict, threads: int) -> None:
    x = np.random.default_rng(2).random((1, 3, *HW), dtype=np.float32)
    with load(models["up"], threads=1) as ref, load(models["up"], threads=threads) as rt:
        np.testing.assert_allclose(rt.infer(x)[0], ref.infer(x)[0], rtol=0, atol=1e-6)
        assert rt.engine_versions()["ai-edge-litert"]


def test_precision_used_is_what_runs(models: dict) -> None:
    for precision in (None, "fp32"):
        with load(models["cs"], threads=1, precision=precision) as rt:
            assert rt.precision_used == "fp32"
    # no XNNPACK fp16 switch in the Interpreter, no bf16 kernels, no quantized tensors: refused, with what runs
    for precision in ("fp16", "bf16", "int8"):
        with pytest.raises(PrecisionUnsupportedError, match=f"at {precision}; it runs fp32"):
            load(models["cs"], precision=precision)


def test_concurrent_calls_get_their_own_results_and_close_twice(models: dict) -> None:
    xs = [np.random.default_rng(i).random((1, 3, *HW), dtype=np.float32) for i in range(2)]
    with load(models["up"], threads=1) as rt:
        expected = [rt.infer(x)[0] for x in xs]
        with ThreadPoolExecutor(2) as pool:
            got = list(pool.map(lambda i: rt.infer(xs[i % 2])[0], range(8)))
        rt.close()
        rt.close()
        with pytest.raises(ModelLoadError, match="closed"):
            rt.infer(xs[0])
    for i, out in enumerate(got):
        np.testing.assert_array_equal(out, expected[i % 2])


def test_sidecar_names_outputs_and_sets_layout(models: dict, tmp_path: Path) -> None:
    path = tmp_path / "m.tflite"
    path.write_bytes(models["cs"].read_bytes())
    path.with_name("m.tflite.json").write_text(json.dumps(
        {"input_layout": "NHWC", "output_names": ["output0"], "output_shapes": [[1, 4, HW[0] * HW[1]]],
         "edgebench": {"names": {"0": "a"}}}))
    with load(path, threads=1) as rt:
        assert rt.outputs[0].name == "output0" and rt.outputs[0].shape == (1, 4, HW[0] * HW[1])
        assert rt.infer(np.zeros((1, 3, *HW), np.float32))[0].shape == (1, 4, HW[0] * HW[1])
        assert "edgebench" in rt.metadata()
    path.with_name("m.tflite.json").write_text(json.dumps({"output_shapes": [[1, 4, None]]}))  # dynamic dim
    with load(path, threads=1) as rt:
        assert rt.outputs[0].shape == (1, 4, *HW)
        assert rt.input_layouts == ["NHWC"]  # no record: guessed from the [1, H, W, 3] shape


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_quantize_round_trip(dtype: type) -> None:
    detail = {"dtype": dtype, "quantization": (0.05, 3 if dtype is np.int8 else 128)}
    x = np.linspace(-4, 4, 50, dtype=np.float32)
    q = quantize(x, detail)
    assert q.dtype == dtype
    back = dequantize(q, detail)
    assert back.dtype == np.float32
    inside = (back > -4 + 0.2) & (back < 4 - 0.2) if dtype is np.int8 else np.abs(x) < 6.0
    np.testing.assert_allclose(back[inside], x[inside], atol=0.025 + 1e-6)
    assert quantize(np.array([1e6], np.float32), detail)[0] == np.iinfo(dtype).max  # saturates
    assert dequantize(np.ones(2, np.float16), {"dtype": np.float16, "quantization": (0.0, 0)}).dtype == np.float32


def test_bad_files_are_load_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(ModelLoadError, match="bad.tflite"):
        load(bad)
    with pytest.raises(ModelLoadError, match="reads .tflite files"):
        registry.runtime_class("tflite")(tmp_path / "x.onnx")


def test_missing_package_names_the_extra(models: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake(name: str, *args):
        if name == "ai_edge_litert":
            raise ImportError("No module named 'ai_edge_litert'")
        return real(name, *args)

    monkeypatch.setattr(registry.importlib, "import_module", fake)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'edgebench\[tflite\]'"):
        registry.runtime_class("tflite")(models["cs"])
