"""ONNX graph -> torch.nn.Module that runs it node by node (static shapes, so torch.export traces it).

Constant subgraphs (Constant, Cast/DequantizeLinear of fp16/int8 weights, Shape of static tensors
and what follows) are folded at build time into buffers; `forward` runs the input-dependent nodes.
Covers YOLO-style graphs; any other op is a one-line ConversionError. torch stays in converters.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

from runtimes.errors import ConversionError

_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32, 7: torch.int64,
           9: torch.bool, 10: torch.float16, 11: torch.float64, 16: torch.bfloat16}


@dataclass
class Node:
    """One ONNX node: attributes as Python values, static values of its constant inputs."""

    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]
    opset: int
    consts: dict[int, np.ndarray] = field(default_factory=dict)

    def ints(self, i: int, attr: str | None = None) -> list[int] | None:
        """Input `i` as a list of ints (it must be a constant), else attribute `attr`, else None."""
        if i < len(self.inputs) and self.inputs[i]:
            if i not in self.consts:
                raise ConversionError(f"{self.op} node '{self.name}' needs a constant input {i} "
                                      f"('{self.inputs[i]}'); data-dependent shapes are not supported")
            return [int(v) for v in np.asarray(self.consts[i]).reshape(-1)]
        value = self.attrs.get(attr) if attr else None
        return [int(v) for v in value] if value is not None else None

    def floats(self, i: int) -> list[float] | None:
        """Constant input `i` as floats, else None."""
        known = i < len(self.inputs) and self.inputs[i] and i in self.consts
        return [float(v) for v in np.asarray(self.consts[i]).reshape(-1)] if known else None


Handler = Callable[..., Any]
OPS: dict[str, Handler] = {}


def op(*names: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in names:
            OPS[name] = fn
        return fn
    return register


def _pads_2x(pads: list[int], rank: int) -> tuple[list[int], bool]:
    """ONNX [x1_begin, x2_begin, ..., x1_end, ...] -> (torch F.pad order, symmetric?)."""
    pads = pads or [0] * (2 * rank)
    begin, end = pads[:rank], pads[rank:]
    flat = [v for b, e in zip(reversed(begin), reversed(end), strict=False) for v in (b, e)]
    return flat, begin == end


def _explicit_pads(n: Node, rank: int) -> list[int]:
    mode = n.attrs.get("auto_pad", b"NOTSET").decode()
    if mode not in ("NOTSET", "VALID"):
        raise ConversionError(f"{n.op} node '{n.name}' uses auto_pad={mode}; export with explicit pads")
    return list(n.attrs.get("pads", [0] * 2 * rank)) if mode == "NOTSET" else [0] * 2 * rank


@op("Conv")
def _conv(n: Node, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    rank = x.dim() - 2
    strides = list(n.attrs.get("strides", [1] * rank))
    dil = list(n.attrs.get("dilations", [1] * rank))
    pads, symmetric = _pads_2x(_explicit_pads(n, rank), rank)
    padding: Any = pads[::2][::-1] if symmetric else 0
    if not symmetric:
        x = F.pad(x, pads)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[rank]
    return conv(x, w, b, strides, padding, dil, int(n.attrs.get("group", 1)))


@op("MaxPool")
def _pool(n: Node, x: torch.Tensor) -> torch.Tensor:
    kernel = list(n.attrs["kernel_shape"])
    rank = len(kernel)
    strides = list(n.attrs.get("strides", [1] * rank))
    pads, symmetric = _pads_2x(_explicit_pads(n, rank), rank)
    ceil = bool(n.attrs.get("ceil_mode", 0))
    padding: Any = pads[::2][::-1] if symmetric else 0
    if not symmetric:
        x = F.pad(x, pads, value=float("-inf"))
    pool: Callable[..., torch.Tensor] = getattr(F, f"max_pool{rank}d")
    return pool(x, kernel, strides, padding, 1, ceil)


@op("Resize", "Upsample")
def _resize(n: Node, x: torch.Tensor, *_: Any) -> torch.Tensor:
    mode = n.attrs.get("mode", b"nearest").decode()
    ctm = n.attrs.get("coordinate_transformation_mode", b"half_pixel").decode()
    sizes = n.ints(3) if n.op == "Resize" and len(n.inputs) > 3 and n.inputs[3] else None
    scales = n.floats(2 if n.op == "Resize" else 1) or list(n.attrs.get("scales", []))
    if sizes is None:
        if not scales:
            raise ConversionError(f"Resize node '{n.name}' needs constant scales or sizes")
        sizes = [int(np.floor(s * f)) for s, f in zip(x.shape, scales, strict=False)]
    if list(sizes[:2]) != list(x.shape[:2]):
        raise ConversionError(f"Resize node '{n.name}' resizes the batch or channel axis")
    out = [int(v) for v in sizes[2:]]
    if mode == "nearest":
        nearest = n.attrs.get("nearest_mode", b"round_prefer_floor").decode()
        exact = all(o % s == 0 for o, s in zip(out, x.shape[2:], strict=False))  # integer upscale: modes agree
        if not exact and (ctm != "asymmetric" or nearest != "floor"):
            raise ConversionError(f"Resize node '{n.name}': nearest with {ctm}/{nearest} at a non-integer scale")
        return F.interpolate(x, size=out, mode="nearest")
    raise ConversionError(f"Resize node '{n.name}': mode '{mode}' with '{ctm}' is not supported")


@op("Reshape")
def _reshape(n: Node, x: torch.Tensor, _: Any) -> torch.Tensor:
    shape = n.ints(1) or []
    if not n.attrs.get("allowzero", 0):
        shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return x.reshape(shape)


@op("Flatten")
def _flatten(n: Node, x: torch.Tensor) -> torch.Tensor:
    axis = int(n.attrs.get("axis", 1)) % max(x.dim(), 1)
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


@op("Transpose")
def _transpose(n: Node, x: torch.Tensor) -> torch.Tensor:
    return x.permute(*n.attrs.get("perm", list(range(x.dim()))[::-1]))


@op("Softmax")
def _softmax(n: Node, x: torch.Tensor) -> torch.Tensor:
    if n.opset >= 13:
        return torch.softmax(x, int(n.attrs.get("axis", -1)))
    axis = int(n.attrs.get("axis", 1)) % x.dim()  # opset < 13: over the flattened trailing axes
    return torch.softmax(x.reshape(int(np.prod(x.shape[:axis])), -1), 1).reshape(x.shape)


@op("Concat")
def _concat(n: Node, *xs: torch.Tensor) -> torch.Tensor:
    return torch.cat([x for x in xs if x is not None], int(n.attrs["axis"]))


@op("Split")
def _split(n: Node, x: torch.Tensor, *_: Any) -> tuple[torch.Tensor, ...]:
    axis = int(n.attrs.get("axis", 0))
    sizes = n.ints(1, "split")
    if sizes is None:
        parts = len(n.outputs)
        size = -(-x.shape[axis] // parts)
        sizes = [min(size, x.shape[axis] - i * size) for i in range(parts)]
    return tuple(torch.split(x, sizes, axis))


@op("Slice")
def _slice(n: Node, x: torch.Tensor, *_: Any) -> torch.Tensor:
    starts, ends = n.ints(1, "starts"), n.ints(2, "ends")
    axes = n.ints(3, "axes") or list(range(len(starts or [])))
    steps = n.ints(4) or [1] * len(axes)
    index = [slice(None)] * x.dim()
    for start, end, axis, step in zip(starts or [], ends or [], axes, steps, strict=False):
        if step < 1:
            raise ConversionError(f"Slice node '{n.name}' has step {step} (only positive steps are supported)")
        size = x.shape[axis]
        index[axis] = slice(max(min(start, size), -size), max(min(end, size), -size - 1), step)
    return x[tuple(index)]


@op("Gather")
def _gather(n: Node, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    axis = int(n.attrs.get("axis", 0)) % x.dim()
    if 1 in n.consts and np.asarray(n.consts[1]).ndim == 0:
        return x.select(axis, int(n.consts[1]) % x.shape[axis])
    idx = torch.where(idx < 0, idx + x.shape[axis], idx).long()
    flat = torch.index_select(x, axis, idx.reshape(-1))
    return flat.reshape(*x.shape[:axis], *idx.shape, *x.shape[axis + 1:])


@op("Unsqueeze")
def _unsqueeze(n: Node, x: torch.Tensor, *_: Any) -> torch.Tensor:
    axes = sorted(a % (x.dim() + len(n.ints(1, "axes") or [])) for a in n.ints(1, "axes") or [])
    for a in axes:
        x = x.unsqueeze(a)
    return x


@op("Squeeze")
def _squeeze(n: Node, x: torch.Tensor, *_: Any) -> torch.Tensor:
    axes = n.ints(1, "axes")
    if axes is None:
        return x.squeeze()
    return x.squeeze(tuple(a % x.dim() for a in axes))


@op("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin")
def _reduce(n: Node, x: torch.Tensor, *_: Any) -> torch.Tensor:
    axes = n.ints(1, "axes")  # an input from opset 13 (Sum) / 18 (others), an attribute before
    keep = bool(n.attrs.get("keepdims", 1))
    if not axes:
        if n.attrs.get("noop_with_empty_axes", 0):
            return x
        axes = list(range(x.dim()))
    dims = tuple(a % x.dim() for a in axes)
    fns: dict[str, Callable[..., torch.Tensor]] = {"ReduceSum": torch.sum, "ReduceMean": torch.mean,
                                                   "ReduceMax": torch.amax, "ReduceMin": torch.amin}
    return fns[n.op](x, dims, keepdim=keep)


@op("DepthToSpace")
def _depth_space(n: Node, x: torch.Tensor) -> torch.Tensor:
    b = int(n.attrs["blocksize"])
    N, C, H, W = x.shape
    if n.attrs.get("mode", b"DCR").decode() == "CRD":
        return F.pixel_shuffle(x, b)
    y = x.reshape(N, b, b, C // (b * b), H, W).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(N, C // (b * b), H * b, W * b)


@op("Cast")
def _cast(n: Node, x: torch.Tensor) -> torch.Tensor:
    to = int(n.attrs["to"])
    if to not in _DTYPES:
        raise ConversionError(f"Cast node '{n.name}' casts to ONNX type {to}, which is not supported")
    return x.to(_DTYPES[to])


@op("DequantizeLinear")
def _dequantize(n: Node, x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None = None) -> torch.Tensor:
    shape = [1] * x.dim()
    if scale.dim() == 1 and scale.numel() > 1:
        shape[int(n.attrs.get("axis", 1)) % x.dim()] = -1
    z = 0.0 if zero is None else zero.float().reshape(shape)
    return (x.float() - z) * scale.float().reshape(shape)


@op("Clip")
def _clip(n: Node, x: torch.Tensor, lo: torch.Tensor | None = None, hi: torch.Tensor | None = None) -> torch.Tensor:
    lo_v = n.floats(1) or ([n.attrs["min"]] if "min" in n.attrs else None)
    hi_v = n.floats(2) or ([n.attrs["max"]] if "max" in n.attrs else None)
    return torch.clamp(x, lo_v[0] if lo_v else None, hi_v[0] if hi_v else None)


@op("HardSigmoid")
def _hard_sigmoid(n: Node, x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(float(n.attrs.get("alpha", 0.2)) * x + float(n.attrs.get("beta", 0.5)), 0.0, 1.0)


@op("Div")
def _div(n: Node, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    exact = a.is_floating_point() or b.is_floating_point()
    return a / b if exact else torch.div(a, b, rounding_mode="trunc")  # ONNX integer Div truncates


@op("Expand")
def _expand(n: Node, x: torch.Tensor, _: Any) -> torch.Tensor:
    return x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(n.ints(1) or [])))  # type: ignore[no-untyped-call]


def _simple(fn: Callable[..., torch.Tensor]) -> Handler:
    return lambda n, *xs: fn(*xs)


_SIMPLE: dict[str, Callable[..., torch.Tensor]] = {
    "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Pow": torch.pow,
    "MatMul": torch.matmul, "Max": torch.maximum, "Min": torch.minimum, "Sigmoid": torch.sigmoid,
    "Relu": torch.relu, "Tanh": torch.tanh, "Exp": torch.exp, "Log": torch.log, "Sqrt": torch.sqrt,
    "Neg": torch.neg, "Abs": torch.abs, "Floor": torch.floor, "Ceil": torch.ceil, "Erf": torch.erf,
    "HardSwish": F.hardswish, "Identity": lambda x: x, "PRelu": lambda x, s: torch.where(x >= 0, x, x * s),
    "Equal": torch.eq, "Greater": torch.gt, "Less": torch.lt, "Where": torch.where, "Not": torch.logical_not,
}
for _name, _fn in _SIMPLE.items():
    OPS[_name] = _simple(_fn)


class OnnxModule(torch.nn.Module):
    """Runs an ONNX graph with torch ops; constants are buffers, folded once at build time."""

    def __init__(self, model: onnx.ModelProto, input_shapes: dict[str, Sequence[int]] | None = None) -> None:
        super().__init__()
        graph = model.graph
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in consts]
        self.output_names = [o.name for o in graph.output]
        shapes = _static_shapes(model, input_shapes or {})
        self._nodes: list[Node] = []
        for proto in graph.node:
            node = Node(proto.op_type, proto.name or proto.op_type, list(proto.input), list(proto.output),
                        {a.name: helper.get_attribute_value(a) for a in proto.attribute}, opset)
            if proto.domain not in ("", "ai.onnx") or (node.op not in OPS and node.op not in _FOLD_ONLY):
                raise ConversionError(f"ONNX op '{node.op}' (node '{node.name}') is not supported by the "
                                      f"ONNX->torch converter")
            folded = _fold(node, consts, shapes)
            if folded is None:
                node.consts = {i: consts[x] for i, x in enumerate(node.inputs) if x in consts}
                self._nodes.append(node)
            else:
                consts.update(zip(node.outputs, folded, strict=False))
        used = {x for n in self._nodes for x in n.inputs} | set(self.output_names)
        self._buffers_of: dict[str, str] = {}
        for i, name in enumerate(x for x in consts if x in used):
            self._buffers_of[name] = f"c{i}"
            self.register_buffer(f"c{i}", torch.from_numpy(np.array(consts[name])))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        env: dict[str, torch.Tensor] = dict(zip(self.input_names, inputs, strict=False))
        for node in self._nodes:
            args = [self._value(x, env) if x else None for x in node.inputs]
            while args and args[-1] is None:
                args.pop()
            out = OPS[node.op](node, *args)
            env.update(zip(node.outputs, out if isinstance(out, tuple) else (out,), strict=False))
        outs = tuple(self._value(x, env) for x in self.output_names)
        return outs[0] if len(outs) == 1 else outs

    def _value(self, name: str, env: dict[str, torch.Tensor]) -> torch.Tensor:
        return env[name] if name in env else getattr(self, self._buffers_of[name])


_FOLD_ONLY = {"Constant", "Shape"}


def _static_shapes(model: onnx.ModelProto, overrides: dict[str, Sequence[int]]) -> dict[str, list[int]]:
    """Static shapes of the graph's tensors after ONNX shape inference (inputs fixed by `overrides`)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for inp in model.graph.input:
        if inp.name in overrides:
            dims = inp.type.tensor_type.shape.dim
            for d, v in zip(dims, overrides[inp.name], strict=False):
                d.dim_value = int(v)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # onnx raises InferenceError and others on malformed graphs
        raise ConversionError(f"ONNX shape inference failed: {str(exc).splitlines()[0]}") from exc
    out: dict[str, list[int]] = {}
    g = inferred.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim]
        if vi.type.tensor_type.HasField("shape") and all(d > 0 for d in dims):
            out[vi.name] = dims
    return out


def _fold(node: Node, consts: dict[str, np.ndarray], shapes: dict[str, list[int]]) -> list[np.ndarray] | None:
    """The node's outputs when they are known at build time (constant inputs, static shapes), else None."""
    if node.op == "Constant":
        return [_constant_value(node)]
    if node.op == "Shape":
        shape = shapes.get(node.inputs[0])
        if shape is None:
            if node.inputs[0] in consts:
                shape = list(consts[node.inputs[0]].shape)
            else:
                raise ConversionError(f"{node.op} node '{node.name}' reads a dynamic shape; give static input shapes")
        return [np.array(shape[node.attrs.get("start", 0):node.attrs.get("end", None)], np.int64)]
    if not all(x in consts for x in node.inputs if x):
        return None
    node.consts = {i: consts[x] for i, x in enumerate(node.inputs) if x}
    args = [torch.from_numpy(np.array(consts[x])) if x else None for x in node.inputs]
    while args and args[-1] is None:
        args.pop()
    with torch.no_grad():
        out = OPS[node.op](node, *args)
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def _constant_value(node: Node) -> np.ndarray:
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in node.attrs:
            return np.array(node.attrs[key], dtype)
    if "value" in node.attrs:
        return numpy_helper.to_array(node.attrs["value"])
    raise ConversionError(f"Constant node '{node.name}' has no value attribute we read")


def onnx_to_torch(model: onnx.ModelProto | str | Path,
                  input_shapes: dict[str, Sequence[int]] | None = None) -> OnnxModule:
    """A torch module (eval mode) that computes the ONNX model; `input_shapes` fixes dynamic input dims."""
    if not isinstance(model, onnx.ModelProto):
        try:
            model = onnx.load(str(model))
        except Exception as exc:  # onnx raises DecodeError and others for corrupt files
            raise ConversionError(f"cannot read ONNX model '{model}': {exc}") from exc
    return OnnxModule(model, input_shapes).eval()
