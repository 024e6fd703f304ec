"""INT8 for ONNX Runtime through `onnxruntime.quantization`: pre-processing, calibration (calibration.ort_ranges,
cached), then `quantize_static` writing a QDQ model that ONNX Runtime fuses into integer kernels at load.

The default scheme was chosen by measurement on x86 with AVX-512 VNNI (Zen 4): uint8 activations with
int8 weights (U8S8) let ORT's QDQ fusion turn every Conv into QLinearConv (and SiLU, Concat, Add into
their QLinear forms), about 2x faster than fp32 at 320 and 640. Signed activations (S8S8) are not fused
into QLinearConv by ORT's x86 CPU provider: the Convs stay float between Q/DQ pairs, slower than fp32.
reduce_range (7-bit weights), per-tensor weights and the QOperator format measured no faster than this.
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from calibration.cache import CacheKey, CalibrationCache
from calibration.dataset import PREPROCESSING, CalibrationSet
from calibration.methods import Method
from calibration.ort_ranges import CHUNK, SETTINGS, compute_ranges, save_ranges
from calibration.request import QuantizeRequest, QuantizeResult
from runtimes.errors import BackendUnavailableError, CalibrationError

ENGINE = "onnxruntime"
#: the cached calibration result: ORT's calibration-cache JSON (tensor -> lowest/highest)
RANGES_FILE = "ort_ranges.json"
#: bumped when our own range code (chunking, the entropy search) changes its results
RANGES_VERSION = "1"


@dataclass(frozen=True)
class OrtScheme:
    """The quantized form written (every field changes the artifact)."""

    quant_format: str = "qdq"  # "qdq" or "qoperator"
    activations: str = "uint8"  # "uint8" (U8S8: the fast path on x86) or "int8"
    weights: str = "int8"
    per_channel: bool = True  # weights: one symmetric scale per output channel
    reduce_range: bool = False  # 7-bit weights (for x86 without VNNI)

    def describe(self) -> str:
        fmt = "QDQ" if self.quant_format == "qdq" else "QOperator"
        grain = "per-channel" if self.per_channel else "per-tensor"
        weights = f"{self.weights} {grain} symmetric" + (" (7-bit range)" if self.reduce_range else "")
        acts = f"{self.activations} per-tensor " + ("asymmetric" if self.activations == "uint8" else "symmetric")
        return f"{fmt}, weights {weights}, activations {acts}"


DEFAULT_SCHEME = OrtScheme()


def quantize(req: QuantizeRequest) -> QuantizeResult:
    """Write the int8 ONNX model for `req` with the default scheme (U8S8 QDQ, per-channel weights)."""
    return quantize_with(req, DEFAULT_SCHEME)


def quantize_with(req: QuantizeRequest, scheme: OrtScheme) -> QuantizeResult:
    """`quantize` with another scheme (S8S8, QOperator, ...): for measuring the alternatives."""
    version = _ort_version()
    with tempfile.TemporaryDirectory(prefix="eb-ort-q-") as tmp:
        work = Path(tmp)
        pre, notes = prepare(req.source, work / "pre.onnx", req.exclude)
        ranges, hit, why = calibrated_ranges(req.source, pre, req.calib, req.method, scheme, req.cache, work,
                                              req.threads)
        write_int8(pre, ranges, req.out, req.exclude, req.method, scheme)
    if why:
        notes.append(f"calibration cache: {why}")
    settings = SETTINGS[req.method]
    return QuantizeResult(
        path=Path(req.out), quantizer=f"onnxruntime.quantization {version}",
        scheme=f"{scheme.describe()}; calibration {req.method} over {len(req.calib)} image(s)",
        excluded=tuple(req.exclude), float_ops=float_compute_nodes(req.out, req.exclude), cache_hit=hit,
        notes=(f"calibrator: ORT {settings.describe()}",
               "ORT pre-processing (quant_pre_process: shape inference, graph optimisation) before calibration",
               *notes),
        extra={"scheme": asdict(scheme), "calibrator": settings.describe(), "onnxruntime": version})


def _ort_version() -> str:
    try:
        import onnxruntime
        import onnxruntime.quantization  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailableError(ENGINE, "onnxruntime", None, f"INT8 quantization: {exc}") from exc
    return str(onnxruntime.__version__)


def prepare(source: Path, out: Path, exclude: tuple[str, ...] = ()) -> tuple[Path, list[str]]:
    """ORT's `quant_pre_process` of `source` into `out` (ONNX shape inference: calibration needs static shapes, so
    ORT's symbolic one, which needs sympy, is skipped); when its graph optimisation removes a node named in
    `exclude`, the pre-processing is redone without optimisation (names must survive). Returns the notes."""
    import onnx
    from onnxruntime.quantization import quant_pre_process

    with contextlib.redirect_stdout(io.StringIO()):
        quant_pre_process(str(source), str(out), skip_symbolic_shape=True)
    missing = _missing(out, exclude)
    if not missing:
        return out, []
    with contextlib.redirect_stdout(io.StringIO()):
        quant_pre_process(str(source), str(out), skip_optimization=True, skip_symbolic_shape=True)
    still = _missing(out, exclude)
    if still:
        names = {n.name for n in onnx.load(str(source), load_external_data=False).graph.node}
        unknown = [n for n in still if n not in names]
        raise CalibrationError(f"cannot keep in float: no node named {', '.join((unknown or still)[:3])} in "
                               f"{Path(source).name}")
    return out, [f"ORT's graph optimisation merged excluded node(s) {', '.join(missing[:3])}: pre-processed "
                 "without it"]


def _missing(model: Path, names: tuple[str, ...]) -> list[str]:
    import onnx

    present = {n.name for n in onnx.load(str(model), load_external_data=False).graph.node}
    return [n for n in names if n not in present]


def cache_key(source: Path, calib: CalibrationSet, method: Method, scheme: OrtScheme) -> CacheKey:
    """What the ranges depend on: model and images, method and its histogram settings, versions, scheme."""
    import onnx

    from edge_sdk.hashing import sha256_of

    return CacheKey(model_sha256=sha256_of(source), calib_sha256=calib.sha256, method=str(method),
                    preprocessing=PREPROCESSING, engine=ENGINE,
                    versions={"onnxruntime": _ort_version(), "onnx": str(onnx.__version__),
                              "edgebench.ort_ranges": RANGES_VERSION},
                    settings={"calibrator": SETTINGS[method].describe(), "chunk": CHUNK,
                              "input_hw": list(calib.input_hw), "pre_process": "quant_pre_process",
                              "activations": scheme.activations, "weights": scheme.weights})


def calibrated_ranges(source: Path, pre: Path, calib: CalibrationSet, method: Method, scheme: OrtScheme,
                      cache: CalibrationCache | None, work: Path,
                      threads: int | None = None) -> tuple[Path, bool, str]:
    """The calibration-cache JSON for `pre` (ORT-pre-processed `source`): from `cache` when it holds one for
    the same key, else calibrated now (and stored). Returns (path, cache hit, why it missed)."""
    key = cache_key(source, calib, method, scheme) if cache is not None else None
    why = ""
    if cache is not None and key is not None:
        found = cache.lookup(key, (RANGES_FILE,))
        if found.files is not None:
            return found.files[RANGES_FILE], True, ""
        why = found.reason
    path = save_ranges(compute_ranges(pre, calib.with_layout("nchw"), method, op_types(), threads), work / RANGES_FILE)
    if cache is not None and key is not None:
        cache.store(key, {RANGES_FILE: path})
    return path, False, why


def op_types() -> list[str]:
    """The op types `quantize_static` quantizes by default (QOperator and QDQ registries): what is calibrated."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def write_int8(pre: Path, ranges: Path, out: Path, exclude: tuple[str, ...], method: Method,
               scheme: OrtScheme = DEFAULT_SCHEME) -> Path:
    """`quantize_static` of `pre` with the ranges in `ranges` (no calibration run), `exclude` kept in float;
    written atomically to `out`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    extra: dict[str, Any] = {"WeightSymmetric": True, "ActivationSymmetric": scheme.activations == "int8"}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".onnx", dir=out.parent)
    os.close(fd)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(str(pre), tmp_name, None,
                            quant_format=QuantFormat.QDQ if scheme.quant_format == "qdq" else QuantFormat.QOperator,
                            per_channel=scheme.per_channel, reduce_range=scheme.reduce_range,
                            activation_type=qtype[scheme.activations], weight_type=qtype[scheme.weights],
                            nodes_to_exclude=list(exclude), op_types_to_quantize=op_types(),
                            calibrate_method=CalibrationMethod[SETTINGS[method].ort_method],
                            extra_options=extra, calibration_cache_path=str(ranges))
        os.replace(tmp_name, out)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return out


def float_compute_nodes(model: Path, exclude: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Conv/MatMul/Gemm nodes of a quantized model that compute in float, other than those in `exclude`."""
    import onnx

    from runtimes.onnx_precision import COMPUTE_OPS

    graph = onnx.load(str(model), load_external_data=False).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    skip = set(exclude)
    return tuple(n.name for n in graph.node if n.op_type in COMPUTE_OPS and n.name not in skip
                 and not all(producer.get(i) == "DequantizeLinear" for i in n.input[:2]))
