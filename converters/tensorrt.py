"""ONNX -> TensorRT engine (.engine) with TensorRT 10's Python builder, on the machine that will run it.

An engine is tied to the TensorRT release and the GPU (compute capability) it was built on, so it is
built on the device itself (a Jetson, a GPU server): `edgebench export --model M.onnx --to tensorrt -o
M.engine`. The builder reads the ONNX with TensorRT's ONNX parser (TensorRT 10 networks are explicit
batch, the only mode), then: a workspace limit (memory pool WORKSPACE), the builder optimisation level
(0-5, TensorRT's default 3), FP16 when asked, an optional timing cache file (read when present, written
back after the build: later builds of similar layers on the same device are faster), an optional DLA
core for Jetson AGX/NX Orin (with GPU fallback), and an optimisation profile (min/opt/max shapes) when
the ONNX has a dynamic batch or size.

INT8 is explicit quantization: the input is a Q/DQ ONNX (calibration.modelopt's, or any QAT/PTQ export),
and the INT8 builder flag is set, which TensorRT 10 requires for a (weakly typed) network with Q/DQ
layers; no calibrator (TensorRT's implicit calibrators are deprecated since 10.1). Layers outside Q/DQ run
in fp32, or fp16 with `int8_fp16`.

The engine's sidecar (`<engine>.json`) holds our model metadata and what the runtime checks before
loading: the TensorRT version, the GPU's compute capability and name, the builder's settings.
Without tensorrt, a CUDA binding, the driver or a GPU, nothing is written and the error says which.
Written against TensorRT 10's documented Python API; unverified on hardware (none at hand).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx

from converters.onnx_info import check_conversion, converted_props, onnx_io
from converters.quiet import quiet_output
from edge_sdk.atomic import write_bytes_atomic, write_json_atomic
from edge_sdk.meta import ModelMeta
from runtimes.base import sidecar_path
from runtimes.cuda_buffers import GpuInfo
from runtimes.errors import (
    BackendUnavailableError,
    ConversionError,
    HardwareUnavailableError,
    InputError,
    ModelLoadError,
)
from runtimes.onnx_precision import onnx_precision
from runtimes.precision import Precision, PrecisionUnsupportedError
from runtimes.tensorrt_backend import CC_KEY, DEVICE_KEY, VERSION_KEY, open_gpu, release, require_tensorrt

#: TensorRT's builder optimisation levels (3 is its default: 0 builds fastest, 5 searches longest)
OPT_LEVELS = range(6)
DEFAULT_OPT_LEVEL = 3
DEFAULT_WORKSPACE_MIB = 1024
#: the TensorRT major release this builder is written for (11 dropped the precision flags: strongly typed only)
SUPPORTED_MAJOR = 10
_BUILDING = "building a TensorRT engine"
_QUANTIZED = (Precision.INT8, Precision.MIXED)
Shapes = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


@dataclass(frozen=True)
class TensorrtOptions:
    """Builder options beyond the precision (checked when made)."""

    workspace_mib: int = DEFAULT_WORKSPACE_MIB  # the builder's scratch memory limit (memory pool WORKSPACE)
    opt_level: int = DEFAULT_OPT_LEVEL  # builder_optimization_level, 0..5
    timing_cache: str | None = None  # a file: read when present, written after the build
    dla_core: int | None = None  # Jetson AGX/NX Orin: build for this DLA core (fp16 or int8 only)
    gpu_fallback: bool = True  # with a DLA core: layers DLA cannot run go to the GPU
    batch: tuple[int, int, int] | None = None  # (min, opt, max) of a dynamic batch dimension
    int8_fp16: bool = False  # int8: let the layers outside Q/DQ run in fp16 too
    device: int = 0  # the GPU to build on
    cuda: str = "auto"  # the CUDA binding (runtimes.cuda_buffers.APIS)

    def __post_init__(self) -> None:
        if isinstance(self.workspace_mib, bool) or int(self.workspace_mib) < 1:
            raise InputError(f"TensorRT workspace must be at least 1 MiB, got {self.workspace_mib!r}")
        if self.opt_level not in OPT_LEVELS:
            raise InputError(f"TensorRT builder optimisation level must be 0..5, got {self.opt_level!r}")
        if self.dla_core is not None and int(self.dla_core) < 0:
            raise InputError(f"DLA core must be 0 or more, got {self.dla_core!r}")
        if int(self.device) < 0:
            raise InputError(f"GPU index must be 0 or more, got {self.device!r}")
        if self.batch is not None:
            low, opt, high = parse_batch(self.batch)
            object.__setattr__(self, "batch", (low, opt, high))


def parse_batch(value: str | Sequence[int]) -> tuple[int, int, int]:
    """(min, opt, max) from "1,4,8", "4" (fixed) or a sequence; InputError unless 1 <= min <= opt <= max."""
    items = [v for v in value.split(",") if v.strip()] if isinstance(value, str) else list(value)
    try:
        nums = [int(v) for v in items]
    except (TypeError, ValueError):
        raise InputError(f"batch profile must be MIN,OPT,MAX integers (or one), got {value!r}") from None
    if len(nums) == 1:
        nums *= 3
    if len(nums) != 3 or not 1 <= nums[0] <= nums[1] <= nums[2]:
        raise InputError(f"batch profile must be MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX, got {value!r}")
    return nums[0], nums[1], nums[2]


def check_request(asked: Precision, graph: Precision, opts: TensorrtOptions, name: str) -> None:
    """One-line refusals: int8 from a float ONNX, float from a Q/DQ one, fp32 on DLA, int8_fp16 without int8."""
    if asked is Precision.INT8 and graph not in _QUANTIZED:
        raise PrecisionUnsupportedError(
            f"TensorRT int8 is built from a Q/DQ ONNX (explicit quantization); '{name}' is {graph}: make one with "
            "`edgebench quantize --backend tensorrt`, or export with --precision int8 --calib IMAGES")
    if asked is not Precision.INT8 and graph in _QUANTIZED:
        raise PrecisionUnsupportedError(f"'{name}' is quantized ({graph}: Q/DQ nodes); build it with --precision int8")
    if opts.dla_core is not None and asked is Precision.FP32:
        raise PrecisionUnsupportedError("DLA runs fp16 or int8, not fp32: build with --precision fp16 or int8")
    if opts.int8_fp16 and asked is not Precision.INT8:
        raise InputError("int8_fp16 applies to int8 builds (the layers outside Q/DQ); use --precision fp16 instead")


def profile_shapes(inputs: Mapping[str, Sequence[int | None]], batch: tuple[int, int, int] | None,
                   imgsz: Sequence[int] | None) -> dict[str, Shapes]:
    """(min, opt, max) shapes of every input with a dynamic dim: the batch from `batch` (default 1), NCHW height
    and width from `imgsz`; {} when every input is static. InputError for a batch profile on a fixed batch."""
    out: dict[str, Shapes] = {}
    for name, dims in inputs.items():
        if all(isinstance(d, int) and d > 0 for d in dims):
            if batch is not None and dims and batch != (dims[0],) * 3:
                raise InputError(f"a batch profile needs a dynamic batch; input '{name}' has a fixed batch of "
                                 f"{dims[0]} (export the ONNX with --dynamic-batch)")
            continue
        out[name] = _dynamic_shapes(name, list(dims), batch or (1, 1, 1), imgsz)
    return out


def _dynamic_shapes(name: str, dims: list[int | None], batch: tuple[int, int, int],
                    imgsz: Sequence[int] | None) -> Shapes:
    rows: list[list[int]] = [[], [], []]
    for i, d in enumerate(dims):
        if d:
            values = (int(d),) * 3
        elif i == 0:
            values = batch
        elif len(dims) == 4 and i in (2, 3) and imgsz:
            values = (int(imgsz[i - 2]),) * 3
        else:
            raise ModelLoadError(f"input '{name}' has a dynamic dimension {i} ({dims}) that no option fixes: "
                                 "give the ONNX a static size or 'imgsz' metadata")
        for row, v in zip(rows, values, strict=True):
            row.append(v)
    return tuple(rows[0]), tuple(rows[1]), tuple(rows[2])


def check_builder(options: TensorrtOptions | None = None) -> tuple[Any, GpuInfo]:
    """(tensorrt, the GPU) when this host can build engines; else the typed one-line error naming what is
    missing: the package, a CUDA binding, the driver, the GPU, or a TensorRT release this builder is not for."""
    opts = options or TensorrtOptions()
    trt = require_tensorrt(_BUILDING)
    found = str(trt.__version__)
    if release(found)[0] != SUPPORTED_MAJOR:
        raise BackendUnavailableError("tensorrt", f"tensorrt {SUPPORTED_MAJOR}.x", "tensorrt",
                                      f"found TensorRT {found}; this builder sets TensorRT {SUPPORTED_MAJOR}'s "
                                      "precision flags, which strongly typed TensorRT 11 networks do not take")
    api, gpu = open_gpu(_BUILDING, opts.cuda, opts.device)
    api.use_device(opts.device)
    return trt, gpu


def to_tensorrt(onnx_path: str | Path, out: str | Path, precision: str = "fp32",
                options: TensorrtOptions | None = None) -> Path:
    """Build a TensorRT engine from an ONNX model at `out` (.engine, + `.engine.json` sidecar); returns its path.
    int8 takes a Q/DQ ONNX. Nothing is written when the build cannot run or fails."""
    src, dst, opts = Path(onnx_path), Path(out), options or TensorrtOptions()
    asked = Precision.parse(precision)
    check_conversion(src, dst, asked.value, "tensorrt")
    graph = onnx_precision(src)
    check_request(asked, graph, opts, src.name)
    props, shapes_in, _ = onnx_io(src)
    names = input_names(src)
    imgsz = ModelMeta.from_props(props, shapes_in[0] if shapes_in else None).imgsz
    shapes = profile_shapes(dict(zip(names, shapes_in, strict=True)), opts.batch, imgsz)
    trt, gpu = check_builder(opts)
    with quiet_output() as log:
        built = build_engine(trt, src, asked, opts, shapes)
    if built.blob is None:
        raise ConversionError(f"TensorRT {trt.__version__} could not build an engine from '{src.name}': "
                              f"{log.last_line() or 'no reason logged'}")
    used = graph if asked is Precision.INT8 else asked
    write_bytes_atomic(dst, built.blob)
    write_json_atomic(sidecar_path(dst), sidecar_data(props, shapes_in[0] if shapes_in else [], used, src.name,
                                                      str(trt.__version__), gpu, built, opts, shapes))
    return dst


def input_names(src: Path) -> list[str]:
    """The ONNX graph's real inputs (initializers excluded), in order: the names TensorRT's network takes."""
    graph = onnx.load(str(src), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    return [i.name for i in graph.input if i.name not in weights]


@dataclass
class Built:
    """What build_engine made: the serialized engine (None when TensorRT could not build one) and how."""

    blob: bytes | None
    flags: list[str]
    timing_cache: dict[str, Any] | None


def build_engine(trt: Any, src: Path, precision: Precision, opts: TensorrtOptions,
                 shapes: Mapping[str, Shapes]) -> Built:
    """Parse `src`, configure the builder (runs on the GPU) and serialize the engine."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode (the flag is deprecated)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(src)):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        raise ConversionError(f"TensorRT's ONNX parser cannot read '{src.name}': "
                              f"{errors[0] if errors else 'no error given'}")
    config = builder.create_builder_config()
    flags = configure(trt, builder, config, precision, opts)
    if shapes:
        add_profile(builder, config, shapes)
    cache = load_timing_cache(config, opts.timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        return Built(None, flags, cache)
    if opts.timing_cache:
        cache = {**(cache or {}), "saved_bytes": save_timing_cache(config, opts.timing_cache)}
    return Built(bytes(serialized), flags, cache)


def configure(trt: Any, builder: Any, config: Any, precision: Precision, opts: TensorrtOptions) -> list[str]:
    """Workspace, optimisation level, precision flags and DLA on `config`; the BuilderFlag names set."""
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_mib) * 2**20)
    config.builder_optimization_level = int(opts.opt_level)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer precisions readable by the inspector
    flags = {Precision.FP16: ["FP16"], Precision.INT8: ["INT8"] + (["FP16"] if opts.int8_fp16 else [])}
    names = list(flags.get(precision, []))
    if opts.dla_core is not None:
        cores = int(builder.num_DLA_cores)
        if opts.dla_core >= cores:
            raise HardwareUnavailableError(f"DLA core {opts.dla_core} asked for; this device has {cores} DLA core(s) "
                                           "(Jetson AGX Orin has 2, Orin NX 1-2, Orin Nano and discrete GPUs none)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(opts.dla_core)
        if opts.gpu_fallback:
            names.append("GPU_FALLBACK")
    for name in names:
        config.set_flag(getattr(trt.BuilderFlag, name))
    return names


def add_profile(builder: Any, config: Any, shapes: Mapping[str, Shapes]) -> None:
    """One optimisation profile with the (min, opt, max) shape of each dynamic input."""
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in shapes.items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)


def load_timing_cache(config: Any, path: str | None) -> dict[str, Any] | None:
    """Give the builder the timing cache at `path` (an empty one when the file is absent or from another
    device/TensorRT); what was loaded, for the sidecar; None without a path."""
    if not path:
        return None
    blob = Path(path).read_bytes() if Path(path).is_file() else b""
    reused = bool(blob) and bool(config.set_timing_cache(config.create_timing_cache(blob), False))
    if not reused:
        config.set_timing_cache(config.create_timing_cache(b""), False)
    return {"path": str(path), "loaded_bytes": len(blob), "reused": reused}


def save_timing_cache(config: Any, path: str) -> int:
    """Write the builder's timing cache (what this build timed, plus what was loaded) to `path`; its size."""
    data = bytes(config.get_timing_cache().serialize())
    write_bytes_atomic(path, data)
    return len(data)


def sidecar_data(props: dict[str, str], input_shape: Sequence[Any], used: Precision, source: str, version: str,
                 gpu: GpuInfo, built: Built, opts: TensorrtOptions, shapes: Mapping[str, Shapes]) -> dict[str, Any]:
    """The sidecar: our metadata props, then what the runtime checks before loading and how the engine was built."""
    builder = {k: v for k, v in asdict(opts).items() if k not in ("timing_cache", "cuda")}
    builder.update(flags=built.flags, timing_cache=built.timing_cache,
                   profile={n: {"min": list(s[0]), "opt": list(s[1]), "max": list(s[2])} for n, s in shapes.items()})
    return {**converted_props(props, list(input_shape), used.value, source, "tensorrt"), "format": "tensorrt",
            "source": source, "precision": used.value, VERSION_KEY: version, CC_KEY: gpu.compute_capability,
            DEVICE_KEY: gpu.name, "cuda_driver": gpu.driver, "builder": builder}

