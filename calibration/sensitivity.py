"""Per-layer sensitivity on ONNX Runtime: which layers, kept in float with everything else int8, bring the
int8 model's output closest to the float model's.

`rank_layers` calibrates once (the ranges are reused, and cached when a cache is given) and measures a
shortlist of "all but one" variants exactly: the model quantized by ORT with that one layer (and the base
exclusions) left in float, its output compared with the float model's over a few probe images. Each
variant costs a `quantize_static` run (about a second here), so the shortlist is the graph's edges (the
layers reading the model input, the layers feeding the base exclusions) and then the layers with the
largest local quantization loss, all measured in one session (a cheap but weak predictor: on the bundled
model it under-rates the stem convolution and the head's concat, which the edges rule catches).
`choose_exclusions` then adds layers in ranked order while a caller-supplied score (mAP on labelled data,
computed elsewhere) is short of the target.

Output SQNR is 10*log10(sum ref^2 / sum (ref - q)^2), taken per output channel (dimension 1: box
coordinates and each class score of a [B, 4+nc, N] head) and averaged in dB, so that box coordinates in
pixels do not drown the 0..1 class scores; `whole_output=True` gives the plain whole-tensor figure.
"""
from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calibration.cache import CalibrationCache
from calibration.dataset import CalibrationSet
from calibration.methods import DEFAULT_METHOD, Method
from calibration.ort import DEFAULT_SCHEME, OrtScheme, calibrated_ranges, prepare, write_int8
from runtimes.errors import CalibrationError

#: layers considered: those with weights, and those that merge tensors of different ranges under one scale
CANDIDATE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Concat", "Add")
#: SQNR ceiling (dB): an exact match would be infinite
MAX_DB = 120.0


@dataclass(frozen=True)
class LayerSensitivity:
    """One layer kept in float, everything else int8: the output SQNR and its gain over all-int8."""

    node: str
    op_type: str
    sqnr_db: float
    gain_db: float
    local_loss_db: float = 0.0  # the first pass: minus the node's local SQNR (higher: more damaged)


def sqnr_db(ref: np.ndarray, q: np.ndarray, whole_output: bool = False) -> float:
    """Output SQNR in dB of `q` against `ref` (arrays stacked over probe images, [images, B, C, ...]):
    per channel of dimension 2 averaged in dB, or over the whole tensor with `whole_output`."""
    ref64, q64 = ref.astype(np.float64), q.astype(np.float64)
    if whole_output or ref64.ndim < 3:
        return _db(float((ref64 ** 2).sum()), float(((ref64 - q64) ** 2).sum()))
    axes = tuple(i for i in range(ref64.ndim) if i != 2)
    sig, err = (ref64 ** 2).sum(axis=axes), ((ref64 - q64) ** 2).sum(axis=axes)
    return float(np.mean([_db(float(s), float(e)) for s, e in zip(sig, err, strict=True)]))


def _db(signal: float, noise: float) -> float:
    if noise <= 0.0:
        return MAX_DB
    if signal <= 0.0:
        return -MAX_DB
    return max(-MAX_DB, min(MAX_DB, 10.0 * math.log10(signal / noise)))


def rank_layers(source: Path, calib: CalibrationSet, method: Method = DEFAULT_METHOD,
                base_exclude: tuple[str, ...] = (), probe_images: int = 16, candidates: int = 12,
                cache: CalibrationCache | None = None, scheme: OrtScheme = DEFAULT_SCHEME,
                whole_output: bool = False, threads: int | None = None) -> list[LayerSensitivity]:
    """The `candidates` layers the cheap first pass finds most damaged, each measured kept in float with the
    rest int8 (`base_exclude` always float), best gain first. `source` is the float32 ONNX model."""
    probes = [a for a in calib.with_layout("nchw").arrays(limit=probe_images)]
    if not probes:
        raise CalibrationError("sensitivity needs at least one probe image")
    with tempfile.TemporaryDirectory(prefix="eb-sens-") as tmp:
        work = Path(tmp)
        pre, _ = prepare(Path(source), work / "pre.onnx", base_exclude)
        ranges, _, _ = calibrated_ranges(Path(source), pre, calib, method, scheme, cache, work, threads)
        base = write_int8(pre, ranges, work / "base.onnx", base_exclude, method, scheme)
        pool = _candidates(pre, base_exclude)
        first = _first_pass(pre, base, probes, pool, threads)
        ref = _outputs(pre, probes, threads)
        base_db = sqnr_db(ref, _outputs(base, probes, threads), whole_output)
        shortlist = _shortlist(pre, pool, first, base_exclude, candidates)
        ranked = []
        for name, op in shortlist:
            variant = write_int8(pre, ranges, work / "variant.onnx", (*base_exclude, name), method, scheme)
            db = sqnr_db(ref, _outputs(variant, probes, threads), whole_output)
            ranked.append(LayerSensitivity(name, op, db, db - base_db, first[name]))
    return sorted(ranked, key=lambda s: (-s.gain_db, s.node))


def _shortlist(model: Path, pool: Sequence[tuple[str, str]], first: dict[str, float], exclude: Sequence[str],
               size: int) -> list[tuple[str, str]]:
    """`size` candidates: the graph's edges first (nodes reading the model input, nodes feeding the base
    exclusions: PTQ's usual suspects, and the ones the local loss under-rates on YOLO), then by local loss."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    inputs = {i.name for i in graph.input}
    feeding = {t for n in graph.node if n.name in set(exclude) for t in n.input}
    edges = [(n, op) for n, op in pool if any(t in inputs for t in _node(graph, n).input)
             or any(t in feeding for t in _node(graph, n).output)]
    rest = sorted((c for c in pool if c not in edges), key=lambda c: -first[c[0]])
    return (edges + rest)[:max(0, size)]


def _node(graph: Any, name: str) -> Any:
    return next(n for n in graph.node if n.name == name)


def _candidates(model: Path, exclude: Sequence[str]) -> list[tuple[str, str]]:
    import onnx

    skip = set(exclude)
    graph = onnx.load(str(model), load_external_data=False).graph
    return [(n.name, n.op_type) for n in graph.node if n.op_type in CANDIDATE_OPS and n.name and n.name not in skip]


def _session_from(model: str | bytes, threads: int | None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def _outputs(model: Path, probes: Sequence[np.ndarray], threads: int | None) -> np.ndarray:
    """The first output of `model` on each probe, stacked: [images, ...]."""
    sess = _session_from(str(model), threads)
    name = sess.get_inputs()[0].name
    return np.stack([sess.run(None, {name: x})[0] for x in probes])


def _first_pass(float_model: Path, int8_model: Path, probes: Sequence[np.ndarray],
                pool: Sequence[tuple[str, str]], threads: int | None) -> dict[str, float]:
    """For each candidate node, its local quantization loss in dB (higher is worse): the node recomputed from
    the float model's own inputs, fake-quantized as the int8 model does (its input, weight and output Q/DQ),
    against the float node, per output channel. One session over the probes serves every node."""
    import onnx

    model, pairs = _local_model(onnx.load(str(float_model)), onnx.load(str(int8_model)), [n for n, _ in pool])
    outs = sorted({t for pair in pairs.values() for t in pair})
    have = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=t) for t in outs if t not in have)
    sess = _session_from(model.SerializeToString(), threads)
    name = sess.get_inputs()[0].name
    signal: dict[str, Any] = dict.fromkeys(pairs, 0.0)
    noise: dict[str, Any] = dict.fromkeys(pairs, 0.0)
    for x in probes:
        got = dict(zip(outs, sess.run(outs, {name: x}), strict=True))
        for node, (local, ref) in pairs.items():
            r = got[ref].astype(np.float64)
            d = r - got[local].astype(np.float64)
            axes = tuple(i for i in range(r.ndim) if i != 1) if r.ndim > 1 else None
            signal[node] = signal[node] + (r * r).sum(axis=axes)
            noise[node] = noise[node] + (d * d).sum(axis=axes)
    loss = {node: -float(np.mean([_db(float(a), float(b)) for a, b in
                                  zip(np.atleast_1d(signal[node]), np.atleast_1d(noise[node]), strict=True)]))
            for node in pairs}
    return {n: loss.get(n, -MAX_DB) for n, _ in pool}


def _local_model(float_model: Any, int8_model: Any, names: Sequence[str]) -> tuple[Any, dict[str, tuple[str, str]]]:
    """`float_model` plus, for each node in `names` that the int8 model quantizes, a copy fed and followed by
    the int8 model's Q/DQ of its tensors, reading the float model's tensors. Returns the model and, per
    node, (its fake-quantized output, its float output)."""
    import onnx

    q_graph = int8_model.graph
    producer = {o: n for n in q_graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in q_graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    q_inits = {i.name: i for i in q_graph.initializer}
    nodes = {n.name: n for n in q_graph.node}
    f_graph = float_model.graph
    known = {i.name for i in f_graph.initializer} | {i.name for i in f_graph.input}
    known |= {o for n in f_graph.node for o in n.output}
    new_nodes: list[Any] = []
    inits: dict[str, Any] = {}
    pairs: dict[str, tuple[str, str]] = {}

    def clone(node: Any, inputs: Sequence[str], tag: str) -> str:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = f"{node.name}__eb_{tag}"
        del copy.input[:]
        copy.input.extend(inputs)
        del copy.output[:]
        copy.output.append(f"{node.output[0]}__eb_{tag}")
        new_nodes.append(copy)
        inits.update({t: q_inits[t] for t in inputs if t in q_inits})
        return str(copy.output[0])

    def fake_input(t: str, tag: str) -> str | None:
        dq = producer.get(t)
        if dq is None or dq.op_type != "DequantizeLinear":
            return t if t in known or t == "" else None
        q = producer.get(dq.input[0])
        if q is not None and q.op_type == "QuantizeLinear" and q.input[0] in known:
            quantized = clone(q, [q.input[0], *q.input[1:]], tag)
            return clone(dq, [quantized, *dq.input[1:]], tag)
        return clone(dq, list(dq.input), tag) if dq.input[0] in q_inits else None

    for name in names:
        node = nodes.get(name)
        if node is None or len(node.output) != 1 or node.output[0] not in known:
            continue
        ins = [fake_input(t, f"{name}_in{i}") for i, t in enumerate(node.input)]
        if any(t is None for t in ins) or all(t == o for t, o in zip(ins, node.input, strict=True)):
            continue
        out = clone(node, [str(t) for t in ins], f"{name}_local")
        q_out = next((c for c in consumers.get(node.output[0], []) if c.op_type == "QuantizeLinear"), None)
        dq_out = next((c for c in consumers.get(q_out.output[0], []) if c.op_type == "DequantizeLinear"), None) \
            if q_out is not None else None
        if q_out is not None and dq_out is not None:
            out = clone(dq_out, [clone(q_out, [out, *q_out.input[1:]], f"{name}_out"), *dq_out.input[1:]],
                        f"{name}_out")
        pairs[name] = (out, str(node.output[0]))
    merged = onnx.ModelProto()
    merged.CopyFrom(float_model)
    merged.graph.node.extend(new_nodes)
    merged.graph.initializer.extend(i for n, i in sorted(inits.items()) if n not in known)
    return merged, pairs


def choose_exclusions(ranked: Sequence[LayerSensitivity], score: Callable[[tuple[str, ...]], float],
                      baseline: float, max_drop_rel: float = 0.01, max_added: int = 8,
                      ) -> tuple[tuple[str, ...], list[tuple[tuple[str, ...], float]]]:
    """Greedy: add layers in ranked order (those with a positive gain) until `score(added)` reaches
    `baseline * (1 - max_drop_rel)` (MLPerf's 99% rule by default) or `max_added` layers are added.
    `score` takes the added layers (beyond the base exclusions) and returns e.g. mAP. Returns the layers to
    add and the history [(added, score)], starting with () (nothing added). When the target is never
    reached, the shortest prefix with the best score is returned."""
    target = baseline * (1.0 - max_drop_rel)
    added: tuple[str, ...] = ()
    history = [(added, float(score(added)))]
    for layer in ranked:
        if history[-1][1] >= target or len(added) >= max_added:
            break
        if layer.gain_db <= 0.0:
            continue
        added = (*added, layer.node)
        history.append((added, float(score(added))))
    if history[-1][1] >= target:
        return history[-1][0], history
    best = max(s for _, s in history)
    return next(a for a, s in history if s == best), history


def format_table(ranked: Sequence[LayerSensitivity], top: int = 10) -> str:
    """A Markdown table of the `top` layers, best gain first."""
    lines = ["| rank | layer | op | output SQNR kept float (dB) | gain over all-int8 (dB) | local loss (dB) |",
             "|---:|---|---|---:|---:|---:|"]
    for i, s in enumerate(list(ranked)[:top], start=1):
        lines.append(f"| {i} | `{s.node}` | {s.op_type} | {s.sqnr_db:.2f} | {s.gain_db:+.2f} | {s.local_loss_db:.2f} |")
    return "\n".join(lines)
