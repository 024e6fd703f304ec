"""TensorRT without TensorRT: the builder and the runtime driven by stand-ins for the two things this host lacks,
the `tensorrt` module (a fake injected into sys.modules that records every builder call) and the GPU (a fake
runtimes.cuda_buffers.CudaApi with host-memory "device" buffers and a scripted clock). Everything else is real:
argument checks, the profile shapes, the compatibility check against the sidecar, the sidecar itself, the
pinned-buffer / stream / event sequence and the one-line errors (the CLI in a child process). The tests that need
a real GPU are marked `gpu` and skipped with the reason where there is none."""
from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from conftest import assert_one_line_error

from calibration.request import QuantizeRequest, QuantizeResult
from converters.export import builds_from_qdq, export
from converters.int8 import Int8Options
from converters.tensorrt import TensorrtOptions, check_request, parse_batch, profile_shapes, to_tensorrt
from edge_sdk.synth import generate
from runtimes import cuda_buffers, load, tensorrt_backend
from runtimes.base import RuntimeOptions, sidecar_path
from runtimes.capabilities import get as capability
from runtimes.cuda_buffers import CudaApi, GpuInfo, HostBuffer, host_lacks
from runtimes.errors import (
    BackendUnavailableError,
    ConversionError,
    HardwareUnavailableError,
    InputError,
    ModelLoadError,
)
from runtimes.onnx_precision import onnx_precision
from runtimes.precision import Precision, PrecisionUnsupportedError
from runtimes.tensorrt_backend import compatibility_problem, device_index, release

ROOT = Path(__file__).resolve().parents[1]
GPU_SKIP = "needs TensorRT 10 and an NVIDIA GPU"
CUDA_SKIP = "needs cuda-python and an NVIDIA GPU"
ORIN = GpuInfo(0, "Orin", "8.7", "12.6", 30000)
#: the fake clock: what each stage costs, in ms
H2D_MS, COMPUTE_MS, D2H_MS = 0.5, 2.0, 0.25


# --- the fake GPU ----------------------------------------------------------------------------------------------

class FakeCuda(CudaApi):
    """Host memory standing in for device memory; a clock that the copies and the engine advance."""

    name = "fake"
    package = "fake"

    def __init__(self, gpu: GpuInfo = ORIN) -> None:
        self.gpu, self.mem, self.now, self.calls = gpu, {}, 0.0, []
        self.host_allocs = self.host_frees = self.device_frees = 0
        self._next = 0x1000

    def device(self, index: int) -> GpuInfo:
        if index != 0:
            raise HardwareUnavailableError(f"GPU {index} asked for; this host has 1")
        return self.gpu

    def use_device(self, index: int) -> None:
        self.calls.append(("use_device", index))

    def host_alloc(self, nbytes: int) -> HostBuffer:
        self.host_allocs += 1
        return HostBuffer(self.host_allocs, np.zeros(nbytes, np.uint8))

    def host_free(self, buf: HostBuffer) -> None:
        self.host_frees += 1

    def device_alloc(self, nbytes: int) -> int:
        self._next += 0x1000
        self.mem[self._next] = np.zeros(nbytes, np.uint8)
        return self._next

    def device_free(self, ptr: int) -> None:
        del self.mem[ptr]
        self.device_frees += 1

    def stream_create(self) -> Any:
        return "stream"

    def stream_handle(self, stream: Any) -> int:
        return 77

    def stream_sync(self, stream: Any) -> None:
        self.calls.append(("sync",))

    def stream_destroy(self, stream: Any) -> None:
        self.calls.append(("stream_destroy",))

    def event_create(self) -> Any:
        return {"t": None}

    def event_record(self, event: Any, stream: Any) -> None:
        event["t"] = self.now
        self.calls.append(("event",))

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        return float(end["t"] - start["t"])

    def event_destroy(self, event: Any) -> None:
        return None

    def copy_htod(self, dst: int, src: np.ndarray, stream: Any) -> None:
        self.mem[dst][:src.nbytes] = src.reshape(-1).view(np.uint8)
        self.now += H2D_MS
        self.calls.append(("htod", dst))

    def copy_dtoh(self, dst: np.ndarray, src: int, stream: Any) -> None:
        dst.reshape(-1).view(np.uint8)[:] = self.mem[src][:dst.nbytes]
        self.now += D2H_MS
        self.calls.append(("dtoh", src))


# --- the fake tensorrt module ----------------------------------------------------------------------------------

class Recorder:
    """Attributes set on it and calls made to it, in order."""

    def __init__(self, log: list[tuple[Any, ...]], who: str) -> None:
        object.__setattr__(self, "_log", log)
        object.__setattr__(self, "_who", who)

    def __setattr__(self, key: str, value: Any) -> None:
        self._log.append((self._who, "set", key, value))
        object.__setattr__(self, key, value)


class FakeConfig(Recorder):
    def __init__(self, log: list[tuple[Any, ...]], trt: FakeTrt) -> None:
        super().__init__(log, "config")
        object.__setattr__(self, "trt", trt)
        object.__setattr__(self, "cache", None)

    def set_memory_pool_limit(self, pool: str, size: int) -> None:
        self._log.append(("config", "pool", pool, size))

    def set_flag(self, flag: str) -> None:
        self._log.append(("config", "flag", flag))

    def add_optimization_profile(self, profile: Any) -> None:
        self._log.append(("config", "profile", profile.shapes))

    def create_timing_cache(self, blob: bytes) -> Any:
        self._log.append(("config", "create_timing_cache", bytes(blob)))
        return types.SimpleNamespace(blob=bytes(blob), serialize=lambda: bytes(blob) + b"+timed")

    def set_timing_cache(self, cache: Any, ignore_mismatch: bool) -> bool:
        object.__setattr__(self, "cache", cache)
        accepted = not cache.blob or cache.blob.startswith(b"TC")
        self._log.append(("config", "set_timing_cache", cache.blob, ignore_mismatch, accepted))
        return accepted

    def get_timing_cache(self) -> Any:
        return self.cache


class FakeBuilder:
    def __init__(self, trt: FakeTrt, logger: Any) -> None:
        self.trt, self.num_DLA_cores = trt, trt.dla_cores

    def create_network(self, flags: int) -> Any:
        self.trt.log.append(("builder", "create_network", flags))
        return types.SimpleNamespace()

    def create_builder_config(self) -> FakeConfig:
        return FakeConfig(self.trt.log, self.trt)

    def create_optimization_profile(self) -> Any:
        profile = types.SimpleNamespace(shapes={})
        profile.set_shape = lambda name, lo, opt, hi: profile.shapes.__setitem__(name, (tuple(lo), tuple(opt),
                                                                                          tuple(hi)))
        return profile

    def build_serialized_network(self, network: Any, config: FakeConfig) -> bytes | None:
        self.trt.log.append(("builder", "build"))
        if self.trt.fail_build:
            os.write(2, b"[TRT] [E] 10: Could not find any implementation for node /stem/Conv\n")  # as native code
            return None
        return b"ENGINE:" + json.dumps(self.trt.engine_io).encode()


class FakeParser:
    def __init__(self, network: Any, logger: Any) -> None:
        self.errors: list[str] = []

    def parse_from_file(self, path: str) -> bool:
        if "bad" in Path(path).name:
            self.errors = ["In node 3 (Conv): UNSUPPORTED_NODE: no importer for Conv with these attributes"]
        return not self.errors

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, i: int) -> Any:
        return types.SimpleNamespace(desc=lambda: self.errors[i])


class FakeEngine:
    """Tensors from the engine blob: {name: [mode, shape, profile or None]}; computes out = 2 * in[:, :60]."""

    def __init__(self, trt: FakeTrt, io: dict[str, Any]) -> None:
        self.trt, self.io = trt, io
        self.names = list(io)
        self.num_io_tensors = len(self.names)

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_mode(self, name: str) -> str:
        return self.io[name][0]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.io[name][1])

    def get_tensor_dtype(self, name: str) -> str:
        return "float32"

    def get_tensor_profile_shape(self, name: str, index: int) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(s) for s in self.io[name][2])

    def create_execution_context(self) -> FakeContext:
        return FakeContext(self)


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine, self.shapes, self.addresses = engine, {}, {}
        self.trt = engine.trt

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> None:
        self.trt.log.append(("context", "set_input_shape", name, tuple(shape)))
        self.shapes[name] = tuple(shape)

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name in self.shapes:
            return self.shapes[name]
        batch = next(iter(self.shapes.values()))[0]
        return (batch, *self.engine.io[name][1][1:])

    def set_tensor_address(self, name: str, ptr: int) -> None:
        self.trt.log.append(("context", "set_tensor_address", name))
        self.addresses[name] = ptr

    def execute_async_v3(self, stream_handle: int) -> bool:
        cuda = self.trt.cuda
        cuda.calls.append(("enqueue", stream_handle))
        inp, out = (n for n in self.engine.names)
        x = cuda.mem[self.addresses[inp]].view(np.float32).reshape(self.shapes[inp])
        y = 2 * x.reshape(x.shape[0], -1)[:, :60]
        cuda.mem[self.addresses[out]][:y.nbytes] = y.reshape(-1).view(np.uint8)
        cuda.now += COMPUTE_MS
        return True


class FakeRuntime(Recorder):
    def __init__(self, trt: FakeTrt, logger: Any) -> None:
        super().__init__(trt.log, "runtime")
        object.__setattr__(self, "trt", trt)

    def deserialize_cuda_engine(self, data: bytes) -> FakeEngine | None:
        self.trt.log.append(("runtime", "deserialize"))
        if not data.startswith(b"ENGINE:"):
            return None
        return FakeEngine(self.trt, json.loads(data[len(b"ENGINE:"):]))


class FakeTrt(types.ModuleType):
    """A `tensorrt` module with the names the builder and the runtime use; every call lands in `log`."""

    def __init__(self, version: str = "10.3.0", cuda: FakeCuda | None = None) -> None:
        super().__init__("tensorrt")
        self.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
        self.__version__ = version
        self.log: list[tuple[Any, ...]] = []
        self.dla_cores, self.fail_build = 2, False
        self.cuda = cuda or FakeCuda()
        self.engine_io: dict[str, Any] = {"images": ["INPUT", [1, 3, 32, 32], None],
                                          "output0": ["OUTPUT", [1, 6, 10], None]}
        ns = types.SimpleNamespace
        self.Logger = type("Logger", (), {"ERROR": 1, "WARNING": 2, "__init__": lambda s, level=2: None})
        self.BuilderFlag = ns(FP16="FP16", INT8="INT8", GPU_FALLBACK="GPU_FALLBACK")
        self.MemoryPoolType = ns(WORKSPACE="WORKSPACE")
        self.DeviceType = ns(GPU="GPU", DLA="DLA")
        self.ProfilingVerbosity = ns(DETAILED="DETAILED")
        self.TensorIOMode = ns(INPUT="INPUT", OUTPUT="OUTPUT")
        self.Builder = lambda logger: FakeBuilder(self, logger)
        self.OnnxParser = FakeParser
        self.Runtime = lambda logger: FakeRuntime(self, logger)
        self.nptype = lambda dtype: np.dtype(dtype).type

    def config_log(self) -> list[tuple[Any, ...]]:
        return [e[1:] for e in self.log if e[0] == "config"]


@pytest.fixture
def trt(monkeypatch: pytest.MonkeyPatch) -> FakeTrt:
    fake = FakeTrt()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setitem(cuda_buffers.APIS, "fake", lambda: fake.cuda)
    return fake


FAKE = TensorrtOptions(cuda="fake")


# --- options, shapes, refusals (no fakes needed) ---------------------------------------------------------------

def test_options_are_checked_when_made() -> None:
    assert parse_batch("1,4,8") == (1, 4, 8) and parse_batch("4") == (4, 4, 4) and parse_batch([2, 2, 3]) == (2, 2, 3)
    assert TensorrtOptions(batch="1,2,4").batch == (1, 2, 4)  # type: ignore[arg-type]
    for bad in ({"workspace_mib": 0}, {"opt_level": 6}, {"opt_level": -1}, {"dla_core": -1}, {"batch": "8,4,1"},
                {"batch": "0"}, {"batch": "a,b,c"}, {"batch": (1, 2)}, {"device": -1}):
        with pytest.raises(InputError):
            TensorrtOptions(**bad)  # type: ignore[arg-type]


def test_profile_shapes() -> None:
    assert profile_shapes({"images": [1, 3, 320, 320]}, None, None) == {}
    assert profile_shapes({"images": [None, 3, 320, 320]}, (1, 4, 8), None) == {
        "images": ((1, 3, 320, 320), (4, 3, 320, 320), (8, 3, 320, 320))}
    assert profile_shapes({"images": [None, 3, None, None]}, None, (256, 320)) == {
        "images": ((1, 3, 256, 320),) * 3}
    with pytest.raises(InputError, match="fixed batch of 1.*--dynamic-batch"):
        profile_shapes({"images": [1, 3, 320, 320]}, (1, 4, 8), None)
    with pytest.raises(ModelLoadError, match="dynamic dimension 2"):
        profile_shapes({"images": [1, 3, None, None]}, None, None)


@pytest.mark.parametrize("asked, graph, opts, match", [
    (Precision.INT8, Precision.FP32, TensorrtOptions(), "built from a Q/DQ ONNX"),
    (Precision.FP16, Precision.MIXED, TensorrtOptions(), "quantized .*--precision int8"),
    (Precision.FP32, Precision.FP32, TensorrtOptions(dla_core=0), "DLA runs fp16 or int8"),
    (Precision.FP16, Precision.FP32, TensorrtOptions(int8_fp16=True), "int8_fp16 applies to int8"),
])
def test_refusals(asked: Precision, graph: Precision, opts: TensorrtOptions, match: str) -> None:
    with pytest.raises((PrecisionUnsupportedError, InputError), match=match) as err:
        check_request(asked, graph, opts, "m.onnx")
    assert "\n" not in str(err.value)
    check_request(Precision.INT8, Precision.MIXED, TensorrtOptions(dla_core=0, int8_fp16=True), "m.onnx")  # fine


def test_capability_row_routes_export_to_the_builder() -> None:
    cap = capability("tensorrt")
    assert cap.runtime == "runtimes.tensorrt_backend:TensorrtRuntime" and cap.hardware == "nvidia-gpu"
    assert cap.load_converter() is to_tensorrt and cap.writes == (Precision.FP32, Precision.FP16, Precision.INT8)
    assert cap.quantizer == "calibration.modelopt:quantize" and cap.quantize_probe == "calibration.modelopt:missing"
    assert builds_from_qdq("tensorrt", Path("m.engine")) and builds_from_qdq("tensorrt", Path("m.plan"))
    assert not builds_from_qdq("tensorrt", Path("m.int8.onnx")) and not builds_from_qdq("openvino", Path("m.xml"))


# --- the builder, on the fake tensorrt -------------------------------------------------------------------------

def test_fp32_build_writes_engine_and_sidecar(trt: FakeTrt, small_model: Path, tmp_path: Path) -> None:
    out = to_tensorrt(small_model, tmp_path / "m.engine", "fp32", FAKE)
    assert out.read_bytes().startswith(b"ENGINE:")
    config = trt.config_log()
    assert ("pool", "WORKSPACE", 1024 * 2**20) in config and ("set", "builder_optimization_level", 3) in config
    assert not [c for c in config if c[0] in ("flag", "profile", "create_timing_cache")]  # fp32, static, no cache
    assert ("builder", "create_network", 0) in trt.log and ("use_device", 0) in trt.cuda.calls
    side = json.loads(sidecar_path(out).read_text())
    assert (side["tensorrt"], side["compute_capability"], side["device_name"]) == ("10.3.0", "8.7", "Orin")
    assert side["precision"] == "fp32" and side["format"] == "tensorrt" and side["source"] == small_model.name
    assert side["builder"]["flags"] == [] and side["builder"]["workspace_mib"] == 1024
    ours = json.loads(side["edgebench"])
    assert ours["names"]["0"] == "class0" and ours["imgsz"] == [128, 128] and ours["precision"] == "fp32"


def test_fp16_flag_workspace_and_opt_level(trt: FakeTrt, small_model: Path, tmp_path: Path) -> None:
    opts = TensorrtOptions(workspace_mib=512, opt_level=5, cuda="fake")
    to_tensorrt(small_model, tmp_path / "m.engine", "fp16", opts)
    config = trt.config_log()
    assert ("flag", "FP16") in config and ("flag", "INT8") not in config
    assert ("pool", "WORKSPACE", 512 * 2**20) in config and ("set", "builder_optimization_level", 5) in config
    assert json.loads(sidecar_path(tmp_path / "m.engine").read_text())["precision"] == "fp16"


@pytest.mark.parametrize("int8_fp16", [False, True])
def test_int8_from_qdq_sets_the_int8_flag_and_no_calibrator(trt: FakeTrt, qdq_model: Path, tmp_path: Path,
                                                            int8_fp16: bool) -> None:
    opts = TensorrtOptions(int8_fp16=int8_fp16, cuda="fake")
    out = to_tensorrt(qdq_model, tmp_path / "q.engine", "int8", opts)
    flags = [c[1] for c in trt.config_log() if c[0] == "flag"]
    assert flags == (["INT8", "FP16"] if int8_fp16 else ["INT8"])
    assert not [c for c in trt.config_log() if c[:2] == ("set", "int8_calibrator")]
    side = json.loads(sidecar_path(out).read_text())
    assert side["precision"] == onnx_precision(qdq_model).value and side["precision"] in ("int8", "mixed")


def test_timing_cache_round_trip(trt: FakeTrt, small_model: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "orin.timing"
    opts = TensorrtOptions(timing_cache=str(cache), cuda="fake")
    to_tensorrt(small_model, tmp_path / "a.engine", "fp16", opts)
    assert ("create_timing_cache", b"") in trt.config_log() and cache.read_bytes() == b"+timed"
    first = json.loads(sidecar_path(tmp_path / "a.engine").read_text())["builder"]["timing_cache"]
    assert first == {"path": str(cache), "loaded_bytes": 0, "reused": False, "saved_bytes": 6}
    cache.write_bytes(b"TC-orin")  # what a real build on this device left
    trt.log.clear()
    to_tensorrt(small_model, tmp_path / "b.engine", "fp16", opts)
    assert ("set_timing_cache", b"TC-orin", False, True) in trt.config_log()
    assert cache.read_bytes() == b"TC-orin+timed"
    second = json.loads(sidecar_path(tmp_path / "b.engine").read_text())["builder"]["timing_cache"]
    assert second["reused"] and second["loaded_bytes"] == 7
    cache.write_bytes(b"from another device")  # rejected by TensorRT: the build starts from an empty cache
    trt.log.clear()
    to_tensorrt(small_model, tmp_path / "c.engine", "fp16", opts)
    sets = [c for c in trt.config_log() if c[0] == "set_timing_cache"]
    assert sets == [("set_timing_cache", b"from another device", False, False), ("set_timing_cache", b"", False, True)]


def test_dla_core_with_gpu_fallback(trt: FakeTrt, small_model: Path, tmp_path: Path) -> None:
    to_tensorrt(small_model, tmp_path / "m.engine", "fp16", TensorrtOptions(dla_core=1, cuda="fake"))
    config = trt.config_log()
    assert ("set", "default_device_type", "DLA") in config and ("set", "DLA_core", 1) in config
    assert [c[1] for c in config if c[0] == "flag"] == ["FP16", "GPU_FALLBACK"]
    trt.log.clear()
    to_tensorrt(small_model, tmp_path / "n.engine", "fp16", TensorrtOptions(dla_core=0, gpu_fallback=False,
                                                                           cuda="fake"))
    assert [c[1] for c in trt.config_log() if c[0] == "flag"] == ["FP16"]
    with pytest.raises(HardwareUnavailableError, match="DLA core 2 asked for; this device has 2") as err:
        to_tensorrt(small_model, tmp_path / "x.engine", "fp16", TensorrtOptions(dla_core=2, cuda="fake"))
    assert "\n" not in str(err.value) and not (tmp_path / "x.engine").exists()


def test_dynamic_batch_profile(trt: FakeTrt, tmp_path: Path) -> None:
    from testkit.models import make_yolov8_onnx

    model = make_yolov8_onnx(tmp_path / "dyn.onnx", nc=2, imgsz=64, width=0.125, dynamic_batch=True)
    out = to_tensorrt(model, tmp_path / "dyn.engine", "fp16", TensorrtOptions(batch=(1, 4, 8), cuda="fake"))
    (profile,) = [c[1] for c in trt.config_log() if c[0] == "profile"]
    assert profile == {"images": ((1, 3, 64, 64), (4, 3, 64, 64), (8, 3, 64, 64))}
    side = json.loads(sidecar_path(out).read_text())
    assert side["builder"]["profile"] == {"images": {"min": [1, 3, 64, 64], "opt": [4, 3, 64, 64],
                                                     "max": [8, 3, 64, 64]}}
    trt.log.clear()
    to_tensorrt(model, tmp_path / "dyn1.engine", "fp16", FAKE)  # no batch given: the profile pins batch 1
    assert [c[1] for c in trt.config_log() if c[0] == "profile"] == [{"images": ((1, 3, 64, 64),) * 3}]


def test_parse_and_build_failures_are_one_line_and_write_nothing(trt: FakeTrt, small_model: Path,
                                                                 tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(small_model.read_bytes())
    with pytest.raises(ConversionError, match="ONNX parser cannot read 'bad.onnx': In node 3 .*UNSUPPORTED_NODE"):
        to_tensorrt(bad, tmp_path / "bad.engine", "fp32", FAKE)
    trt.fail_build = True
    with pytest.raises(ConversionError, match="could not build an engine from 'small.onnx': .*Could not find any "
                                              "implementation") as err:
        to_tensorrt(small_model, tmp_path / "m.engine", "fp32", FAKE)
    assert "\n" not in str(err.value)
    assert not list(tmp_path.glob("*.engine*"))


def test_tensorrt_11_is_refused_by_the_builder(trt: FakeTrt, small_model: Path, tmp_path: Path) -> None:
    trt.__version__ = "11.4.0"
    with pytest.raises(BackendUnavailableError, match="found TensorRT 11.4.0; this builder sets TensorRT 10's"):
        to_tensorrt(small_model, tmp_path / "m.engine", "fp32", FAKE)


def test_export_int8_engine_builds_from_a_qdq_onnx_without_calibration(trt: FakeTrt, qdq_model: Path,
                                                                       tmp_path: Path) -> None:
    result = export(qdq_model, "tensorrt", tmp_path / "q.engine", "int8", parity=False,
                    converter_options={"options": FAKE})
    assert result.path == tmp_path / "q.engine" and result.quantization is None
    assert [c[1] for c in trt.config_log() if c[0] == "flag"] == ["INT8"]
    assert not list(tmp_path.glob(".int8.*"))  # the temporary folder is gone


def test_export_int8_engine_quantizes_then_builds(trt: FakeTrt, small_model: Path, qdq_model: Path,
                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A float ONNX to an int8 engine: the quantizer (ModelOpt's place, stood in by a copy of a Q/DQ model) starts
    from the ONNX itself (no float engine is built for it), then one int8 build; the provenance is in the sidecar."""
    data = generate(tmp_path / "data", train=2, val=0, imgsz=128, seed=4) / "data.yaml"
    seen: list[QuantizeRequest] = []

    def quantizer(req: QuantizeRequest) -> QuantizeResult:
        seen.append(req)
        shutil.copyfile(qdq_model, req.out)
        return QuantizeResult(req.out, "stand-in 0.0", "Q/DQ for the test")

    opts = Int8Options(calib=str(data), calib_images=2, cache=False)
    result = export(small_model, "tensorrt", tmp_path / "m.engine", "int8", parity=False, int8=opts,
                    quantizer=quantizer, converter_options={"options": FAKE})
    assert len(seen) == 1 and seen[0].artifact.suffix == ".onnx" and seen[0].out.suffix == ".onnx"
    assert trt.log.count(("builder", "build")) == 1 and [c[1] for c in trt.config_log() if c[0] == "flag"] == ["INT8"]
    side = json.loads(sidecar_path(result.path).read_text())
    assert side["int8"]["quantizer"] == "stand-in 0.0" and side["precision"] in ("int8", "mixed")
    assert side["tensorrt"] == "10.3.0" and result.quantization is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "m.engine", "m.engine.json"]
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # no TensorRT: refused before any calibration
    with pytest.raises(BackendUnavailableError, match="needs the Python package 'tensorrt'"):
        export(small_model, "tensorrt", tmp_path / "n.engine", "int8", parity=False, int8=opts, quantizer=quantizer)
    assert len(seen) == 1 and not (tmp_path / "n.engine").exists()


# --- what is missing, in one line ------------------------------------------------------------------------------

def test_missing_package_names_every_missing_piece(monkeypatch: pytest.MonkeyPatch, small_model: Path,
                                                   tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError, on any host
    monkeypatch.setattr(tensorrt_backend, "host_lacks", lambda: [
        "the Python package 'tensorrt'", "the NVIDIA driver (no libcuda, no /proc/driver/nvidia)",
        "an NVIDIA GPU (no /dev/nvidia0)"])
    with pytest.raises(BackendUnavailableError) as err:
        to_tensorrt(small_model, tmp_path / "m.engine", "fp32")
    assert str(err.value) == (
        "backend 'tensorrt' needs the Python package 'tensorrt' (building a TensorRT engine; this host also lacks "
        "the NVIDIA driver (no libcuda, no /proc/driver/nvidia) and an NVIDIA GPU (no /dev/nvidia0)); install it "
        "with: pip install 'edgebench[tensorrt]'")
    assert not list(tmp_path.iterdir())


def test_missing_binding_driver_and_gpu(trt: FakeTrt, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda_buffers, "binding_installed", lambda name: False)
    monkeypatch.setattr(tensorrt_backend, "host_lacks", lambda: ["a CUDA binding ('cuda-python' or 'pycuda')",
                                                                  "an NVIDIA GPU (no /dev/nvidia0)"])
    with pytest.raises(BackendUnavailableError, match=r"needs the Python package 'cuda-python' \(running a TensorRT "
                                                      r"engine needs cuda-python \(or pycuda\) for device buffers; "
                                                      r"this host also lacks an NVIDIA GPU"):
        tensorrt_backend.open_gpu("running a TensorRT engine")
    with pytest.raises(HardwareUnavailableError, match="^building a TensorRT engine needs an NVIDIA GPU: GPU 1 "
                                                       "asked for; this host has 1$"):
        tensorrt_backend.open_gpu("building a TensorRT engine", "fake", 1)


def test_host_lacks_reads_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda_buffers, "driver_found", lambda: False)
    monkeypatch.setattr(cuda_buffers, "gpu_node_found", lambda: False)
    lacks = host_lacks()
    assert lacks[-2:] == ["the NVIDIA driver (no libcuda, no /proc/driver/nvidia)", "an NVIDIA GPU (no /dev/nvidia0)"]
    monkeypatch.setattr(cuda_buffers, "driver_found", lambda: True)
    monkeypatch.setattr(cuda_buffers, "gpu_node_found", lambda: True)
    assert not [p for p in host_lacks() if "NVIDIA" in p]


def _hide_tensorrt(tmp_path: Path) -> dict[str, str]:
    """An environment in which `import tensorrt` fails on any host (a package that raises on import)."""
    pkg = tmp_path / "hide" / "tensorrt"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(pkg.parent), str(ROOT)]),
            "EDGEBENCH_CACHE": str(tmp_path / ".cache")}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_cli_export_without_tensorrt_exits_2_and_writes_nothing(precision: str, small_model: Path, qdq_model: Path,
                                                                tmp_path: Path) -> None:
    model = qdq_model if precision == "int8" else small_model  # a Q/DQ ONNX needs no calibration images
    out = tmp_path / "out" / "m.engine"
    proc = subprocess.run([sys.executable, "-m", "bench", "export", "--model", str(model), "--to", "tensorrt",
                           "--precision", precision, "-o", str(out)], capture_output=True, text=True, timeout=120,
                          env=_hide_tensorrt(tmp_path), cwd=tmp_path)
    assert_one_line_error(proc, "backend 'tensorrt' needs the Python package 'tensorrt' (building a TensorRT engine",
                          "import failed: hidden by the test", "pip install 'edgebench[tensorrt]'")
    assert not (tmp_path / "out").exists()


# --- the compatibility check -----------------------------------------------------------------------------------

def test_release_and_compatibility() -> None:
    assert release("10.3.0.30") == (10, 3, 0) and release("10.3.0") == (10, 3, 0) and release("10.3") == (10, 3)
    side = {"tensorrt": "10.3.0.30", "compute_capability": "8.7", "device_name": "Orin"}
    assert compatibility_problem(side, "10.3.0", ORIN) is None
    assert compatibility_problem({}, "10.9.0", ORIN) is None  # nothing recorded: nothing to check
    assert compatibility_problem(side, "10.4.0", ORIN) == ("it was built with TensorRT 10.3.0.30, this host has "
                                                           "TensorRT 10.4.0")
    h200 = GpuInfo(0, "NVIDIA H200", "9.0", "13.0", 143000)
    both = compatibility_problem(side, "10.4.0", h200)
    assert both is not None and both.endswith("it was built for compute capability 8.7 (Orin), this GPU is 9.0 "
                                              "(NVIDIA H200)")
    assert device_index("auto") == 0 and device_index("gpu:1") == 1 and device_index("cuda:2") == 2
    for bad in ("cpu", "gpu:x", "dla"):
        with pytest.raises(InputError):
            device_index(bad)


def _engine(trt: FakeTrt, tmp_path: Path, name: str = "m.engine", **side: Any) -> Path:
    path = tmp_path / name
    path.write_bytes(b"ENGINE:" + json.dumps(trt.engine_io).encode())
    record = {"tensorrt": "10.3.0", "compute_capability": "8.7", "device_name": "Orin", "precision": "fp16"}
    sidecar_path(path).write_text(json.dumps({**record, **side}))
    return path


def test_mismatch_is_one_line_before_deserialising(trt: FakeTrt, tmp_path: Path) -> None:
    path = _engine(trt, tmp_path, tensorrt="10.0.1", compute_capability="9.0", device_name="NVIDIA H200")
    with pytest.raises(ModelLoadError) as err:
        load(path, options=RuntimeOptions(extra={"cuda": "fake"}))
    assert str(err.value) == (
        "TensorRT engine 'm.engine' cannot load here: it was built with TensorRT 10.0.1, this host has TensorRT "
        "10.3.0; it was built for compute capability 9.0 (NVIDIA H200), this GPU is 8.7 (Orin); rebuild it on this "
        "device: edgebench export --model M.onnx --to tensorrt -o M.engine")
    assert ("runtime", "deserialize") not in trt.log and trt.cuda.host_allocs == 0


def test_an_engine_that_does_not_deserialise(trt: FakeTrt, tmp_path: Path) -> None:
    path = tmp_path / "x.engine"
    path.write_bytes(b"not an engine")
    with pytest.raises(ModelLoadError, match="cannot deserialise 'x.engine' .it has no sidecar, so its TensorRT "
                                             "version and GPU were not checked"):
        load(path, options=RuntimeOptions(extra={"cuda": "fake"}))


# --- the runtime: buffers once, one stream, three stages -------------------------------------------------------

def test_runtime_runs_async_with_buffers_allocated_once(trt: FakeTrt, tmp_path: Path) -> None:
    path = _engine(trt, tmp_path)
    rt = load(path, options=RuntimeOptions(extra={"cuda": "fake"}))
    assert [(s.name, s.shape) for s in rt.inputs] == [("images", (1, 3, 32, 32))]
    assert [(s.name, s.shape) for s in rt.outputs] == [("output0", (1, 6, 10))]
    assert rt.last_stages_ms == {}
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.random((1, 3, 32, 32), dtype=np.float32)
        (y,) = rt.infer(x)
        np.testing.assert_array_equal(y, 2 * x.reshape(1, -1)[:, :60].reshape(1, 6, 10))
    assert rt.last_stages_ms == {"h2d": H2D_MS, "compute": COMPUTE_MS, "d2h": D2H_MS}
    assert trt.cuda.host_allocs == 2 and len(trt.cuda.mem) == 2  # one pinned + one device buffer per tensor
    assert [e[2] for e in trt.log if e[1] == "set_tensor_address"] == ["images", "output0"]  # bound once
    one_call = [c[0] for c in trt.cuda.calls[-8:]]
    assert one_call == ["event", "htod", "event", "enqueue", "event", "dtoh", "event", "sync"]
    assert ("enqueue", 77) in trt.cuda.calls  # the stream handle goes to execute_async_v3
    assert rt.precision_used is Precision.FP16 and rt.engine_versions()["tensorrt"] == "10.3.0"
    assert rt.device_info()["compute_capability"] == "8.7" and rt.metadata()["device_name"] == "Orin"
    rt.close()
    rt.close()
    assert trt.cuda.host_frees == 2 and trt.cuda.mem == {} and ("stream_destroy",) in trt.cuda.calls
    with pytest.raises(ModelLoadError, match="was closed"):
        rt.infer(x)


def test_dynamic_batch_engine_runs_at_the_asked_batch(trt: FakeTrt, tmp_path: Path) -> None:
    trt.engine_io["images"] = ["INPUT", [-1, 3, 32, 32], [[1, 3, 32, 32], [4, 3, 32, 32], [8, 3, 32, 32]]]
    trt.engine_io["output0"] = ["OUTPUT", [-1, 6, 10], None]
    path = _engine(trt, tmp_path)
    with load(path, options=RuntimeOptions(extra={"cuda": "fake"})) as rt:
        assert rt.inputs[0].shape == (1, 3, 32, 32)  # default: the profile's minimum batch
    with load(path, options=RuntimeOptions(extra={"cuda": "fake", "batch": 4})) as rt:
        x = np.ones((4, 3, 32, 32), np.float32)
        assert rt.outputs[0].shape == (4, 6, 10) and rt.infer(x)[0].shape == (4, 6, 10)
    with pytest.raises(InputError, match="batch 9 is outside the engine's profile for 'images' .1..8."):
        load(path, options=RuntimeOptions(extra={"cuda": "fake", "batch": 9}))


def test_precision_request_is_checked(trt: FakeTrt, tmp_path: Path) -> None:
    path = _engine(trt, tmp_path, precision="mixed")
    with load(path, options=RuntimeOptions(precision="int8", extra={"cuda": "fake"})) as rt:
        assert rt.precision_used is Precision.MIXED
    with pytest.raises(PrecisionUnsupportedError, match="tensorrt cannot run this model at fp16; it runs mixed"):
        load(path, options=RuntimeOptions(precision="fp16", extra={"cuda": "fake"}))


def test_dla_engine_sets_the_runtime_dla_core(trt: FakeTrt, tmp_path: Path) -> None:
    path = _engine(trt, tmp_path, builder={"dla_core": 1})
    with load(path, options=RuntimeOptions(extra={"cuda": "fake"})):
        assert ("runtime", "set", "DLA_core", 1) in trt.log


# --- on real hardware (skipped without it) ---------------------------------------------------------------------

def _cuda_gpu() -> bool:
    try:
        cuda_buffers.cuda_api("cuda-python").device(0)
    except (BackendUnavailableError, HardwareUnavailableError):
        return False
    return True


@pytest.mark.gpu
def test_pinned_buffers_stream_and_events_on_a_real_gpu() -> None:
    """cuda-python's calls on a GPU (no TensorRT needed): pinned H2D, a device-to-device copy as the "engine",
    D2H, and the three event-timed stages."""
    if not cuda_buffers.binding_installed("cuda-python") or not _cuda_gpu():
        pytest.skip(CUDA_SKIP)
    api = cuda_buffers.cuda_api("cuda-python")
    api.use_device(0)
    io = tensorrt_backend.IOBuffers(api, [("in", (1, 3, 64, 64), np.dtype(np.float32), True),
                                          ("out", (1, 3, 64, 64), np.dtype(np.float32), False)])
    stream, clock = api.stream_create(), tensorrt_backend.StageClock(api)
    rt = api._rt  # type: ignore[attr-defined]

    def copy() -> None:
        src, dst = io.inputs[0], io.outputs[0]
        rt.cudaMemcpyAsync(dst.device, src.device, src.array.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice,
                           stream)

    x = np.random.default_rng(1).random((1, 3, 64, 64), dtype=np.float32)
    (y,) = tensorrt_backend.run_on_stream(api, io, stream, copy, clock, [x])
    np.testing.assert_array_equal(y, x)
    stages = clock.stages_ms()
    assert set(stages) == {"h2d", "compute", "d2h"} and all(v >= 0 for v in stages.values())
    clock.close()
    io.close()
    api.stream_destroy(stream)


@pytest.mark.gpu
def test_engine_build_and_run_on_a_real_gpu(small_model: Path, tmp_path: Path) -> None:
    """The small model built at fp32 and fp16 on this GPU, loaded and compared with ONNX Runtime."""
    if host_lacks() or not _cuda_gpu():
        pytest.skip(GPU_SKIP)
    ref = load(small_model)
    x = np.random.default_rng(2).random(ref.inputs[0].shape, dtype=np.float32)  # type: ignore[arg-type]
    want = ref.infer(x)[0]
    for precision, tol in (("fp32", 1e-3), ("fp16", 5e-2)):
        path = to_tensorrt(small_model, tmp_path / f"m-{precision}.engine", precision)
        with load(path) as rt:
            got = rt.infer(x)[0]
            assert set(rt.last_stages_ms) == {"h2d", "compute", "d2h"}
        assert np.abs(got - want).max() <= tol * max(1.0, float(np.abs(want).max()))


def test_qdq_fixture_is_quantized(qdq_model: Path) -> None:
    """The int8 tests above start from a real Q/DQ ONNX (ONNX Runtime's quantizer), not a float one."""
    assert onnx_precision(qdq_model) in (Precision.INT8, Precision.MIXED)
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(qdq_model)).graph.node)
