"""TFLite backend: a `.tflite` file on the LiteRT interpreter (ai-edge-litert) with its default XNNPACK delegate.

The public input spec is NCHW [1, 3, H, W] float32 like every backend; a model whose input is NHWC
(the sidecar `<model>.tflite.json` says `"input_layout": "NHWC"`, or the shape is [1, H, W, 3]) is
fed a transposed copy. Quantized (int8/uint8) inputs are quantized with the tensor's scale/zero
point and quantized outputs dequantized, so `infer` always takes and returns float32. The model is
fixed to its converted size: another size is an InputError.

Precision: `precision_used` comes from the tensor types of the compute ops (int8 when every one takes
quantized input, mixed when some do). The LiteRT Python Interpreter gives no way to pass XNNPACK flags
(FORCE_FP16), so a float16-weights model computes fp32 and an explicit "fp16" request fails.
"""
from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.base import Runtime, RuntimeOptions, TensorSpec, first_line, read_sidecar_json
from runtimes.errors import BackendNotImplementedError, InputError, ModelLoadError
from runtimes.precision import LayerTally, Precision, tally
from runtimes.registry import import_engine
from runtimes.tflite_delegation import Delegation, delegation_report
from runtimes.tflite_quant import dequantize, is_quantized, quantize
from runtimes.threads import resolve_threads

#: ops that carry the arithmetic; their input tensor's type is the precision they compute in
_COMPUTE_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL"})
_FLOAT_DTYPES = {np.dtype(np.float32): Precision.FP32, np.dtype(np.float16): Precision.FP16}
LAYOUTS = ("NCHW", "NHWC")

__all__ = ["Delegation", "TfliteRuntime"]


class TfliteRuntime(Runtime):
    """A model on LiteRT (CPU, XNNPACK). Options.extra: xnnpack (True), input_layout ("NHWC"/"NCHW")."""

    name = "tflite"

    def __init__(self, path: str | Path, options: RuntimeOptions | None = None) -> None:
        super().__init__(path, options)
        self._check_options()
        self._litert = import_engine("tflite")
        self._side = read_sidecar_json(self.path)
        self._lock = threading.Lock()  # one Interpreter runs one inference at a time
        self._interp = self._load()
        self._in = self._interp.get_input_details()
        self._out = self._interp.get_output_details()
        self._layouts = [self._layout(d) for d in self._in]
        self._inputs = [_public_input(d, lay) for d, lay in zip(self._in, self._layouts, strict=False)]
        self._outputs = self._output_specs()
        self._delegation: Delegation | None = None
        self._tally = self._tensor_tally()
        self._precision = self._tally.precision
        self._check_precision("the precision is in the .tflite file's tensor types (LiteRT's Python "
                              "Interpreter cannot force XNNPACK fp16)")

    def _tensor_tally(self) -> LayerTally:
        tensors = {int(t["index"]): t for t in self._interp.get_tensor_details()}
        ops = self._interp._get_ops_details()
        return tally(_input_precision(tensors.get(int(op["inputs"][0])))
                           for op in ops if op["op_name"] in _COMPUTE_OPS and len(op["inputs"]))

    def _check_options(self) -> None:
        if self.path.suffix.lower() != ".tflite":
            raise ModelLoadError(f"the tflite backend reads .tflite files, got '{self.path.name}'")
        if self.options.device.lower() not in ("auto", "cpu"):
            raise BackendNotImplementedError(
                f"the tflite backend runs on the CPU only; device '{self.options.device}' is not implemented")

    def _load(self) -> Any:
        mod = importlib.import_module("ai_edge_litert.interpreter")
        use_xnnpack = bool(self.options.extra.get("xnnpack", True))
        resolver = mod.OpResolverType.AUTO if use_xnnpack else mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            interp = mod.Interpreter(model_path=str(self.path), num_threads=resolve_threads(self.options.threads),
                                     experimental_op_resolver_type=resolver)
            interp.allocate_tensors()  # the default XNNPACK delegate is applied here
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"LiteRT cannot load '{self.path}': {first_line(exc)}") from exc
        return interp

    def _layout(self, detail: dict[str, Any]) -> str:
        layout = str(self.options.extra.get("input_layout") or self._side.get("input_layout") or "").upper()
        shape = [int(d) for d in detail["shape"]]
        if not layout:  # no record: guess from a 3-channel 4-D shape
            layout = "NHWC" if len(shape) == 4 and shape[3] == 3 and shape[1] != 3 else "NCHW"
        if layout not in LAYOUTS:
            raise ModelLoadError(f"input_layout must be one of {LAYOUTS}, got '{layout}'")
        if layout == "NHWC" and len(shape) != 4:
            raise ModelLoadError(f"input '{detail['name']}' of '{self.path}' is NHWC but has shape {shape}")
        return layout

    def _output_specs(self) -> list[TensorSpec]:
        """Engine output order; names (and shapes) from the sidecar when it lists as many outputs."""
        names = self._side.get("output_names") or []
        shapes = self._side.get("output_shapes") or []
        specs = []
        for i, d in enumerate(self._out):
            shape = tuple(int(s) for s in d["shape"])
            side = shapes[i] if len(shapes) == len(self._out) else None
            if side and all(isinstance(d, int) for d in side) and int(np.prod(side)) == int(np.prod(shape)):
                shape = tuple(side)
            specs.append(TensorSpec(names[i] if len(names) == len(self._out) else d["name"], shape))
        return specs

    def _run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        feeds = [self._feed(arr, spec, d, lay)
                 for arr, spec, d, lay in zip(inputs, self._inputs, self._in, self._layouts, strict=False)]
        with self._lock:
            interp = self._interp
            if interp is None:
                raise ModelLoadError(f"tflite runtime for '{self.path}' is closed")
            for d, feed in zip(self._in, feeds, strict=False):
                interp.set_tensor(d["index"], feed)
            interp.invoke()
            raw = [interp.get_tensor(d["index"]) for d in self._out]  # copies
        return [dequantize(r, d).reshape(s.shape) for r, d, s in zip(raw, self._out, self._outputs, strict=False)]

    @staticmethod
    def _feed(arr: np.ndarray, spec: TensorSpec, detail: dict[str, Any], layout: str) -> np.ndarray:
        if arr.dtype != np.float32:
            raise InputError(f"input '{spec.name}' must be float32, got {arr.dtype}")
        x = arr.transpose(0, 2, 3, 1) if layout == "NHWC" else arr
        return np.ascontiguousarray(quantize(x, detail))

    def delegation(self) -> Delegation:
        """Which ops XNNPACK took: totals, partitions and the op types left on TFLite's own CPU kernels."""
        with self._lock:
            if self._delegation is None:
                if self._interp is None:
                    raise ModelLoadError(f"tflite runtime for '{self.path}' is closed")
                self._delegation = delegation_report(self._interp._get_ops_details())
        return self._delegation

    @property
    def input_layouts(self) -> list[str]:
        """The layout each engine input tensor has ("NHWC" inputs get a transposed copy)."""
        return list(self._layouts)

    @property
    def precision_used(self) -> Precision:
        """From the compute ops' input tensor types (see the module doc)."""
        return self._precision

    def engine_versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return {"ai-edge-litert": version("ai-edge-litert")}
        except PackageNotFoundError:
            return {"ai-edge-litert": str(getattr(self._litert, "__version__", "unknown"))}

    def close(self) -> None:
        with self._lock:
            self._interp = None


def _input_precision(detail: dict[str, Any] | None) -> Precision:
    """A compute op's precision from its input tensor: INT8 when quantized, else its float type."""
    if detail is None:
        return Precision.UNKNOWN
    if is_quantized(detail):
        return Precision.INT8
    return _FLOAT_DTYPES.get(np.dtype(detail["dtype"]), Precision.UNKNOWN)


def _public_input(detail: dict[str, Any], layout: str) -> TensorSpec:
    shape = [int(d) for d in detail["shape"]]
    if layout == "NHWC":
        shape = [shape[0], shape[3], shape[1], shape[2]]
    return TensorSpec(str(detail["name"]), tuple(shape), "float32")



