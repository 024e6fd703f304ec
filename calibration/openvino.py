"""OpenVINO INT8 through NNCF post-training quantization: the float IR in, a quantized IR out.

NNCF inserts FakeQuantize ops (activations 8-bit per-tensor, weights int8 per-channel symmetric and
stored as int8 constants) that OpenVINO's CPU plugin runs as int8 layers. The MIXED preset (asymmetric
activations) is used: it kept 0.3 AP50-95 points more than PERFORMANCE (symmetric) on the bundled
model, whose SiLU outputs go slightly negative. The decode tail's ONNX nodes become an NNCF ignored
scope in OpenVINO's op names (`map_exclusions`). The quantized IR itself is what the cache stores.
"""
from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import onnx

from calibration.cache import CacheKey, CalibrationCache
from calibration.dataset import PREPROCESSING
from calibration.methods import Method
from calibration.request import QuantizeRequest, QuantizeResult
from edge_sdk.hashing import sha256_of
from runtimes.errors import BackendUnavailableError, CalibrationError

ENGINE = "openvino"
PRESET = "MIXED"
#: our method -> NNCF's activation range estimator (RangeEstimatorParametersSet member)
RANGES = {Method.MINMAX: "MINMAX", Method.MOVING_AVERAGE: "MEAN_MINMAX", Method.PERCENTILE: "MEAN_QUANTILE"}
#: percentile: the tails NNCF's quantile estimator clips (1e-4 = the 0.01th and 99.99th percentiles)
OUTLIER_PROB = 1e-4
FILES = ("model.xml", "model.bin")
_SKIP = frozenset({"Constant", "Parameter", "Result"})
#: executable-graph layer types that carry the arithmetic, and the precisions of a quantized one
_LAYERS = frozenset({"Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul"})
_QUANTIZED = frozenset({"i8", "u8"})

#: (float model, ignored scope, advanced quantization parameters) -> quantized model
Run = Callable[[Any, Any, Any], Any]


@dataclass(frozen=True)
class Engines:
    """The imported packages and their versions."""

    ov: Any
    nncf: Any
    versions: dict[str, str]


def engines() -> Engines:
    """openvino and nncf, imported now; BackendUnavailableError naming the missing one."""
    try:
        import openvino as ov
    except ImportError as exc:
        raise BackendUnavailableError(ENGINE, "openvino", "openvino-int8", "needed for OpenVINO INT8") from exc
    try:
        import nncf
    except ImportError as exc:
        raise BackendUnavailableError(ENGINE, "nncf", "openvino-int8", "OpenVINO's quantizer") from exc
    return Engines(ov, nncf, {"openvino": _version("openvino", ov), "nncf": _version("nncf", nncf)})


def _version(package: str, module: Any) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return str(getattr(module, "__version__", "unknown"))


def quantize(req: QuantizeRequest) -> QuantizeResult:
    """NNCF PTQ of the float IR `req.artifact` into a quantized IR at `req.out` (+ .bin)."""
    eng = engines()

    def run(model: Any, scope: Any, advanced: Any) -> Any:
        return eng.nncf.quantize(model, eng.nncf.Dataset(req.calib.with_layout("nchw").arrays()),
                                 preset=getattr(eng.nncf.QuantizationPreset, PRESET), subset_size=len(req.calib),
                                 ignored_scope=scope, advanced_parameters=advanced)

    return quantize_with(req, eng, run, {})


def quantize_with(req: QuantizeRequest, eng: Engines, run: Run, settings: dict[str, Any],
                  notes: Sequence[str] = ()) -> QuantizeResult:
    """The common path: method check, exclusions, cache lookup, `run` on a miss, save, result."""
    ranges = range_estimator(req.method)
    model = eng.ov.Core().read_model(str(req.artifact))
    names, unmapped = map_exclusions(model, onnx.load(str(req.source), load_external_data=False), req.exclude)
    key = CacheKey(sha256_of(req.source), req.calib.sha256, str(req.method), PREPROCESSING, ENGINE,
                   eng.versions, {"preset": PRESET, "range_estimator": RANGES[req.method],
                                  "outlier_prob": OUTLIER_PROB if req.method is Method.PERCENTILE else None,
                                  "subset_size": len(req.calib), "ignored_scope": list(names), **settings})
    hit = req.cache.lookup(key, FILES) if req.cache is not None else None
    if hit is not None and hit.files is not None:
        _place(hit.files["model.xml"], hit.files["model.bin"], Path(req.out))
    else:
        scope = eng.nncf.IgnoredScope(names=list(names), validate=True)
        advanced = eng.nncf.AdvancedQuantizationParameters(activations_range_estimator_params=ranges)
        quantized = run(model, scope, advanced)
        mark_int8(quantized)
        _save(eng.ov, quantized, Path(req.out), req.cache, key)
    more = (f"{len(unmapped)} excluded ONNX node(s) have no OpenVINO op (folded or fused): "
            f"{', '.join(unmapped[:5])}",) if unmapped else ()
    return QuantizeResult(
        path=Path(req.out), quantizer=f"nncf {eng.versions['nncf']} (openvino {eng.versions['openvino']})",
        scheme=(f"NNCF {PRESET} preset, FakeQuantize IR: weights int8 per-channel symmetric, activations "
                f"8-bit per-tensor {'asymmetric' if PRESET == 'MIXED' else 'symmetric'}, "
                f"{RANGES[req.method]} ranges"),
        excluded=names, float_ops=float_ops(eng.ov, Path(req.out), names),
        cache_hit=hit is not None and hit.hit, notes=(*notes, *more), extra={"settings": key.settings})


def range_estimator(method: Method) -> Any:
    """NNCF's activation range estimator for `method`; CalibrationError for one it does not have."""
    if method not in RANGES:
        raise CalibrationError(f"the OpenVINO (NNCF) quantizer has no '{method}' calibration; it supports "
                               f"{', '.join(str(m) for m in RANGES)}")
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    params = copy.deepcopy(getattr(RangeEstimatorParametersSet, RANGES[method]))
    if method is Method.PERCENTILE:
        params.min.quantile_outlier_prob = params.max.quantile_outlier_prob = OUTLIER_PROB
    return params


def map_exclusions(model: Any, source: onnx.ModelProto,
                   nodes: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """OpenVINO op names (friendly names) for ONNX nodes of `source`, and the nodes left without one.

    OpenVINO keeps ONNX tensor names on the output ports of the ops that compute them, so a node maps to
    the ops producing its outputs, plus the unnamed ops the frontend made for it upstream of those (a
    Conv with a bias becomes a '.../WithoutBiases' Convolution and an Add named after the node). Nodes
    folded into constants or fused into a neighbour have no op of their own."""
    producers: dict[str, list[Any]] = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() not in _SKIP:
            for port in op.outputs():
                for tensor in port.get_names():
                    producers.setdefault(tensor, []).append(op)
    outputs = {n.name: [t for t in n.output if t] for n in source.graph.node}
    names: dict[str, None] = {}
    unmapped: list[str] = []
    for node in nodes:
        ops = [op for t in outputs.get(node, []) for op in producers.get(t, [])]
        if not ops:
            unmapped.append(node)
        for op in ops:
            names.update(dict.fromkeys(_with_unnamed_inputs(op)))
    return tuple(names), tuple(unmapped)


def _with_unnamed_inputs(op: Any) -> list[str]:
    """`op`'s name and those of the ops above it whose outputs carry no tensor name (made for the same node)."""
    found, stack, seen = [], [op], set()
    while stack:
        node = stack.pop()
        name = node.get_friendly_name()
        if name in seen:
            continue
        seen.add(name)
        found.append(name)
        for port in node.inputs():
            parent = port.get_source_output().get_node()
            if parent.get_type_name() not in _SKIP and not any(o.get_names() for o in parent.outputs()):
                stack.append(parent)
    return found


def float_ops(ov: Any, xml: Path, excluded: Iterable[str] = ()) -> tuple[str, ...]:
    """Compute layers (convolutions, matmuls) OpenVINO's CPU plugin runs in float for the IR at `xml`
    (compiled with the f32 hint), leaving out those made from the `excluded` ops."""
    skip = set(excluded)
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    found = []
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if "layerType" not in info or _text(info["layerType"]) not in _LAYERS:
            continue
        precision = _text(info["runtimePrecision"]) if "runtimePrecision" in info else ""
        origin = _text(info["originalLayersNames"]).split(",") if "originalLayersNames" in info else []
        if precision not in _QUANTIZED and not skip.intersection(origin):
            found.append(op.get_friendly_name())
    return tuple(found)


def _text(value: Any) -> str:
    return str(value.astype(str)) if hasattr(value, "astype") else str(value)


def mark_int8(model: Any) -> None:
    """Record precision int8 in the edgebench metadata the float IR carried (rt_info 'framework')."""
    import json

    from edge_sdk.meta import EDGEBENCH_KEY
    from runtimes.openvino_backend import META_SECTION

    if not model.has_rt_info([META_SECTION, EDGEBENCH_KEY]):
        return
    raw = model.get_rt_info([META_SECTION, EDGEBENCH_KEY])
    data = json.loads(raw.astype(str) if hasattr(raw, "astype") else str(raw))
    data["precision"] = "int8"
    model.set_rt_info(json.dumps(data, sort_keys=True), [META_SECTION, EDGEBENCH_KEY])


def _save(ov: Any, model: Any, out: Path, cache: CalibrationCache | None, key: CacheKey) -> None:
    """Save the IR (float weights kept as they are: no fp16 compression), store it in the cache, then move
    the .bin and the .xml into place."""
    tmp = _staging(out)
    try:
        staged = tmp / "model.xml"
        ov.save_model(model, str(staged), compress_to_fp16=False)
        if cache is not None:
            cache.store(key, {"model.xml": staged, "model.bin": staged.with_suffix(".bin")})
        _move_ir(staged, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _place(xml: Path, weights: Path, out: Path) -> None:
    """Copy a cached IR to `out` (the .bin first, then the .xml, each replaced in one step)."""
    tmp = _staging(out)
    try:
        shutil.copyfile(weights, tmp / "model.bin")
        shutil.copyfile(xml, tmp / "model.xml")
        _move_ir(tmp / "model.xml", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _staging(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.stem}.", dir=out.parent))


def _move_ir(staged: Path, out: Path) -> None:
    os.replace(staged.with_suffix(".bin"), out.with_suffix(".bin"))
    os.replace(staged, out)
