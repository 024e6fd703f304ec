"""Ties between a float .tflite and the QAT model it came from: which TFLite tensor holds which learned ONNX
tensor (by values on a probe image), which conv weight is which int8 initializer (by exact values), and the
learned quantization that value-moving ops (reshape, pooling, concat...) pass on to their outputs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from calibration import tflite_ops
from calibration.qat_strip import Learned

#: TFLite ops whose int8 output takes its input's scale (ai-edge-quantizer: SAME_AS_INPUT / SAME_AS_OUTPUT)
SAME_SCALE_OPS = frozenset({"RESHAPE", "TRANSPOSE", "CONCATENATION", "SPLIT", "SPLIT_V", "MAX_POOL_2D", "PAD",
                            "RESIZE_NEAREST_NEIGHBOR", "SLICE", "STRIDED_SLICE", "GATHER", "SQUEEZE",
                            "EXPAND_DIMS", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "PACK", "UNPACK"})
#: TFLite ops whose weights (input 1) carry per-output-channel scales
WEIGHT_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})


def tie_activations(float_onnx: Path, blob: bytes, learned: dict[str, Learned],
                    probe_nchw: np.ndarray) -> dict[str, str]:
    """TFLite tensor name -> the learned ONNX tensor whose values it holds on `probe_nchw` (NHWC tensors are
    compared as NCHW); a tensor equal to two learned ones keeps the first in graph order."""
    values = onnx_values(float_onnx, list(learned), probe_nchw)
    tfl_values = _tflite_values(blob, probe_nchw)
    by_size: dict[int, list[str]] = {}
    for name, value in tfl_values.items():
        by_size.setdefault(int(value.size), []).append(name)
    ties: dict[str, str] = {}
    for onnx_name, want in values.items():
        for name in by_size.get(int(want.size), []):
            if name not in ties and _same_values(tfl_values[name], want):
                ties[name] = onnx_name
    return ties


def onnx_values(path: Path, names: list[str], probe: np.ndarray, optimize: bool = True) -> dict[str, np.ndarray]:
    """The named tensors of the ONNX model on `probe` (ONNX Runtime), in graph order; the input included.
    `optimize=False`: ONNX Runtime's graph optimisations off, so Q/DQ pairs are evaluated as written."""
    import onnxruntime as ort

    model = onnx.load(str(path))
    inputs = {i.name for i in model.graph.input}
    order = [i.name for i in model.graph.input] + [o for n in model.graph.node for o in n.output]
    wanted = [n for n in order if n in set(names)]
    present = {o.name for o in model.graph.output}
    for name in wanted:
        if name not in present and name not in inputs:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    opts = ort.SessionOptions()
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    first = sess.get_inputs()[0].name
    outs = [o for o in wanted if o not in inputs]
    values = dict(zip(outs, sess.run(outs, {first: probe.astype(np.float32)}), strict=True))
    values.update({n: probe for n in wanted if n in inputs})
    return {n: np.asarray(values[n]) for n in wanted}


def _tflite_values(blob: bytes, probe_nchw: np.ndarray) -> dict[str, np.ndarray]:
    """Every float activation tensor of the .tflite (op outputs and the input) on the probe image."""
    interp = tflite_ops.interpreter(blob, preserve_all=True)
    detail = interp.get_input_details()[0]
    interp.set_tensor(detail["index"], np.ascontiguousarray(probe_nchw.transpose(0, 2, 3, 1), np.float32))
    interp.invoke()
    names = {int(t["index"]): str(t["name"]) for t in interp.get_tensor_details()}
    produced = [int(detail["index"])] + [int(o) for op in interp._get_ops_details() for o in op["outputs"] if o >= 0]
    values = {names[i]: np.asarray(interp.get_tensor(i)) for i in produced}
    return {k: v for k, v in values.items() if v.dtype == np.float32}


def _same_values(value: np.ndarray, want: np.ndarray) -> bool:
    """Equal up to float rounding (relative to the tensor's largest value), as is or NHWC read as NCHW."""
    views = [value] + ([value.transpose(0, 3, 1, 2)] if value.ndim == 4 else [])
    scale = float(np.max(np.abs(want))) + 1e-6
    flat = want.reshape(-1)
    return any(float(np.max(np.abs(v.reshape(-1) - flat))) / scale <= tflite_ops.MATCH_TOLERANCE for v in views)


def tie_weights(blob: bytes, weights: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple[str, int]]:
    """TFLite conv/FC weight tensor name -> (the ONNX weight initializer with exactly its values, the TFLite
    axis of the output channels): OHWI, depthwise 1HWO and OI layouts are read back as the ONNX's OIHW / OI."""
    interp = tflite_ops.interpreter(blob)
    tensors = {int(t["index"]): t for t in interp.get_tensor_details()}
    onnx_float = {name: (q.astype(np.float32) * s.reshape(-1, *([1] * (q.ndim - 1)))).astype(np.float32)
                  for name, (q, s) in weights.items()}
    ties: dict[str, tuple[str, int]] = {}
    for op in interp._get_ops_details():
        if op["op_name"] not in WEIGHT_OPS or len(op["inputs"]) < 2:
            continue
        detail = tensors[int(op["inputs"][1])]
        value = np.asarray(interp.get_tensor(int(detail["index"])))
        as_onnx = onnx_layout(value, str(op["op_name"]))
        match = next((n for n, w in onnx_float.items() if w.shape == as_onnx.shape and np.array_equal(w, as_onnx)),
                     None)
        if match is not None:
            ties[str(detail["name"])] = (match, 3 if op["op_name"] == "DEPTHWISE_CONV_2D" else 0)
    return ties


def onnx_layout(value: np.ndarray, op_name: str) -> np.ndarray:
    """A TFLite weight (OHWI, depthwise 1HWO) in the ONNX layout (OIHW)."""
    if value.ndim != 4:
        return value
    order = (3, 0, 1, 2) if op_name == "DEPTHWISE_CONV_2D" else (0, 3, 1, 2)
    return np.transpose(value, order)


def inherit_learned(blob: bytes, learned: dict[str, Learned]) -> dict[str, Learned]:
    """`learned` (TFLite tensor -> quantization) plus the outputs of value-moving ops (SAME_SCALE_OPS) whose
    activation inputs all carry a learned quantization: the same one (their values lie on that grid), or, for a
    concatenation (one int8 scale for all its inputs in TFLite), the one covering all their learned ranges."""
    out = dict(learned)
    for op in graph_ops(blob):
        found = [out[name] for name in op.inputs if name in out]
        if op.kind not in SAME_SCALE_OPS or not found or len(found) < len(op.inputs):
            continue
        if len(set(found)) > 1 and op.kind != "CONCATENATION":
            continue
        value = covering(found)
        for name in op.outputs:
            out.setdefault(name, value)
    return out


def covering(known: list[Learned]) -> Learned:
    """The int8 quantization whose range covers every one of `known` (one of them when it covers the others)."""
    widest = max(known, key=lambda v: v.scale)
    lo, hi = min(float(v.qsv()["min"]) for v in known), max(float(v.qsv()["max"]) for v in known)
    if float(widest.qsv()["min"]) <= lo and float(widest.qsv()["max"]) >= hi:
        return widest
    scale = (hi - lo) / 255
    return Learned(scale, int(np.clip(round(-128 - lo / scale), -128, 127)))


@dataclass(frozen=True)
class GraphOp:
    """A TFLite op by tensor names: its type, activation inputs (constants left out) and outputs."""

    kind: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def graph_ops(blob: bytes) -> list[GraphOp]:
    """The .tflite's ops in execution order."""
    interp = tflite_ops.interpreter(blob)
    names = {int(t["index"]): str(t["name"]) for t in interp.get_tensor_details()}
    raw = interp._get_ops_details()
    produced = {int(o) for op in raw for o in op["outputs"]} | {int(d["index"]) for d in interp.get_input_details()}
    return [GraphOp(str(op["op_name"]), tuple(names[int(i)] for i in op["inputs"] if int(i) in produced),
                    tuple(names[int(o)] for o in op["outputs"] if int(o) >= 0)) for op in raw]
