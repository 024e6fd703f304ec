"""`edgebench export --model CKPT|ONNX --to TARGET -o PATH`: model -> deployable artifact."""
from __future__ import annotations

import importlib.util
import sys
from typing import Any

import click

from bench.commands.int8_flags import int8_flags
from bench.options import IMGSZ, PARITY_IMAGES, Command, deprecated, threads_option
from converters.coreml import WEIGHT_MODES, CoremlOptions
from converters.export import targets
from converters.rewrites import REWRITES
from runtimes.capabilities import all_written_precisions
from runtimes.coreml_backend import COMPUTE_UNITS

#: The oldest ONNX opset our exporter writes (torch.onnx.export takes 7..; we need Resize etc.).
OPSET_MIN = 11


@click.command("export", cls=Command)
@click.option("--model", "-m", required=True, help="Our training checkpoint (.ckpt, needs torch) or an ONNX file.")
@click.option("--to", "target", default="onnx", show_default=True, help=f"Target format ({', '.join(targets())}).")
@click.option("--output", "-o", "out", default=None,
              help="Output file (.onnx; .xml for openvino; .param for ncnn, .bin written beside it; "
                                        ".tflite for tflite; .mlpackage for coreml; .engine for tensorrt, built "
                                        "on the device that runs it; tensorrt int8: .onnx for the Q/DQ model, "
                                        ".engine to build from it).")
@deprecated("--out", "out", "--output")
@click.option("--precision", default="fp32", show_default=True,
              help=f"One of {', '.join(all_written_precisions())}, as the target's converter writes them "
                   "(int8: the target's own quantizer, see the --calib options and `edgebench quantize`). "
                   "openvino: fp16 stores float16 weights, bf16/fp32 set the inference precision hint; "
                   "ncnn: fp16 stores float16 weights, bf16 runs with bf16 storage; "
                   "tflite: fp32 or fp16 (float16 conv weights, fp32 compute).")
@click.option("--imgsz", type=IMGSZ, default=None, help="Checkpoints: input size (default: the training size).")
@click.option("--opset", type=click.IntRange(min=OPSET_MIN), default=17, show_default=True,
              help=f"ONNX opset of a checkpoint export (>= {OPSET_MIN}).")
@click.option("--dynamic-batch", is_flag=True, help="Make the batch dimension dynamic.")
@click.option("--no-simplify", is_flag=True, help="Skip onnxslim.")
@click.option("--weights-fp16", is_flag=True,
              help="ONNX: store the weights as float16 (half the file size); the model still computes in float32.")
@click.option("--no-parity", is_flag=True, help="Skip the parity check against the ONNX reference.")
@click.option("--parity-images", type=PARITY_IMAGES.param_type(), default=4, show_default=True,
              help="Synthetic frames the parity check runs (at most 1000).")
@threads_option("Threads for the parity check (default: physical cores).")
@click.option("--rewrite", "rewrites", default=None, metavar="NAME[,NAME]",
              help=f"ONNX graph rewrites applied before conversion ({', '.join(REWRITES)}), or 'auto': "
                   "each exact rewrite is kept only if it measurably helps the target (delegated ops, latency). "
                   "Parity still compares against the original ONNX.")
@click.option("--coreml-units", type=click.Choice(COMPUTE_UNITS, case_sensitive=False), default=None,
              help="coreml: the compute units the model is meant for (Core ML picks them when it loads the model; "
                   "stored in its metadata). Default ALL.")
@click.option("--coreml-weights", type=click.Choice(WEIGHT_MODES), default=None,
              help="coreml: store the weights as int8 (linear, per channel) or a k-means palette of 2**N values "
                   "(paletteN); the model still computes at --precision.")
@click.option("--trt-workspace", type=click.IntRange(min=1), default=None, metavar="MIB",
              help="tensorrt: the builder's workspace limit in MiB (default 1024).")
@click.option("--trt-opt-level", type=click.IntRange(0, 5), default=None,
              help="tensorrt: builder optimisation level, 0 (fastest build) to 5 (longest search); default 3.")
@click.option("--trt-timing-cache", default=None, metavar="FILE",
              help="tensorrt: timing cache file, read when present and written after the build (faster rebuilds "
                   "on the same device and TensorRT).")
@click.option("--trt-dla-core", type=click.IntRange(min=0), default=None,
              help="tensorrt on Jetson AGX/NX Orin: build for this DLA core (fp16 or int8; layers the DLA cannot "
                   "run go to the GPU).")
@click.option("--trt-batch", default=None, metavar="MIN,OPT,MAX",
              help="tensorrt: the batch profile of a dynamic-batch ONNX (a checkpoint: with --dynamic-batch).")
@int8_flags(rows=False)
def command(model: str, target: str, out: str | None, precision: str, imgsz: int | None, opset: int,
            dynamic_batch: bool, no_simplify: bool, weights_fp16: bool, no_parity: bool, parity_images: int,
            threads: int | None, rewrites: str | None, coreml_units: str | None, coreml_weights: str | None,
            trt_workspace: int | None, trt_opt_level: int | None, trt_timing_cache: str | None,
            trt_dla_core: int | None, trt_batch: str | None, **int8: Any) -> None:
    """Export with names, size, stride, layout and source hash inside; other targets get a parity check.

    Exits 1 (artifact kept, verdict in its sidecar JSON) when the parity check fails.
    """
    if out is None:
        raise click.UsageError("missing -o/--output (the artifact file to write)")
    from bench.tasks.export import OnnxOptions, export_model

    opts = OnnxOptions(imgsz, opset, dynamic_batch, simplify=not no_simplify, weights_fp16=weights_fp16)
    result = export_model(model, target, out, precision, opts, parity=not no_parity,
                          parity_images=parity_images, threads=threads, rewrites=rewrites,
                          int8=int8_export_options(model, precision, int8, target, out),
                          coreml=coreml_options(coreml_units, coreml_weights),
                          tensorrt=tensorrt_options(trt_workspace, trt_opt_level, trt_timing_cache, trt_dla_core,
                                                    trt_batch))
    if not model.lower().endswith(".onnx") and not no_simplify and importlib.util.find_spec("onnxslim") is None:
        click.echo("note: onnxslim is not installed; the graph was not simplified", err=True)
    for trial in result.rewrite_trials:
        click.echo(trial.summary())
    for rewrite in result.rewrites:
        click.echo(rewrite.summary())
    click.echo(f"exported {result.path}")
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if result.parity is not None:
        click.echo(result.parity.summary())
        if not result.parity.passed:
            sys.exit(1)


def coreml_options(units: str | None, weights: str | None) -> CoremlOptions | None:
    """converters.coreml.CoremlOptions when a --coreml-* flag is given (None otherwise)."""
    if units is None and weights is None:
        return None
    return CoremlOptions(compute_units=(units or "ALL").upper(), weights=weights)


def tensorrt_options(workspace: int | None, opt_level: int | None, timing_cache: str | None, dla_core: int | None,
                     batch: str | None) -> Any:
    """converters.tensorrt.TensorrtOptions when a --trt-* flag is given (None otherwise)."""
    if workspace is None and opt_level is None and timing_cache is None and dla_core is None and batch is None:
        return None
    from converters.tensorrt import DEFAULT_OPT_LEVEL, DEFAULT_WORKSPACE_MIB, TensorrtOptions, parse_batch

    return TensorrtOptions(workspace_mib=workspace or DEFAULT_WORKSPACE_MIB,
                           opt_level=DEFAULT_OPT_LEVEL if opt_level is None else opt_level,
                           timing_cache=timing_cache, dla_core=dla_core,
                           batch=parse_batch(batch) if batch is not None else None)


def int8_export_options(model: str, precision: str, flags: dict[str, Any], target: str = "",
                        out: str | None = None) -> Any:
    """converters.int8.Int8Options from the int8 flags when --precision int8 (None otherwise, and for a Q/DQ ONNX
    that the target's converter builds from as it is: TensorRT's engine)."""
    if precision.strip().lower() != "int8" or _builds_from(model, target, out):
        return None
    from pathlib import Path
    from types import SimpleNamespace

    from bench.sweep.int8 import calib_source, int8_from_flags

    source, note = calib_source(flags["calib"], Path(model))
    if note:
        click.echo(f"note: {note}", err=True)
    return int8_from_flags(SimpleNamespace(**flags), source, progress=True)


def _builds_from(model: str, target: str, out: str | None) -> bool:
    """Whether `model` is an already quantized ONNX (Q/DQ) that `target` builds its int8 `out` from directly."""
    from pathlib import Path

    from converters.export import builds_from_qdq
    from runtimes.capabilities import BACKENDS
    from runtimes.onnx_precision import onnx_precision
    from runtimes.precision import Precision

    path = Path(model)
    if not out or target.lower() not in BACKENDS or not builds_from_qdq(target.lower(), Path(out)):
        return False
    return (path.suffix.lower() == ".onnx" and path.is_file()
            and onnx_precision(path) in (Precision.INT8, Precision.MIXED))
