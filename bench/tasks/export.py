"""export_model(): our checkpoint or an ONNX file -> any target (ONNX via the trainer, the rest via converters)."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.options import PARITY_IMAGES, THREADS, check_imgsz
from converters.export import ExportResult, check_target, export, rewrite_names
from converters.int8 import Int8Options
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
                 int8: Int8Options | None = None) -> ExportResult:
    """Export `model` (our checkpoint, or an ONNX file) to `target` at `out`; non-ONNX targets get a
    parity check against the ONNX fp32 reference, stored in the artifact's sidecar JSON. `rewrites`
    (converters.rewrites names) are applied to the ONNX before a non-ONNX conversion."""
    src, dst, target = Path(model), Path(out), target.lower()
    opts = onnx_options or OnnxOptions()
    check_target(target, precision)
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
        return export(src, target, dst, precision, parity, parity_images, threads, names, int8)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export.", dir=dst.parent) as tmp:
        reference = checkpoint_to_onnx(src, Path(tmp) / f"{dst.stem}.onnx", opts)
        return export(reference, target, dst, precision, parity, parity_images, threads, names, int8)


def _check_numbers(opts: OnnxOptions, parity_images: int, threads: int | None) -> None:
    """InputError for an input size off the stride, or counts below 1, before anything is written."""
    if opts.imgsz is not None:
        check_imgsz(opts.imgsz)
    PARITY_IMAGES.check("parity_images", parity_images)
    THREADS.check("threads", threads)
