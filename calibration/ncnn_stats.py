"""Activation statistics of an ncnn float model on the calibration images, and the clipping threshold of
each calibration method (the int8 scale is then 127 / threshold).

The float model runs in ncnn itself (fp32, every precision switch off) and each quantized layer's input
blob is read back, so the statistics are those of the blobs ncnn will quantize. A first pass finds each
blob's absolute maximum; entropy and percentile take a second pass that fills a histogram of |x| over
[0, absmax] (exact zeros are not counted, as in ncnn2table).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from calibration.methods import Method
from runtimes.errors import CalibrationError

BINS = 2048  # histogram bins over [0, absmax] (ncnn2table and TensorRT use 2048)
LEVELS = 128  # int8 magnitudes 0..127
PERCENTILE = 99.99
#: ncnn's precision switches, all off: calibration sees fp32 activations on every CPU
_FP32_SWITCHES = ("use_fp16_storage", "use_fp16_arithmetic", "use_fp16_packed", "use_bf16_storage",
                  "use_bf16_packed")

Images = Callable[[], Iterable[np.ndarray]]


@dataclass
class BlobStats:
    """One blob's |x| maximum and (second pass) histogram over [0, absmax]."""

    absmax: float = 0.0
    hist: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))

    def add_absmax(self, x: np.ndarray) -> None:
        self.absmax = max(self.absmax, float(np.max(np.abs(x))) if x.size else 0.0)

    def add_hist(self, x: np.ndarray) -> None:
        if self.absmax <= 0:
            return
        a = np.abs(x[x != 0]).astype(np.float64)
        idx = np.minimum((a * (BINS / self.absmax)).astype(np.int64), BINS - 1)
        self.hist += np.bincount(idx, minlength=BINS)


def open_float_net(ncnn: Any, param: Path, weights: Path, threads: int) -> Any:
    """The float model on ncnn, fp32 (switches off), CPU."""
    net = ncnn.Net()
    net.opt.num_threads = threads
    net.opt.use_vulkan_compute = False
    for switch in _FP32_SWITCHES:
        setattr(net.opt, switch, False)
    if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
        raise CalibrationError(f"ncnn cannot load the float model '{param}' to calibrate it")
    return net


def collect_stats(ncnn: Any, net: Any, input_blob: str, blobs: Sequence[str], images: Images,
                  histogram: bool) -> dict[str, BlobStats]:
    """absmax (and, with `histogram`, the |x| histogram) of each blob over the images."""
    stats = {b: BlobStats() for b in blobs}
    count = 0
    for x in images():
        for name, value in _blob_values(ncnn, net, input_blob, blobs, x):
            stats[name].add_absmax(value)
        count += 1
    if count == 0:
        raise CalibrationError("the calibration set gave no images")
    if histogram:
        for x in images():
            for name, value in _blob_values(ncnn, net, input_blob, blobs, x):
                stats[name].add_hist(value)
    return stats


def _blob_values(ncnn: Any, net: Any, input_blob: str, blobs: Sequence[str],
                 x: np.ndarray) -> Iterable[tuple[str, np.ndarray]]:
    """Each blob's value for one (1,C,H,W) input (one extractor, every blob kept)."""
    arr = np.ascontiguousarray(x[0], dtype=np.float32)  # ncnn.Mat does not copy: keep `arr` alive
    ex = net.create_extractor()
    ex.set_light_mode(False)
    ex.input(input_blob, ncnn.Mat(arr))
    for name in blobs:
        ret, mat = ex.extract(name)
        if ret != 0:
            raise CalibrationError(f"ncnn could not compute blob '{name}' while calibrating (code {ret})")
        yield name, np.array(mat)
    del ex


def activation_threshold(stats: BlobStats, method: Method) -> float:
    """The clipping threshold `method` chooses for a blob (0 for an all-zero blob)."""
    if stats.absmax <= 0 or method is Method.MINMAX:
        return stats.absmax
    width = stats.absmax / BINS
    if method is Method.PERCENTILE:
        return percentile_bins(stats.hist, PERCENTILE) * width
    if method is Method.ENTROPY:
        return kl_bins(stats.hist) * width
    raise CalibrationError(f"the ncnn quantizer has no '{method}' method")


def percentile_bins(hist: np.ndarray, pct: float) -> int:
    """How many bins hold `pct` percent of the counts (all of them for an empty histogram)."""
    total = float(hist.sum())
    if total <= 0:
        return int(hist.size)
    return int(np.searchsorted(np.cumsum(hist), total * pct / 100.0) + 1)


def kl_bins(hist: np.ndarray, levels: int = LEVELS) -> int:
    """How many bins to keep so that the clipped histogram and its `levels`-level quantization differ
    least (KL divergence, the entropy calibration of TensorRT and ncnn2table).

    P is the first `keep` bins with the counts beyond added to the last one; Q merges P's bins into
    `levels` groups and spreads each group's count evenly over its non-empty bins."""
    h = hist.astype(np.float64)
    total = float(h.sum())
    if total <= 0:
        return int(h.size)
    nonzero = h > 0
    counts = np.concatenate([[0.0], np.cumsum(h)])
    filled = np.concatenate([[0.0], np.cumsum(nonzero)])
    best, best_kl = h.size, np.inf
    for keep in range(levels, h.size + 1):
        kl = _divergence(h, nonzero, counts, filled, keep, levels, total)
        if kl < best_kl:
            best, best_kl = keep, kl
    return best


def _divergence(h: np.ndarray, nonzero: np.ndarray, counts: np.ndarray, filled: np.ndarray, keep: int,
                levels: int, total: float, eps: float = 1e-4) -> float:
    """KL(P || Q) for one `keep` (see kl_bins). Q has P's non-empty bins and the same total except for
    P's last bin, which also holds the clipped counts: when that bin is itself empty, Q gives it `eps`."""
    edges = np.arange(levels + 1) * keep // levels
    per_bin = np.divide(counts[edges[1:]] - counts[edges[:-1]], filled[edges[1:]] - filled[edges[:-1]],
                        out=np.zeros(levels), where=filled[edges[1:]] > filled[edges[:-1]])
    q = np.repeat(per_bin, np.diff(edges))
    p = h[:keep].copy()
    p[-1] += total - counts[keep]
    mask = nonzero[:keep]
    kl = float(np.sum(p[mask] / total * np.log(p[mask] / total / (q[mask] / counts[keep]))))
    if not mask[-1] and p[-1] > 0:  # clipped counts in an empty last bin
        kl += p[-1] / total * float(np.log(p[-1] / total / eps))
    return kl
