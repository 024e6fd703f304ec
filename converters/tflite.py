"""ONNX -> TFLite (.tflite) through litert-torch, with the model's metadata in a sidecar JSON.

The ONNX graph becomes a torch module (converters.onnx_torch), wrapped to take NHWC float32
(what TFLite and XNNPACK want; the runtime transposes NCHW -> NHWC on the way in), and
`litert_torch.convert` lowers it to a flatbuffer. fp16 stores the conv/FC weights as float16
behind DEQUANTIZE ops (ai-edge-quantizer's weight-only float casting, a litert-torch
dependency); compute stays float32. The model is fixed to one input size.
"""
from __future__ import annotations

import importlib
import os
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import onnx

from converters.onnx_info import check_conversion, converted_props, onnx_io
from converters.quiet import quiet_output
from edge_sdk.atomic import write_bytes_atomic, write_json_atomic
from edge_sdk.meta import ModelMeta
from runtimes.base import sidecar_path
from runtimes.errors import BackendUnavailableError, ConversionError, EdgebenchError, ModelLoadError

#: pip extra holding litert-torch (conversion only; the `tflite` extra is the small runtime)
CONVERT_EXTRA = "tflite-export"
#: TFLite ops whose weights fp16 stores as float16
PROGRESS_ENV = "LITERT_TORCH_SHOW_PROGRESS"
FP16_WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "CONV_2D_TRANSPOSE")


def _import(name: str, package: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise BackendUnavailableError("tflite", package, CONVERT_EXTRA, "needed to convert to TFLite") from exc


def fixed_input_shape(props: dict[str, str], shape: list[Any], name: str) -> list[int]:
    """[1, C, H, W] to convert at: static dims from the ONNX, batch 1, H and W from `imgsz` when dynamic."""
    if len(shape) != 4:
        raise ModelLoadError(f"TFLite conversion needs a rank-4 image input, '{name}' has shape {shape}")
    if shape[2] and shape[3]:
        return [1, int(shape[1] or 3), int(shape[2]), int(shape[3])]
    imgsz = ModelMeta.from_props(props, shape).imgsz
    if imgsz is None:
        raise ModelLoadError(f"'{name}' has a dynamic input size and no 'imgsz' metadata: cannot fix it for TFLite")
    return [1, int(shape[1] or 3), int(imgsz[0]), int(imgsz[1])]


def nhwc_module(onnx_model: onnx.ModelProto, in_shape: list[int]) -> Any:
    """The ONNX graph as a torch module taking one NHWC float32 tensor."""
    torch = _import("torch", "torch")
    from converters.onnx_torch import onnx_to_torch

    inner = onnx_to_torch(onnx_model, {_input_name(onnx_model): in_shape})

    class NhwcInput(torch.nn.Module):  # type: ignore[name-defined,misc]  # torch is imported at run time
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            return self.inner(x.permute(0, 3, 1, 2))

    return NhwcInput().eval()


def to_tflite(onnx_path: str | Path, out_path: str | Path, precision: str = "fp32") -> Path:
    """Convert an ONNX model to `out_path` (+ `.tflite.json` sidecar) with NHWC input; returns the path."""
    src, out = Path(onnx_path), Path(out_path)
    check_conversion(src, out, precision, "tflite")  # fp32/fp16: TFLite has no bf16 kernels
    with quiet_output():  # importing litert-torch logs missing optional torchao kernels
        litert_torch = _import("litert_torch", "litert-torch")
    torch = _import("torch", "torch")
    props, inputs, out_shapes = onnx_io(src)
    if len(inputs) != 1:
        raise ModelLoadError(f"TFLite conversion takes a model with one input, '{src.name}' has {len(inputs)}")
    in_shape = fixed_input_shape(props, inputs[0], src.name)
    module = nhwc_module(onnx.load(str(src)), in_shape)
    sample = torch.zeros(in_shape[0], in_shape[2], in_shape[3], in_shape[1])
    with quiet_output() as log:
        try:
            blob = _convert(litert_torch, module, sample)
        except EdgebenchError:
            raise
        except Exception as exc:  # torch.export and the MLIR lowering raise many untyped errors
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConversionError(f"litert-torch cannot convert '{src.name}': {first or log.last_line()}") from exc
    if precision == "fp16":
        with quiet_output():  # ai-edge-quantizer prints sizes and progress bars
            blob = fp16_weights(blob)
    write_bytes_atomic(out, blob)
    write_json_atomic(sidecar_path(out), sidecar_data(props, in_shape, out_shapes, precision, src.name))
    return out


def _convert(litert_torch: Any, module: Any, sample: Any) -> bytes:
    """Run litert-torch in a temp folder (its progress lines off unless asked for) and return the bytes."""
    before = os.environ.get(PROGRESS_ENV)
    os.environ.setdefault(PROGRESS_ENV, "n")
    try:
        with tempfile.TemporaryDirectory(prefix="edgebench-tflite-") as tmp:
            path = Path(tmp) / "model.tflite"
            litert_torch.convert(module, (sample,)).export(str(path))
            return path.read_bytes()
    finally:
        if before is None:
            os.environ.pop(PROGRESS_ENV, None)


def fp16_weights(blob: bytes) -> bytes:
    """The model with float16 weights on conv/FC ops (weight-only float casting; compute stays fp32)."""
    aeq = _import("ai_edge_quantizer", "ai-edge-quantizer")
    from ai_edge_quantizer import qtyping

    qt = aeq.Quantizer(bytearray(blob))
    for op_name in FP16_WEIGHT_OPS:
        qt.add_weight_only_config(".*", getattr(qtyping.TFLOperationName, op_name), 16,
                                  algorithm_key=aeq.algorithm_manager.AlgorithmName.FLOAT_CASTING)
    return bytes(qt.quantize().quantized_model)


def sidecar_data(props: dict[str, str], in_shape: list[int], out_shapes: list[list[Any]], precision: str,
                 source: str) -> dict[str, Any]:
    """The sidecar: the source's props, our ModelMeta props, and what the runtime needs (layout, shapes)."""
    n, c, h, w = in_shape
    outs = [[1 if i == 0 and d is None else d for i, d in enumerate(s)] for s in out_shapes]
    return {**converted_props(props, in_shape, precision, source, "tflite"), "format": "tflite",
            "source": source, "precision": precision, "weights_storage": "fp16" if precision == "fp16" else "fp32",
            "input_layout": "NHWC", "input_shape": in_shape, "tflite_input_shape": [n, h, w, c],
            "output_shapes": outs, "litert_torch": _version("litert-torch")}


def _input_name(model: onnx.ModelProto) -> str:
    weights = {t.name for t in model.graph.initializer}
    return str(next(i.name for i in model.graph.input if i.name not in weights))


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
