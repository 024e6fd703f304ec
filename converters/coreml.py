"""ONNX or our PyTorch model -> Core ML ML Program (.mlpackage) with coremltools; runs on any OS.

Two routes into one conversion: `to_coreml` (the capability table's converter) turns the ONNX graph
into a torch module (converters.onnx_torch), and `convert_module` takes any torch module, such as the
trainer's detector rebuilt from a checkpoint (bench.tasks.export). Either is captured at one fixed input
size, by torch.export (default) or torch.jit.trace, and converted to an ML Program with float32 input
and output tensors and fp16 or fp32 compute precision. torch.export is the default because it bakes
the static shapes in: a TorchScript trace keeps `size -> int` shape arithmetic, which coremltools 9.0
fails to convert under numpy 2.x ("only 0-dimensional arrays can be converted to Python scalars", seen
on a graph with Reshape-with-0 dims).

Options (CoremlOptions): 8-bit linear weight quantization or k-means palettization (coremltools.optimize;
weight storage only, compute precision unchanged), the compute units the model is meant for (a load-time
choice in Core ML: stored in the metadata, read by runtimes.coreml_backend), the deployment target and
the capture. Our metadata (edge_sdk.meta.ModelMeta props) goes into the model's
user-defined metadata, the conversion facts into the `<model>.mlpackage.json` sidecar.

Activation int8 is not offered: coremltools calibrates it by running predictions, which needs macOS.
`inspect_mlpackage` reads a package without running it (size, I/O, op counts, compute precision).
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from converters.onnx_info import check_conversion, converted_props, onnx_io
from converters.quiet import quiet_output
from edge_sdk.atomic import write_json_atomic
from edge_sdk.meta import EDGEBENCH_KEY, ModelMeta
from runtimes.base import sidecar_path
from runtimes.coreml_backend import (
    COMPUTE_UNITS,
    UNITS_KEY,
    array_dtype,
    prediction_unavailable,
    program_ops,
    program_tally,
)
from runtimes.errors import BackendUnavailableError, ConversionError, EdgebenchError, InputError, ModelLoadError
from runtimes.precision import Precision, PrecisionUnsupportedError

#: the pip extra that installs what conversion needs (coremltools and torch)
CONVERT_EXTRA = "coreml-export"
#: weight compression modes: int8 = linear symmetric per-channel; paletteN = k-means look-up table of 2**N values
WEIGHT_MODES = ("int8", "palette8", "palette6", "palette4")
DEPLOYMENT_TARGETS = ("iOS15", "iOS16", "iOS17", "iOS18")
#: how the torch module is captured for coremltools: torch.export (ATen dialect) or a TorchScript trace
CAPTURES = ("export", "trace")
#: ops that only hold (compressed) weights: expanded to dense tensors when the model loads
_CONSTEXPR_PREFIX = "constexpr_"
_NOT_ON_HOST = "not measurable on this host"


@dataclass(frozen=True)
class CoremlOptions:
    """Conversion options beyond the precision (checked when made)."""

    compute_units: str = "ALL"
    weights: str | None = None  # None: weights at the compute precision; else one of WEIGHT_MODES
    deployment_target: str = "iOS16"  # the oldest OS the package loads on (compressed weights need iOS16+)
    capture: str = "export"  # one of CAPTURES

    def __post_init__(self) -> None:
        if self.compute_units.upper() not in COMPUTE_UNITS:
            raise InputError(f"compute units must be one of {', '.join(COMPUTE_UNITS)}, got '{self.compute_units}'")
        if self.weights is not None and self.weights not in WEIGHT_MODES:
            raise InputError(f"Core ML weight compression must be one of {', '.join(WEIGHT_MODES)}, "
                             f"got '{self.weights}'")
        if self.deployment_target not in DEPLOYMENT_TARGETS:
            raise InputError(f"deployment target must be one of {', '.join(DEPLOYMENT_TARGETS)}, "
                             f"got '{self.deployment_target}'")
        if self.capture not in CAPTURES:
            raise InputError(f"capture must be one of {', '.join(CAPTURES)}, got '{self.capture}'")
        if self.weights and self.deployment_target == "iOS15":
            raise InputError("compressed weights need deployment target iOS16 or newer")


def _import(name: str, package: str) -> Any:
    try:
        with quiet_output():  # coremltools logs missing native proxies and untested torch versions on import
            return importlib.import_module(name)
    except ImportError as exc:
        raise BackendUnavailableError("coreml", package, CONVERT_EXTRA, "needed to convert to Core ML") from exc


def to_coreml(onnx_path: str | Path, out: str | Path, precision: str = "fp32",
              options: CoremlOptions | None = None) -> Path:
    """Convert an ONNX model to an ML Program at `out` (.mlpackage, + `.mlpackage.json` sidecar) through
    converters.onnx_torch; returns the package path."""
    src, dst = Path(onnx_path), Path(out)
    check_conversion(src, dst, precision, "coreml")
    _import("coremltools", "coremltools")
    from converters.onnx_torch import onnx_to_torch

    model = onnx.load(str(src))
    props, inputs, _ = onnx_io(src)
    weights = {t.name for t in model.graph.initializer}
    in_names = [i.name for i in model.graph.input if i.name not in weights]
    if len(in_names) != 1:
        raise ModelLoadError(f"Core ML conversion takes a model with one input, '{src.name}' has {len(in_names)}")
    shape = fixed_input_shape(props, inputs[0], src.name)
    module = onnx_to_torch(model, {in_names[0]: shape})
    names = (in_names[0], [o.name for o in model.graph.output])
    return convert_module(module, shape, dst, precision, props, src.name, options, names)


def fixed_input_shape(props: dict[str, str], shape: Sequence[Any], name: str) -> list[int]:
    """[1, C, H, W] to convert at: static dims from the model, batch 1, H and W from `imgsz` when dynamic."""
    if len(shape) != 4:
        raise ModelLoadError(f"Core ML conversion needs a rank-4 image input, '{name}' has shape {list(shape)}")
    if shape[2] and shape[3]:
        return [1, int(shape[1] or 3), int(shape[2]), int(shape[3])]
    imgsz = ModelMeta.from_props(props, list(shape)).imgsz
    if imgsz is None:
        raise ModelLoadError(f"'{name}' has a dynamic input size and no 'imgsz' metadata: cannot fix it for Core ML")
    return [1, int(shape[1] or 3), int(imgsz[0]), int(imgsz[1])]


def convert_module(module: Any, input_shape: Sequence[int], out: str | Path, precision: str = "fp32",
                   props: dict[str, str] | None = None, source: str = "torch module",
                   options: CoremlOptions | None = None,
                   names: tuple[str, list[str]] = ("images", ["output0"])) -> Path:
    """Capture a torch module at `input_shape` and write it as an ML Program at `out`; `props` are the source's
    metadata props (ONNX metadata_props, or trainer.export.model_meta(...).to_props() for a checkpoint) and
    `names` the (input, outputs) tensor names. Returns the package path."""
    dst, opts = Path(out), options or CoremlOptions()
    asked = Precision.parse(precision)
    if asked not in (Precision.FP32, Precision.FP16):
        raise PrecisionUnsupportedError(f"the coreml converter writes fp32, fp16, not {asked}")
    if dst.suffix.lower() != ".mlpackage":
        raise EdgebenchError(f"coreml output must be a .mlpackage path, got '{dst}'")
    ct = _import("coremltools", "coremltools")
    shape = [int(d) for d in input_shape]
    mlmodel = _convert(ct, module, shape, names, asked, opts, source)
    meta = _metadata(props or {}, shape, asked, source, opts)
    for key, value in meta.items():
        mlmodel.user_defined_metadata[key] = value
    mlmodel.author, mlmodel.short_description = "edgebench", f"converted from {source}"
    _save_package(mlmodel, dst)
    write_json_atomic(sidecar_path(dst), {
        "format": "coreml", "source": source, "precision": asked.value, "compute_units": opts.compute_units.upper(),
        "weights_storage": opts.weights or asked.value, "deployment_target": opts.deployment_target,
        "input_shape": shape, "capture": opts.capture, "coremltools": str(ct.__version__),
    })
    return dst


def _convert(ct: Any, module: Any, shape: list[int], names: tuple[str, list[str]], precision: Precision,
             opts: CoremlOptions, source: str) -> Any:
    """The coremltools MLModel of the captured module (weights compressed when asked); ConversionError on failure."""
    torch = _import("torch", "torch")
    with quiet_output() as log:
        try:
            captured = _capture(torch, module.eval(), torch.zeros(shape), opts.capture)
            mlmodel = ct.convert(captured, inputs=[ct.TensorType(name=names[0], shape=shape, dtype=np.float32)],
                                 outputs=[ct.TensorType(name=n, dtype=np.float32) for n in names[1]],
                                 convert_to="mlprogram", compute_precision=_precision(ct, precision),
                                 minimum_deployment_target=getattr(ct.target, opts.deployment_target),
                                 compute_units=ct.ComputeUnit[opts.compute_units.upper()])
            return compress_weights(mlmodel, opts.weights) if opts.weights else mlmodel
        except EdgebenchError:
            raise
        except Exception as exc:  # capture and the MIL conversion raise many untyped errors
            raise ConversionError(f"coremltools cannot convert '{source}': {_first(exc) or log.last_line()}") from exc


def _capture(torch: Any, module: Any, sample: Any, how: str) -> Any:
    """The module as coremltools takes it: an ATen-dialect ExportedProgram, or a TorchScript trace."""
    with torch.no_grad():
        if how == "trace":
            return torch.jit.trace(module, sample, check_trace=False)
        return torch.export.export(module, (sample,)).run_decompositions({})


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _precision(ct: Any, precision: Precision) -> Any:
    return ct.precision.FLOAT16 if precision is Precision.FP16 else ct.precision.FLOAT32


def compress_weights(mlmodel: Any, mode: str) -> Any:
    """The ML Program with its large weights stored as int8 (linear symmetric, per channel) or a k-means
    palette of 2**N values (`paletteN`); coremltools.optimize, which runs without macOS."""
    from coremltools.optimize import coreml as opt

    if mode == "int8":
        config = opt.OptimizationConfig(global_config=opt.OpLinearQuantizerConfig(mode="linear_symmetric",
                                                                                   dtype="int8"))
        return opt.linear_quantize_weights(mlmodel, config)
    if mode.startswith("palette") and mode in WEIGHT_MODES:
        config = opt.OptimizationConfig(global_config=opt.OpPalettizerConfig(mode="kmeans", nbits=int(mode[7:])))
        return opt.palettize_weights(mlmodel, config)
    raise InputError(f"Core ML weight compression must be one of {', '.join(WEIGHT_MODES)}, got '{mode}'")


def _metadata(props: dict[str, str], shape: list[int], precision: Precision, source: str,
              opts: CoremlOptions) -> dict[str, str]:
    """The source's props plus ours (converted_props), with the weight storage and intended compute units."""
    out = converted_props(props, shape, precision.value, source, "coreml")
    if opts.weights and out.get(EDGEBENCH_KEY):
        ours = json.loads(out[EDGEBENCH_KEY])
        ours["extra"] = {**ours.get("extra", {}), "weights_storage": opts.weights}
        out[EDGEBENCH_KEY] = json.dumps(ours, sort_keys=True)
    out[UNITS_KEY] = opts.compute_units.upper()
    return out


def _save_package(mlmodel: Any, out: Path) -> None:
    """Save into a temp folder beside `out`, then swap it into place (an old package is replaced whole)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        staged = tmp / out.name
        with quiet_output():
            mlmodel.save(str(staged))
        if out.exists() or out.is_symlink():
            os.replace(out, tmp / "replaced")
        os.replace(staged, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def inspect_mlpackage(path: str | Path) -> dict[str, Any]:
    """What can be known of a Core ML package without running it: size, I/O, metadata, op counts, compute
    precision (from the program's compute ops), weight compression; prediction and the Neural Engine plan
    are marked not measurable off macOS. ModelLoadError when the package does not load."""
    p = Path(path)
    ct = _import("coremltools", "coremltools")
    if not p.exists():
        raise ModelLoadError(f"model not found: {p}")
    try:
        with quiet_output():
            spec = ct.utils.load_spec(str(p))
            ct.models.MLModel(str(p), skip_model_load=True)  # the package's structure and weights file
    except Exception as exc:  # protobuf and coremltools raise several untyped errors
        raise ModelLoadError(f"'{p}' is not a valid Core ML package: {_first(exc)}") from exc
    ops = Counter(op.type for op in program_ops(spec))
    tally = program_tally(spec)
    why = prediction_unavailable()
    return {
        "path": str(p), "type": spec.WhichOneof("Type"), "specification_version": int(spec.specificationVersion),
        "size_bytes": _size(p), "inputs": [_feature(f) for f in spec.description.input],
        "outputs": [_feature(f) for f in spec.description.output],
        "metadata": dict(spec.description.metadata.userDefined),
        "ops": dict(ops.most_common()), "ops_total": sum(n for t, n in ops.items() if t != "const"),
        "compute_precision": (tally.precision if tally else Precision.UNKNOWN).value,
        "compute_ops": tally.total if tally else 0,
        "weight_compression": {t: n for t, n in ops.items() if t.startswith(_CONSTEXPR_PREFIX)},
        "prediction": f"{_NOT_ON_HOST}: {why}" if why else "available",
        "compute_plan": (f"{_NOT_ON_HOST}: the per-op device plan (MLComputePlan) needs macOS" if why
                         else "not read by this version (MLComputePlan)"),
    }


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _feature(feature: Any) -> dict[str, Any]:
    array = feature.type.multiArrayType
    return {"name": feature.name, "shape": [int(d) for d in array.shape], "dtype": array_dtype(array).lower()}
