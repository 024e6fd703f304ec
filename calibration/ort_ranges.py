"""Activation ranges for ONNX Runtime's quantizer: its own calibrators, fed in chunks, reduced to the ranges
the quantizer reads, and written as ORT's calibration cache (a JSON `TensorsData`).

ORT's calibrators differ from each other only through their histogram settings, which `quantize_static`
does not pass on (it forwards symmetric/percentile/moving-average options only, so Entropy runs with its
128-bin default and one candidate threshold: exactly MinMax). Calibrating here with `create_calibrator`
and explicit bins, then handing the ranges to `quantize_static` as a cache, makes each method its own.

ORT's KL threshold search is a Python loop over every candidate (minutes for a detector at 2048 bins);
`entropy_threshold` is the same search, vectorised over the candidates.
"""
from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from calibration.dataset import CalibrationSet
from calibration.methods import Method
from runtimes.errors import CalibrationError

#: images per calibrator pass: ORT's calibrators hold every calibrated tensor of a pass in memory
CHUNK = 8


@dataclass(frozen=True)
class RangeSettings:
    """How one method collects and reduces its statistics (every field changes the ranges)."""

    ort_method: str  # onnxruntime.quantization.CalibrationMethod member name
    options: dict[str, Any] = field(default_factory=dict)  # create_calibrator extra_options

    def describe(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.ort_method}({opts})" if opts else self.ort_method


#: Our methods on ORT's calibrators. Percentile: asymmetric tails on a 2048-bin histogram of values;
#: entropy: the KL-optimal threshold on a 2048-bin histogram with 128 quantized bins (TensorRT's
#: settings); distribution: ORT's distribution calibrator, whose int8 range is the histogram's extent.
SETTINGS: dict[Method, RangeSettings] = {
    Method.MINMAX: RangeSettings("MinMax"),
    Method.MOVING_AVERAGE: RangeSettings("MinMax", {"moving_average": True, "averaging_constant": 0.1}),
    Method.PERCENTILE: RangeSettings("Percentile", {"num_bins": 2048, "percentile": 99.999, "symmetric": False}),
    Method.ENTROPY: RangeSettings("Entropy", {"num_bins": 2048, "num_quantized_bins": 128}),
    Method.DISTRIBUTION: RangeSettings("Distribution", {"num_bins": 2048, "scenario": "same"}),
}


class _Reader:
    """An ORT CalibrationDataReader over a list of input arrays."""

    def __init__(self, name: str, arrays: Sequence[np.ndarray]) -> None:
        self._it = iter(arrays)
        self._name = name

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self._name: x}


def _chunks(arrays: Iterator[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    chunk: list[np.ndarray] = []
    for a in arrays:
        chunk.append(a)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def compute_ranges(model: Path, calib: CalibrationSet, method: Method, op_types: Sequence[str],
                   threads: int | None = None) -> Any:
    """ORT `TensorsData` (lowest/highest per tensor only) of `model`'s tensors over the calibration images;
    `threads` limits the calibration session's intra-op threads (ORT's default: one per core)."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, HistogramCalibrater, create_calibrator

    settings = SETTINGS[method]
    input_name = _input_name(model)
    with tempfile.TemporaryDirectory(prefix="eb-ort-calib-") as tmp, contextlib.redirect_stdout(io.StringIO()):
        calibrator = create_calibrator(model, list(op_types), augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=CalibrationMethod[settings.ort_method],
                                       extra_options=dict(settings.options))
        if threads:
            calibrator.infer_session = _session(calibrator.augmented_model_path, threads)
        seen = 0
        for chunk in _chunks(calib.arrays(), CHUNK):
            calibrator.collect_data(_Reader(input_name, chunk))
            seen += len(chunk)
        if not seen:
            raise CalibrationError("the calibration set gave no images")
        if method is Method.ENTROPY and isinstance(calibrator, HistogramCalibrater):
            ranges = _entropy_ranges(calibrator, int(settings.options["num_quantized_bins"]))
        else:
            ranges = {k: v.range_value for k, v in calibrator.compute_data().items()}
    return _tensors_data(CalibrationMethod[settings.ort_method], ranges)


def _session(path: str, threads: int) -> Any:
    """The calibrator's session (graph optimisation off, as ORT makes it) with `threads` intra-op threads."""
    import onnxruntime

    so = onnxruntime.SessionOptions()
    so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _input_name(model: Path) -> str:
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    names = [i.name for i in graph.input if i.name not in inits]
    if len(names) != 1:
        raise CalibrationError(f"calibration feeds one image input; {model.name} has {len(names)} inputs")
    return str(names[0])


def _entropy_ranges(calibrator: Any, num_quantized_bins: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The KL-optimal (lowest, highest) of each histogram ORT's entropy calibrator collected."""
    out = {}
    for name, (hist, edges, lo, hi, _threshold) in calibrator.collector.histogram_dict.items():
        t_lo, t_hi = entropy_threshold(np.asarray(hist), np.asarray(edges), num_quantized_bins)
        out[name] = (np.maximum(t_lo, np.float32(lo)).astype(np.float32),
                     np.minimum(t_hi, np.float32(hi)).astype(np.float32))
    return out


def _tensors_data(ort_method: Any, ranges: dict[str, Any]) -> Any:
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    data = {name: TensorData(lowest=_scalar(lo), highest=_scalar(hi)) for name, (lo, hi) in sorted(ranges.items())}
    return TensorsData(ort_method, data)


def _scalar(value: Any) -> np.ndarray:
    """A float32 range end; one-element arrays (MinMax's) become 0-d like the histogram methods' ones."""
    arr = np.asarray(value, dtype=np.float32)
    return arr.reshape(()) if arr.size == 1 else arr


def save_ranges(tensors_data: Any, path: Path) -> Path:
    """ORT's calibration-cache JSON of `tensors_data` (what `quantize_static(calibration_cache_path=)` reads)."""
    from onnxruntime.quantization.calibrate import save_tensors_data

    save_tensors_data(tensors_data, path)
    return path


def load_ranges(path: Path) -> dict[str, tuple[float, float]]:
    """tensor name -> (lowest, highest) from a calibration-cache JSON."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    return {k: (float(np.ravel(v.range_value[0])[0]), float(np.ravel(v.range_value[1])[0]))
            for k, v in load_tensors_data(path).items()}


# --- the KL threshold search, vectorised over candidate thresholds -------------------------------------

def entropy_threshold(hist: np.ndarray, edges: np.ndarray, num_quantized_bins: int,
                      block: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """The (lowest, highest) edges of the symmetric window around the middle bin of `hist` whose
    `num_quantized_bins`-level quantization has the least KL divergence from the clipped distribution
    (the tails folded into the end bins). Same candidates, merging and smoothing as ORT's
    `HistogramCollector.get_entropy_threshold`, evaluated `block` candidates at a time."""
    hist = np.asarray(hist, dtype=np.int64)
    n = hist.size
    zero = n // 2
    half_q = num_quantized_bins // 2
    candidates = np.arange(half_q, zero + 1)
    if candidates.size == 0:
        return edges[0], edges[-1]
    divs = np.concatenate([_kl(hist, zero, candidates[i:i + block], num_quantized_bins)
                           for i in range(0, candidates.size, block)])
    best = int(candidates[int(np.argmin(divs))])
    return edges[zero - best], edges[min(zero + best + 1, n)]


def _kl(hist: np.ndarray, zero: int, half: np.ndarray, nq: int) -> np.ndarray:
    """KL divergence of each candidate window (half-widths `half`) against its quantized version."""
    n = hist.size
    start = zero - half
    end = np.minimum(zero + half + 1, n)
    length = end - start
    width = int(length.max())
    j = np.arange(width)[None, :]
    valid = j < length[:, None]
    padded = np.concatenate([hist, np.zeros(width, np.int64)])
    sliced = np.where(valid, np.lib.stride_tricks.sliding_window_view(padded, width)[start], 0)
    cum = np.concatenate([np.zeros(1, np.int64), np.cumsum(hist)])
    p = sliced.copy()
    rows = np.arange(half.size)
    p[rows, 0] += cum[start]
    p[rows, length - 1] += cum[n] - cum[end]
    merged = length // nq  # bins per quantized bin; the remainder joins the last one
    b = np.arange(nq)[None, :]
    lo_idx, hi_idx = start[:, None] + b * merged[:, None], start[:, None] + (b + 1) * merged[:, None]
    qbins = cum[hi_idx] - cum[lo_idx]
    qbins[:, -1] += cum[end] - cum[start + nq * merged]
    nonzero = np.concatenate([np.zeros(1, np.int64), np.cumsum(hist != 0)])
    norm = nonzero[hi_idx] - nonzero[lo_idx]  # nonzero bins of p per quantized bin; p's ends differ from hist's
    norm[:, 0] += (p[rows, 0] != 0).astype(np.int64) - (hist[start] != 0)
    last = length - 1
    in_blocks = last < nq * merged
    fix = (p[rows, last] != 0).astype(np.int64) - (hist[end - 1] != 0)
    norm[rows[in_blocks], (last // merged)[in_blocks]] += fix[in_blocks]
    level = np.where(norm > 0, qbins // np.maximum(norm, 1), 0)  # ORT stores the quotient in int64
    q = np.zeros_like(p)
    for m in np.unique(merged):  # rows with the same bins-per-level share their layout
        sel = merged == m
        q[sel, :nq * m] = np.repeat(level[sel], m, axis=1)
    return _divergence(_smooth(p, valid), _smooth(q, valid), valid)


def _smooth(x: np.ndarray, valid: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """ORT's smooth_distribution on each row's valid part (zeros become eps, the rest give up eps in total;
    NaN rows for an all-zero distribution)."""
    zeros = (x == 0) & valid
    n_zero = zeros.sum(axis=1)
    n_nonzero = valid.sum(axis=1) - n_zero
    eps1 = (eps * n_zero / np.maximum(n_nonzero, 1)).astype(np.float32)
    out = x.astype(np.float32)
    out -= eps1[:, None]
    out[zeros] = np.float32(eps)
    out[~valid] = 0
    out[n_nonzero == 0] = np.nan
    return out


def _divergence(p: np.ndarray, q: np.ndarray, valid: np.ndarray) -> np.ndarray:
    p = p / p.sum(axis=1, keepdims=True)
    q = q / q.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(valid & (p > 0), p * np.log(p / q), 0)
    div = terms.sum(axis=1).astype(np.float32)
    out: np.ndarray = np.where(np.isnan(div), np.float32(np.inf), div)
    return out
