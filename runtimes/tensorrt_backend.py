"""TensorRT backend: a serialized engine (.engine/.plan, built by converters.tensorrt) run on an NVIDIA GPU.

Before deserialising, the engine's sidecar (`<engine>.json`) is checked against this host: an engine
only loads with the TensorRT release and on the GPU compute capability it was built with, and a
mismatch is one line (ModelLoadError) saying which and how to rebuild, not a crash inside TensorRT.
Pinned host buffers and device buffers are allocated once per I/O tensor; each `infer` copies the
inputs into the pinned buffers, then on one stream: host-to-device copies, `execute_async_v3`,
device-to-host copies, with a CUDA event between each, so `last_stages_ms` gives the H2D, compute and
D2H times of the last call (GPU time, from the events). The CUDA calls go through
runtimes.cuda_buffers (cuda-python, or pycuda), which tests replace.

Precision: from the sidecar (what the engine was built with: fp32, fp16 allowed, or int8/mixed from a
Q/DQ ONNX); UNKNOWN for an engine without one. Written against TensorRT 10's Python API; unverified
on hardware (no TensorRT and no GPU on this project's CI hosts).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from runtimes.base import Runtime, RuntimeOptions, TensorSpec, first_line, read_sidecar_json
from runtimes.cuda_buffers import CudaApi, GpuInfo, HostBuffer, cuda_api, host_lacks
from runtimes.errors import (
    BackendUnavailableError,
    EdgebenchError,
    HardwareUnavailableError,
    InputError,
    ModelLoadError,
)
from runtimes.precision import Precision
from runtimes.registry import import_engine

ENGINE_SUFFIXES = (".engine", ".plan")
#: the stages of one `infer` on the GPU, timed by CUDA events (ms)
STAGES = ("h2d", "compute", "d2h")
#: the sidecar keys the compatibility check reads
VERSION_KEY, CC_KEY, DEVICE_KEY = "tensorrt", "compute_capability", "device_name"
_REBUILD = "rebuild it on this device: edgebench export --model M.onnx --to tensorrt -o M.engine"
_WHY = "a TensorRT engine runs at the precision it was built with; rebuild it with --precision"


def require_tensorrt(what: str) -> ModuleType:
    """The tensorrt module; else BackendUnavailableError saying `what` needs it and what else this host lacks."""
    try:
        return import_engine("tensorrt")
    except BackendUnavailableError as exc:
        others = [p for p in host_lacks() if "'tensorrt'" not in p]
        also = f"; this host also lacks {join_phrases(others)}" if others else ""
        broken = f"; import failed: {first_line(exc.__cause__)}" if exc.__cause__ and _found("tensorrt") else ""
        raise BackendUnavailableError("tensorrt", "tensorrt", "tensorrt", f"{what}{broken}{also}") from exc


def open_gpu(what: str, binding: str = "auto", index: int = 0) -> tuple[CudaApi, GpuInfo]:
    """The CUDA binding and GPU `index`; BackendUnavailableError without a binding, HardwareUnavailableError
    without the driver or the GPU, each saying what else is missing."""
    try:
        api = cuda_api(binding)
    except BackendUnavailableError as exc:
        others = [p for p in host_lacks() if "NVIDIA" in p]
        also = f"; this host also lacks {join_phrases(others)}" if others else ""
        raise BackendUnavailableError("tensorrt", "cuda-python", "tensorrt",
                                      f"{what} needs cuda-python (or pycuda) for device buffers{also}") from exc
    try:
        return api, api.device(index)
    except HardwareUnavailableError as exc:
        raise HardwareUnavailableError(f"{what} needs an NVIDIA GPU: {exc}") from exc


def join_phrases(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _found(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def device_index(device: str | None) -> int:
    """The GPU index of a device option: auto, gpu, cuda -> 0; gpu:N, cuda:N -> N."""
    name = str(device or "auto").strip().lower()
    kind, _, number = name.partition(":")
    if kind not in ("auto", "gpu", "cuda") or (number and not number.isdigit()):
        raise InputError(f"the TensorRT backend runs on an NVIDIA GPU ('gpu', 'gpu:N', 'cuda:N'), not '{device}'")
    return int(number or 0)


def release(version: str) -> tuple[int, ...]:
    """major.minor.patch of a TensorRT version string ("10.3.0.30" -> (10, 3, 0)): what an engine is tied to."""
    parts = []
    for piece in str(version).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def compatibility_problem(side: Mapping[str, Any], tensorrt_version: str, gpu: GpuInfo) -> str | None:
    """Why an engine built as its sidecar says cannot load on this host (another TensorRT release, another
    GPU compute capability), or None; keys the sidecar lacks are not checked."""
    problems = []
    built = side.get(VERSION_KEY)
    if built and release(str(built)) != release(tensorrt_version):
        problems.append(f"it was built with TensorRT {built}, this host has TensorRT {tensorrt_version}")
    cc = side.get(CC_KEY)
    if cc and str(cc) != gpu.compute_capability:
        problems.append(f"it was built for compute capability {cc} ({side.get(DEVICE_KEY, 'unknown GPU')}), "
                        f"this GPU is {gpu.compute_capability} ({gpu.name})")
    return "; ".join(problems) or None


@dataclass
class TensorBuffer:
    """One I/O tensor's pinned host buffer and device buffer (allocated once)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    is_input: bool
    host: HostBuffer
    device: int

    @property
    def array(self) -> np.ndarray:
        """The pinned host buffer as a typed array of the tensor's shape (no copy)."""
        nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        return self.host.array[:nbytes].view(self.dtype).reshape(self.shape)


class IOBuffers:
    """Pinned host and device buffers for each I/O tensor, allocated once, freed by `close` (twice is safe)."""

    def __init__(self, api: CudaApi, tensors: Sequence[tuple[str, tuple[int, ...], np.dtype[Any], bool]]) -> None:
        self._api = api
        self.tensors: list[TensorBuffer] = []
        try:
            for name, shape, dtype, is_input in tensors:
                nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
                host = api.host_alloc(nbytes)
                self.tensors.append(TensorBuffer(name, tuple(shape), np.dtype(dtype), is_input, host, 0))
                self.tensors[-1].device = api.device_alloc(nbytes)
        except BaseException:
            self.close()
            raise

    @property
    def inputs(self) -> list[TensorBuffer]:
        return [t for t in self.tensors if t.is_input]

    @property
    def outputs(self) -> list[TensorBuffer]:
        return [t for t in self.tensors if not t.is_input]

    def close(self) -> None:
        while self.tensors:
            t = self.tensors.pop()
            if t.device:
                self._api.device_free(t.device)
            self._api.host_free(t.host)


class StageClock:
    """Four CUDA events on the stream: before H2D, after H2D, after compute, after D2H."""

    def __init__(self, api: CudaApi) -> None:
        self._api = api
        self._events: list[Any] = []
        for _ in range(len(STAGES) + 1):
            self._events.append(api.event_create())

    def mark(self, i: int, stream: Any) -> None:
        self._api.event_record(self._events[i], stream)

    def stages_ms(self) -> dict[str, float]:
        """{h2d, compute, d2h} in ms, once the stream has finished."""
        ev = self._events
        return {s: self._api.event_elapsed_ms(ev[i], ev[i + 1]) for i, s in enumerate(STAGES)}

    def close(self) -> None:
        while self._events:
            self._api.event_destroy(self._events.pop())


def run_on_stream(api: CudaApi, io: IOBuffers, stream: Any, enqueue: Callable[[], None], clock: StageClock,
                  inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Inputs into the pinned buffers, then on `stream`: H2D copies, `enqueue()` (the engine), D2H copies, each
    stage between two events; waits for the stream and returns copies of the outputs."""
    for buf, arr in zip(io.inputs, inputs, strict=True):
        np.copyto(buf.array, arr, casting="same_kind")
    clock.mark(0, stream)
    for buf in io.inputs:
        api.copy_htod(buf.device, buf.array, stream)
    clock.mark(1, stream)
    enqueue()
    clock.mark(2, stream)
    for buf in io.outputs:
        api.copy_dtoh(buf.array, buf.device, stream)
    clock.mark(3, stream)
    api.stream_sync(stream)
    return [buf.array.copy() for buf in io.outputs]


class TensorrtRuntime(Runtime):
    """A TensorRT engine on an NVIDIA GPU. Options.extra: cuda ("auto", "cuda-python", "pycuda"), batch (the
    batch to run a dynamic-batch engine at; default its profile's minimum)."""

    name = "tensorrt"

    def __init__(self, path: str | Path, options: RuntimeOptions | None = None) -> None:
        super().__init__(path, options)
        if self.path.suffix.lower() not in ENGINE_SUFFIXES:
            raise ModelLoadError(f"the tensorrt backend reads {', '.join(ENGINE_SUFFIXES)} files, "
                                 f"got '{self.path.name}'")
        index = device_index(self.options.device)
        self._side = read_sidecar_json(self.path)
        self._trt = require_tensorrt("running a TensorRT engine")
        self._api, self.gpu = open_gpu("running a TensorRT engine", str(self.options.extra.get("cuda", "auto")), index)
        problem = compatibility_problem(self._side, str(self._trt.__version__), self.gpu)
        if problem:
            raise ModelLoadError(f"TensorRT engine '{self.path.name}' cannot load here: {problem}; {_REBUILD}")
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._io: IOBuffers | None = None
        self._clock: StageClock | None = None
        self._stream: Any = None
        self._api.use_device(index)
        self._engine = self._deserialize()
        self._context = self._engine.create_execution_context()
        self._open_buffers()
        self._precision = _precision(self._side.get("precision"))
        self._check_precision(_WHY)

    def _deserialize(self) -> Any:
        trt = self._trt
        self._logger = trt.Logger(trt.Logger.ERROR)  # kept: TensorRT holds it for the runtime's lifetime
        self._trt_runtime = trt.Runtime(self._logger)
        dla = (self._side.get("builder") or {}).get("dla_core")
        if dla is not None:
            self._trt_runtime.DLA_core = int(dla)
        engine = self._trt_runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            unchecked = "" if self._side else " (it has no sidecar, so its TensorRT version and GPU were not checked)"
            raise ModelLoadError(f"TensorRT {trt.__version__} cannot deserialise '{self.path.name}'{unchecked}; "
                                 f"{_REBUILD}")
        return engine

    def _open_buffers(self) -> None:
        """Fix the input shapes, allocate the buffers once, bind their addresses, make the stream and events."""
        trt, engine, ctx = self._trt, self._engine, self._context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        tensors = []
        for name in names:
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            if is_input:
                ctx.set_input_shape(name, self._input_shape(name))
        for name in names:
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(int(d) for d in ctx.get_tensor_shape(name))
            tensors.append((name, shape, np.dtype(trt.nptype(engine.get_tensor_dtype(name))), is_input))
        self._io = IOBuffers(self._api, tensors)
        for buf in self._io.tensors:
            ctx.set_tensor_address(buf.name, buf.device)
        self._stream = self._api.stream_create()
        self._clock = StageClock(self._api)
        self._inputs = [TensorSpec(b.name, b.shape, b.dtype.name) for b in self._io.inputs]
        self._outputs = [TensorSpec(b.name, b.shape, b.dtype.name) for b in self._io.outputs]

    def _input_shape(self, name: str) -> tuple[int, ...]:
        """The engine's input shape with its dynamic dims fixed: the batch to options.extra["batch"], else the
        profile's minimum; other dims to the profile's optimum."""
        shape = [int(d) for d in self._engine.get_tensor_shape(name)]
        if all(d > 0 for d in shape):
            return tuple(shape)
        low, opt, high = ([int(d) for d in s] for s in self._engine.get_tensor_profile_shape(name, 0))
        batch = int(self.options.extra.get("batch") or low[0])
        if not low[0] <= batch <= high[0]:
            raise InputError(f"batch {batch} is outside the engine's profile for '{name}' ({low[0]}..{high[0]})")
        return tuple(batch if i == 0 and d < 0 else (d if d > 0 else opt[i]) for i, d in enumerate(shape))

    def _run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if self._io is None or self._clock is None:
            raise ModelLoadError(f"'{self.path.name}' was closed")
        with self._lock:
            outs = run_on_stream(self._api, self._io, self._stream, self._enqueue, self._clock, inputs)
            self._last = self._clock.stages_ms()
        return outs

    def _enqueue(self) -> None:
        if not self._context.execute_async_v3(self._api.stream_handle(self._stream)):
            raise EdgebenchError(f"TensorRT could not enqueue '{self.path.name}' (execute_async_v3 returned False)")

    @property
    def last_stages_ms(self) -> dict[str, float]:
        """H2D, compute and D2H times (ms, CUDA events) of the last `infer`; {} before the first."""
        return dict(self._last)

    @property
    def precision_used(self) -> Precision:
        """What the engine was built with, from its sidecar (UNKNOWN without one)."""
        return self._precision

    def device_info(self) -> dict[str, Any]:
        """The GPU this runtime runs on (for reports)."""
        g = self.gpu
        return {"index": g.index, "name": g.name, "compute_capability": g.compute_capability, "driver": g.driver,
                "memory_mib": g.memory_mib}

    def engine_versions(self) -> dict[str, str]:
        return {"tensorrt": str(self._trt.__version__), self._api.name: self._api.version(),
                "cuda_driver": self.gpu.driver}

    def close(self) -> None:
        if self._io is not None:
            self._io.close()
            self._io = None
        if self._clock is not None:
            self._clock.close()
            self._clock = None
        if self._stream is not None:
            self._api.stream_destroy(self._stream)
            self._stream = None
        self._context = self._engine = None


def _precision(value: Any) -> Precision:
    try:
        return Precision.parse(str(value)) if value else Precision.UNKNOWN
    except EdgebenchError:
        return Precision.UNKNOWN
