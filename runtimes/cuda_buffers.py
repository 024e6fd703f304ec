"""The CUDA calls of the TensorRT backend, behind one small interface (CudaApi) that tests replace.

What TensorRT needs besides itself: the GPU's facts (name, compute capability, driver), pinned host
buffers, device buffers, one stream, timing events and asynchronous copies. Two implementations:
cuda-python's runtime API (`cuda.bindings.runtime`, `cuda.cudart` before cuda-python 12.6), the default,
and pycuda (`pycuda.driver`), which builds from source against CUDA's headers (`cuda.h`): it does not
build on a host without the CUDA toolkit, so cuda-python, which ships wheels, comes first. `host_lacks`
says what this host lacks for the backend (package, CUDA binding, driver, GPU) without importing an engine.

Written against cuda-python 12.x/13.x and pycuda 2024+; on this project's CI hosts (no GPU) only the
no-driver path of cuda-python has run: the rest is unverified on hardware.
"""
from __future__ import annotations

import abc
import ctypes
import ctypes.util
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from runtimes.errors import BackendUnavailableError, EdgebenchError, HardwareUnavailableError

#: files whose presence says the NVIDIA driver is installed (desktop/server kernel module, Jetson's L4T)
DRIVER_FILES = ("/proc/driver/nvidia/version", "/etc/nv_tegra_release")
#: device nodes of an NVIDIA GPU (discrete, Jetson integrated)
GPU_NODES = ("/dev/nvidia0", "/dev/nvhost-ctrl-gpu")


class CudaError(EdgebenchError):
    """A CUDA call failed (out of memory, an invalid handle, a launch failure, ...)."""


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as CUDA reports it."""

    index: int
    name: str
    compute_capability: str  # "8.7" (Jetson Orin), "9.0" (H100/H200)
    driver: str  # the CUDA version the driver supports, "12.6"
    memory_mib: int


@dataclass
class HostBuffer:
    """Pinned (page-locked) host memory: its address and a uint8 view of it."""

    ptr: int
    array: np.ndarray
    handle: Any = None  # what the API needs to free it


class CudaApi(abc.ABC):
    """The CUDA calls the TensorRT runtime makes; streams and events are opaque handles."""

    name: ClassVar[str]
    package: ClassVar[str]
    also: ClassVar[tuple[str, ...]] = ()  # other distributions that carry the binding

    @abc.abstractmethod
    def device(self, index: int) -> GpuInfo:
        """Facts of GPU `index`; HardwareUnavailableError without a driver or that GPU."""

    @abc.abstractmethod
    def use_device(self, index: int) -> None:
        """Make GPU `index` current for the calls that follow (and for TensorRT)."""

    @abc.abstractmethod
    def host_alloc(self, nbytes: int) -> HostBuffer: ...

    @abc.abstractmethod
    def host_free(self, buf: HostBuffer) -> None: ...

    @abc.abstractmethod
    def device_alloc(self, nbytes: int) -> int: ...

    @abc.abstractmethod
    def device_free(self, ptr: int) -> None: ...

    @abc.abstractmethod
    def stream_create(self) -> Any: ...

    @abc.abstractmethod
    def stream_handle(self, stream: Any) -> int:
        """The stream as the integer handle TensorRT's execute_async_v3 takes."""

    @abc.abstractmethod
    def stream_sync(self, stream: Any) -> None: ...

    @abc.abstractmethod
    def stream_destroy(self, stream: Any) -> None: ...

    @abc.abstractmethod
    def event_create(self) -> Any: ...

    @abc.abstractmethod
    def event_record(self, event: Any, stream: Any) -> None: ...

    @abc.abstractmethod
    def event_elapsed_ms(self, start: Any, end: Any) -> float: ...

    @abc.abstractmethod
    def event_destroy(self, event: Any) -> None: ...

    @abc.abstractmethod
    def copy_htod(self, dst: int, src: np.ndarray, stream: Any) -> None:
        """Copy the pinned `src` to device address `dst`, asynchronously on `stream`."""

    @abc.abstractmethod
    def copy_dtoh(self, dst: np.ndarray, src: int, stream: Any) -> None:
        """Copy device address `src` into the pinned `dst`, asynchronously on `stream`."""

    def version(self) -> str:
        """The binding's own version (cuda-python's from its cuda-bindings wheel when installed alone)."""
        from importlib.metadata import PackageNotFoundError, version

        for dist in (self.package, *self.also):
            try:
                return version(dist)
            except PackageNotFoundError:
                continue
        return "unknown"


def pinned_view(ptr: int, nbytes: int) -> np.ndarray:
    """A writable uint8 numpy view of `nbytes` at host address `ptr` (no copy)."""
    return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))


class CudartApi(CudaApi):
    """cuda-python's CUDA runtime API (every call returns (error, value...))."""

    name = "cuda-python"
    package = "cuda-python"
    also = ("cuda-bindings",)

    def __init__(self) -> None:
        self._rt = _import_cudart()

    def _call(self, what: str, result: Any) -> Any:
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise CudaError(f"CUDA {what} failed: {self._text(err)}")
        return values[0] if len(values) == 1 else None

    def _text(self, err: Any) -> str:
        _, text = self._rt.cudaGetErrorString(err)
        return text.decode() if isinstance(text, bytes) else str(text)

    def device(self, index: int) -> GpuInfo:
        rt = self._rt
        driver = int(self._call("cudaDriverGetVersion", rt.cudaDriverGetVersion()))
        if driver == 0:
            raise HardwareUnavailableError("no NVIDIA driver: CUDA reports driver version 0 (libcuda not found)")
        err, count = rt.cudaGetDeviceCount()
        if int(err) != 0 or not count:
            raise HardwareUnavailableError(f"no NVIDIA GPU: CUDA finds none ({self._text(err)})")
        if not 0 <= index < count:
            raise HardwareUnavailableError(f"GPU {index} asked for; this host has {count} (0..{count - 1})")
        props = self._call("cudaGetDeviceProperties", rt.cudaGetDeviceProperties(index))
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        return GpuInfo(index, name.rstrip("\x00").strip(), f"{props.major}.{props.minor}",
                       f"{driver // 1000}.{driver % 1000 // 10}", int(props.totalGlobalMem) // 2**20)

    def use_device(self, index: int) -> None:
        self._call("cudaSetDevice", self._rt.cudaSetDevice(index))

    def host_alloc(self, nbytes: int) -> HostBuffer:
        ptr = int(self._call("cudaMallocHost", self._rt.cudaMallocHost(nbytes)))
        return HostBuffer(ptr, pinned_view(ptr, nbytes))

    def host_free(self, buf: HostBuffer) -> None:
        self._call("cudaFreeHost", self._rt.cudaFreeHost(buf.ptr))

    def device_alloc(self, nbytes: int) -> int:
        return int(self._call("cudaMalloc", self._rt.cudaMalloc(nbytes)))

    def device_free(self, ptr: int) -> None:
        self._call("cudaFree", self._rt.cudaFree(ptr))

    def stream_create(self) -> Any:
        return self._call("cudaStreamCreate", self._rt.cudaStreamCreate())

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def stream_sync(self, stream: Any) -> None:
        self._call("cudaStreamSynchronize", self._rt.cudaStreamSynchronize(stream))

    def stream_destroy(self, stream: Any) -> None:
        self._call("cudaStreamDestroy", self._rt.cudaStreamDestroy(stream))

    def event_create(self) -> Any:
        return self._call("cudaEventCreate", self._rt.cudaEventCreate())

    def event_record(self, event: Any, stream: Any) -> None:
        self._call("cudaEventRecord", self._rt.cudaEventRecord(event, stream))

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self._call("cudaEventElapsedTime", self._rt.cudaEventElapsedTime(start, end)))

    def event_destroy(self, event: Any) -> None:
        self._call("cudaEventDestroy", self._rt.cudaEventDestroy(event))

    def copy_htod(self, dst: int, src: np.ndarray, stream: Any) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call("cudaMemcpyAsync (H2D)", self._rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, kind, stream))

    def copy_dtoh(self, dst: np.ndarray, src: int, stream: Any) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync (D2H)", self._rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, kind, stream))


def _import_cudart() -> Any:
    """cuda-python's runtime module: `cuda.bindings.runtime` (12.6+), else the older `cuda.cudart`."""
    for module in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(module)
        except ImportError:
            continue
    raise BackendUnavailableError("tensorrt", "cuda-python", "tensorrt", "device buffers and streams")


class PycudaApi(CudaApi):
    """pycuda's driver API, on the device's primary context (the one TensorRT's runtime API uses)."""

    name = "pycuda"
    package = "pycuda"

    def __init__(self) -> None:
        try:
            self._drv = importlib.import_module("pycuda.driver")
        except ImportError as exc:
            raise BackendUnavailableError("tensorrt", "pycuda", "tensorrt", f"import failed: {exc}") from exc
        self._ctx: Any = None
        self._allocations: dict[int, Any] = {}

    def device(self, index: int) -> GpuInfo:
        drv = self._drv
        try:
            drv.init()
            count = drv.Device.count()
        except drv.Error as exc:
            raise HardwareUnavailableError(f"no NVIDIA driver or GPU: pycuda cannot initialise CUDA ({exc})") from exc
        if not 0 <= index < count:
            raise HardwareUnavailableError(f"GPU {index} asked for; this host has {count}")
        dev = drv.Device(index)
        major, minor = dev.compute_capability()
        version = drv.get_driver_version()
        return GpuInfo(index, dev.name(), f"{major}.{minor}", f"{version // 1000}.{version % 1000 // 10}",
                       int(dev.total_memory()) // 2**20)

    def use_device(self, index: int) -> None:
        self._ctx = self._drv.Device(index).retain_primary_context()
        self._ctx.push()

    def host_alloc(self, nbytes: int) -> HostBuffer:
        array = self._drv.pagelocked_empty(nbytes, np.uint8)
        return HostBuffer(int(array.ctypes.data), array, array)

    def host_free(self, buf: HostBuffer) -> None:
        buf.handle = None  # pycuda frees page-locked memory with its array

    def device_alloc(self, nbytes: int) -> int:
        alloc = self._drv.mem_alloc(nbytes)
        self._allocations[int(alloc)] = alloc
        return int(alloc)

    def device_free(self, ptr: int) -> None:
        alloc = self._allocations.pop(ptr, None)
        if alloc is not None:
            alloc.free()

    def stream_create(self) -> Any:
        return self._drv.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def stream_sync(self, stream: Any) -> None:
        stream.synchronize()

    def stream_destroy(self, stream: Any) -> None:
        if self._ctx is not None:
            self._ctx.pop()
            self._ctx = None

    def event_create(self) -> Any:
        return self._drv.Event()

    def event_record(self, event: Any, stream: Any) -> None:
        event.record(stream)

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        return float(end.time_since(start))

    def event_destroy(self, event: Any) -> None:
        return None

    def copy_htod(self, dst: int, src: np.ndarray, stream: Any) -> None:
        self._drv.memcpy_htod_async(dst, src, stream)

    def copy_dtoh(self, dst: np.ndarray, src: int, stream: Any) -> None:
        self._drv.memcpy_dtoh_async(dst, src, stream)


#: the CUDA bindings by name, in the order "auto" tries them (tests register a fake here)
APIS: dict[str, type[CudaApi]] = {"cuda-python": CudartApi, "pycuda": PycudaApi}
#: the modules each binding is found by (any one; looked for, never imported; `cuda` is a namespace package)
API_MODULES = {"cuda-python": ("cuda.bindings", "cuda.cudart"), "pycuda": ("pycuda",)}


def binding_installed(name: str) -> bool:
    """Whether the CUDA binding `name` can be found (not imported); a registered fake counts as installed."""
    return name not in API_MODULES or any(_found(m) for m in API_MODULES[name])


def _found(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is absent
        return False


def cuda_api(name: str = "auto") -> CudaApi:
    """The CUDA binding `name` (one of APIS, or "auto": the first installed); BackendUnavailableError naming
    cuda-python when none is."""
    if name != "auto":
        if name not in APIS:
            raise EdgebenchError(f"unknown CUDA binding '{name}' (known: auto, {', '.join(APIS)})")
        return APIS[name]()
    for candidate in APIS:
        if binding_installed(candidate):
            return APIS[candidate]()
    raise BackendUnavailableError("tensorrt", "cuda-python", "tensorrt",
                                  "device buffers and streams need cuda-python (or pycuda)")


def driver_found() -> bool:
    """Whether the NVIDIA driver looks installed: its /proc entry, Jetson's L4T release file, or libcuda."""
    return any(Path(p).exists() for p in DRIVER_FILES) or ctypes.util.find_library("cuda") is not None


def gpu_node_found() -> bool:
    """Whether an NVIDIA GPU device node exists (/dev/nvidia0, or a Jetson's integrated GPU)."""
    return any(Path(p).exists() for p in GPU_NODES)


def host_lacks() -> list[str]:
    """What this host lacks to build or run TensorRT engines, one phrase each, in the order they are needed:
    the tensorrt package, a CUDA binding, the NVIDIA driver, an NVIDIA GPU; [] when nothing is seen missing.
    Imports nothing (the GPU is looked for by its device node)."""
    lacks = []
    if importlib.util.find_spec("tensorrt") is None:
        lacks.append("the Python package 'tensorrt'")
    if not any(binding_installed(name) for name in APIS):
        lacks.append("a CUDA binding ('cuda-python' or 'pycuda')")
    if not driver_found():
        lacks.append("the NVIDIA driver (no libcuda, no /proc/driver/nvidia)")
    if not gpu_node_found():
        lacks.append("an NVIDIA GPU (no /dev/nvidia0)")
    return lacks
