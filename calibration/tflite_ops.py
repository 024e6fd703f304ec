"""The ops of a .tflite file: which compute in float, and which ONNX node each one came from.

litert-torch names a tensor after the torch module path and a running number (`...OnnxModule_inner;141`),
not after the ONNX node the op came from, so the ONNX node names `--exclude` takes cannot be read off
the .tflite. They are matched by value instead: the ONNX model (ONNX Runtime, every node output kept)
and the float .tflite (every tensor kept) run on the same image, and each TFLite op takes the ONNX
node whose output holds the same values (NHWC tensors compared transposed to NCHW). When several
nodes hold equal values (a Reshape keeps its input's values), the same shape wins, then a node that
computes (not an Identity), then the nearest relative graph position. An op with no match (the PAD
litert-torch puts before a padded convolution) belongs to the node of the op that consumes its output.
The req.source given to the quantizer must be the ONNX the .tflite was converted from (after any rewrite).
"""
from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.errors import BackendUnavailableError, CalibrationError

#: ops that only convert between float and integer (neither is "left in float")
CONVERT_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})
#: relative error under which an ONNX and a TFLite tensor are "the same values"
MATCH_TOLERANCE = 1e-3
_FLOAT = (np.float32, np.float16)
#: ONNX ops that pass their input through: a TFLite op matching one also matches the node before it
PASSTHROUGH = frozenset({"Identity", "Dropout"})


@dataclass(frozen=True)
class TfliteOp:
    """One op of a .tflite graph: position, type, output tensor names, activation input types."""

    index: int
    name: str  # op type, e.g. CONV_2D
    outputs: tuple[str, ...]
    input_dtypes: tuple[str, ...]  # of the non-constant inputs

    @property
    def label(self) -> str:
        """How results name the op: TYPE@index."""
        return f"{self.name}@{self.index}"

    @property
    def computes_in_float(self) -> bool:
        """True for a non-conversion op whose activation input is float."""
        return self.name not in CONVERT_OPS and any(np.dtype(d).type in _FLOAT for d in self.input_dtypes[:1])


def interpreter(model: str | Path | bytes, preserve_all: bool = False) -> Any:
    """A LiteRT interpreter on TFLite's own kernels (no delegate: every op stays visible), tensors allocated."""
    try:
        mod = importlib.import_module("ai_edge_litert.interpreter")
    except ImportError as exc:
        raise BackendUnavailableError("tflite", "ai-edge-litert", "tflite", f"import failed: {exc}") from exc
    source: dict[str, Any] = ({"model_content": bytes(model)} if isinstance(model, (bytes, bytearray))
                              else {"model_path": str(model)})
    interp = mod.Interpreter(**source, experimental_preserve_all_tensors=preserve_all,
                             experimental_op_resolver_type=mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    return interp


def read_ops(interp: Any) -> list[TfliteOp]:
    """The graph's ops in execution order."""
    tensors = {int(t["index"]): t for t in interp.get_tensor_details()}
    consts = _constant_tensors(interp, tensors)
    ops = []
    for op in interp._get_ops_details():
        ins = [int(i) for i in op["inputs"] if int(i) >= 0 and int(i) not in consts]
        ops.append(TfliteOp(int(op["index"]), str(op["op_name"]),
                            tuple(str(tensors[int(o)]["name"]) for o in op["outputs"] if int(o) >= 0),
                            tuple(np.dtype(tensors[i]["dtype"]).name for i in ins)))
    return ops


def _constant_tensors(interp: Any, tensors: dict[int, dict[str, Any]]) -> set[int]:
    """Tensors no op produces and that are not graph inputs (weights, biases, shapes)."""
    produced = {int(o) for op in interp._get_ops_details() for o in op["outputs"]}
    inputs = {int(d["index"]) for d in interp.get_input_details()}
    return {i for i in tensors if i not in produced and i not in inputs}


def float_ops(model: str | Path | bytes) -> list[TfliteOp]:
    """Every op of `model` that computes in float (conversion ops QUANTIZE/DEQUANTIZE not counted)."""
    return [op for op in read_ops(interpreter(model)) if op.computes_in_float]


def scope_regex(ops: Sequence[TfliteOp]) -> str:
    """A regex matching exactly these ops' scopes (ai-edge-quantizer: the output names joined by ';', plus ';')."""
    scopes = sorted({";".join(op.outputs) + ";" for op in ops})
    return "^(?:" + "|".join(re.escape(s) for s in scopes) + ")$"


def onnx_nodes_of_ops(onnx_path: str | Path, tflite_path: str | Path,
                      sample_nchw: np.ndarray) -> dict[int, tuple[str, ...]]:
    """TFLite op index -> the ONNX nodes whose output holds its output's values, the one it computes
    first (see the module doc). Ops whose output matches nothing and feeds no matched op are left out."""
    ref, order = _onnx_values(onnx_path, sample_nchw)
    interp = interpreter(tflite_path, preserve_all=True)
    detail = interp.get_input_details()[0]
    x = sample_nchw.transpose(0, 2, 3, 1) if _is_nhwc(detail, sample_nchw) else sample_nchw
    interp.set_tensor(detail["index"], np.ascontiguousarray(x, dtype=np.float32))
    interp.invoke()
    raw = [op for op in interp._get_ops_details() if op["op_name"] != "DELEGATE"]
    by_size: dict[int, list[str]] = {}
    for name, value in ref.items():
        by_size.setdefault(int(value.size), []).append(name)
    found: dict[int, tuple[str, ...]] = {}
    for op in raw:
        outs = [int(o) for o in op["outputs"] if int(o) >= 0]
        if not outs:
            continue
        nodes = _matches(interp.get_tensor(outs[0]), by_size, ref, order, int(op["index"]) / max(len(raw), 1))
        if nodes:
            found[int(op["index"])] = nodes
    return _fill_unmatched(raw, found)


def _is_nhwc(detail: dict[str, Any], sample_nchw: np.ndarray) -> bool:
    shape = [int(d) for d in detail["shape"]]
    return len(shape) == 4 and shape != list(sample_nchw.shape) and shape[3] == sample_nchw.shape[1]


@dataclass(frozen=True)
class _Producer:
    node: str
    position: float  # index in the graph / node count
    passthrough: bool  # Identity-like: it computes nothing of its own


def _onnx_values(onnx_path: str | Path, sample_nchw: np.ndarray) -> tuple[dict[str, np.ndarray],
                                                                           dict[str, _Producer]]:
    """Every float node output of the ONNX model on `sample_nchw` (ONNX Runtime), and its producer."""
    import onnx

    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError as exc:
        raise BackendUnavailableError("onnxruntime", "onnxruntime", None,
                                      "needed to map ONNX node names to TFLite ops") from exc
    model = onnx.load(str(onnx_path))
    known = {vi.name: vi for vi in onnx.shape_inference.infer_shapes(model).graph.value_info}
    present = {o.name for o in model.graph.output}
    nodes = list(model.graph.node)
    order = {out: _Producer(n.name, i / max(len(nodes), 1), n.op_type in PASSTHROUGH)
             for i, n in enumerate(nodes) for out in n.output if out}
    for out in order:
        vi = known.get(out)
        if out not in present and vi is not None and vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            model.graph.output.append(vi)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    values = sess.run(None, {sess.get_inputs()[0].name: sample_nchw.astype(np.float32)})
    return {k: np.asarray(v) for k, v in zip(names, values, strict=True) if k in order}, order


def _matches(value: np.ndarray, by_size: dict[int, list[str]], ref: dict[str, np.ndarray],
             order: dict[str, _Producer], position: float) -> tuple[str, ...]:
    """The ONNX nodes whose output equals `value` (NHWC tried as NCHW too), best first: the same shape,
    then a node that computes (not Identity), then the nearest graph position."""
    if value.dtype.type not in _FLOAT:
        return ()
    views = [value] + ([value.transpose(0, 3, 1, 2)] if value.ndim == 4 else [])
    ranked: dict[str, tuple[bool, bool, float]] = {}
    for name in by_size.get(int(value.size), []):
        want, producer = ref[name], order[name]
        scale = float(np.max(np.abs(want))) + 1e-6
        for view in views:
            if float(np.max(np.abs(view.reshape(-1) - want.reshape(-1)))) / scale > MATCH_TOLERANCE:
                continue
            rank = (view.shape != want.shape, producer.passthrough, abs(producer.position - position))
            if producer.node not in ranked or rank < ranked[producer.node]:
                ranked[producer.node] = rank
    return tuple(sorted(ranked, key=lambda n: ranked[n]))


def _fill_unmatched(raw: list[dict[str, Any]], found: dict[int, tuple[str, ...]]) -> dict[int, tuple[str, ...]]:
    """Give an unmatched op the nodes of the first matched op that consumes its output (walking forward)."""
    consumers: dict[int, list[int]] = {}
    for op in raw:
        for t in op["inputs"]:
            consumers.setdefault(int(t), []).append(int(op["index"]))
    out = dict(found)
    for op in reversed(raw):  # consumers come later: walking backwards settles them first
        index = int(op["index"])
        if index in out:
            continue
        after = [c for t in op["outputs"] for c in consumers.get(int(t), []) if c in out]
        if after:
            out[index] = out[min(after)]
    return out


def ops_of_nodes(mapping: dict[int, tuple[str, ...]], nodes: Sequence[str],
                 ops: Sequence[TfliteOp]) -> tuple[list[TfliteOp], list[str]]:
    """The ops that compute one of `nodes` (their best match), and the nodes no op's output holds."""
    wanted = set(nodes)
    chosen = [op for op in ops if mapping.get(op.index, ("",))[0] in wanted]
    seen = {n for found in mapping.values() for n in found}
    return chosen, [n for n in nodes if n not in seen]


def check_mapped(mapping: dict[int, tuple[str, ...]], ops: Sequence[TfliteOp]) -> None:
    """CalibrationError when fewer than half the ops found their ONNX node (the two graphs do not match)."""
    if len(mapping) * 2 < len(ops):
        raise CalibrationError(f"only {len(mapping)} of the {len(ops)} TFLite ops could be matched to ONNX "
                               "nodes: is the .tflite converted from this ONNX?")
