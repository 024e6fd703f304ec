"""export_model(): our checkpoint or an ONNX file -> any target (ONNX via the trainer, the rest via converters)."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.options import PARITY_IMAGES, THREADS, check_imgsz
from converters.coreml import CoremlOptions
from converters.export import ExportResult, check_and_record_parity, check_target, export, rewrite_names
from converters.int8 import Int8Options
from converters.tensorrt import TensorrtOptions
from runtimes.errors import EdgebenchError, ModelLoadError


@dataclass(frozen=True)
class OnnxOptions:
    """Checkpoint -> ONNX options (ignored for an ONNX input)."""

    imgsz: int | None = None
    opset: int = 17
    dynamic_batch: bool = False
    simplify: bool = True
    weights_fp16: bool = False


def checkpoint_to_onnx(ckpt: Path, out: Path, opts: OnnxOptions) -> Path:
    """Our checkpoint -> ONNX through the trainer's exporter (needs torch; imported only here)."""
    from trainer.requires import require_torch

    require_torch()
    from trainer.export import export_onnx

    return export_onnx(ckpt, out, opts.imgsz, opts.opset, opts.dynamic_batch, simplify=opts.simplify,
                       weights_fp16=opts.weights_fp16)


def export_model(model: str | Path, target: str, out: str | Path, precision: str = "fp32",
                 onnx_options: OnnxOptions | None = None, parity: bool = True, parity_images: int = 4,
                 threads: int | None = None, rewrites: str | list[str] | None = None,
                 int8: Int8Options | None = None, coreml: CoremlOptions | None = None,
                 tensorrt: TensorrtOptions | None = None) -> ExportResult:
    """Export `model` (our checkpoint, or an ONNX file) to `target` at `out`; non-ONNX targets get a
    parity check against the ONNX fp32 reference, stored in the artifact's sidecar JSON. `rewrites`
    (converters.rewrites names) are applied to the ONNX before a non-ONNX conversion. `coreml`
    applies to --to coreml, `tensorrt` (the engine builder's options) to --to tensorrt; a checkpoint
    goes to Core ML by capturing its own detector (its ONNX export is then the metadata source and the
    parity reference)."""
    src, dst, target = Path(model), Path(out), target.lower()
    opts = onnx_options or OnnxOptions()
    check_target(target, precision)
    if coreml is not None and target != "coreml":
        raise EdgebenchError(f"Core ML options apply to --to coreml, not --to {target}")
    if tensorrt is not None and target != "tensorrt":
        raise EdgebenchError(f"TensorRT options apply to --to tensorrt, not --to {target}")
    options = coreml if coreml is not None else tensorrt
    converter_options = {"options": options} if options is not None else None
    _check_numbers(opts, parity_images, threads)
    names = rewrite_names(rewrites)
    if not src.exists():
        raise ModelLoadError(f"model not found: {src}")
    if target == "onnx":
        if src.suffix.lower() == ".onnx":
            raise EdgebenchError(f"'{src.name}' is already ONNX: export --to onnx takes a training checkpoint "
                                 "(.ckpt); convert an ONNX with --to openvino, ncnn or tflite")
        if precision != "fp32":
            raise EdgebenchError("export to onnx takes a checkpoint at precision fp32 "
                                 "(float16 storage: --weights-fp16)")
        if names:
            raise EdgebenchError("rewrites apply when converting to another target, not to onnx")
        return ExportResult(checkpoint_to_onnx(src, dst, opts), target, precision)
    if src.suffix.lower() == ".onnx":
        return export(src, target, dst, precision, parity, parity_images, threads, names, int8,
                      converter_options=converter_options)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export.", dir=dst.parent) as tmp:
        reference = checkpoint_to_onnx(src, Path(tmp) / f"{dst.stem}.onnx", opts)
        if target == "coreml" and not names and precision != "int8":
            return checkpoint_to_coreml(src, reference, dst, precision, coreml, parity, parity_images, threads)
        return export(reference, target, dst, precision, parity, parity_images, threads, names, int8,
                      converter_options=converter_options)


def checkpoint_to_coreml(ckpt: Path, reference: Path, out: Path, precision: str, coreml: CoremlOptions | None,
                         parity: bool, parity_images: int, threads: int | None) -> ExportResult:
    """Our checkpoint's detector, captured as it is, -> Core ML at the size of `reference` (its ONNX export,
    which gives the metadata and is the parity reference)."""
    from converters.coreml import convert_module, fixed_input_shape
    from converters.onnx_info import onnx_io
    from trainer.checkpoint import load_detector
    from trainer.export import INPUT_NAME, OUTPUT_NAME

    loaded = load_detector(ckpt)
    props, inputs, _ = onnx_io(reference)
    shape = fixed_input_shape(props, inputs[0], reference.name)
    path = convert_module(loaded.model, shape, out, precision, props, ckpt.name, coreml, (INPUT_NAME, [OUTPUT_NAME]))
    result = ExportResult(path, "coreml", precision)
    if parity:
        check_and_record_parity(result, reference, threads, parity_images)
    return result


def _check_numbers(opts: OnnxOptions, parity_images: int, threads: int | None) -> None:
    """InputError for an input size off the stride, or counts below 1, before anything is written."""
    if opts.imgsz is not None:
        check_imgsz(opts.imgsz)
    PARITY_IMAGES.check("parity_images", parity_images)
    THREADS.check("threads", threads)
