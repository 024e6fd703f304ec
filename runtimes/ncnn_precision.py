"""Which ncnn precision switches take effect on this CPU, measured, and a .param's quantized layers.

ncnn accepts the fp16/bf16 switches on every CPU, but a CPU without the matching kernels (fp16
arithmetic on x86, for instance) silently computes fp32 with them set. So the truth is measured: a
one-convolution net runs with all switches off and with the precision's switches on; bit-identical
outputs mean the switches change nothing here. One probe per precision per process (~1 ms).
"""
from __future__ import annotations

import functools
import re
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.errors import EdgebenchError
from runtimes.precision import LayerTally, Precision, from_counts

#: precision -> ncnn option switches; every switch is always set (ncnn turns fp16 on by default)
PRECISION_FLAGS: dict[Precision, dict[str, bool]] = {
    p: {"use_fp16_storage": p is Precision.FP16, "use_fp16_arithmetic": p is Precision.FP16,
        "use_fp16_packed": p is Precision.FP16, "use_bf16_storage": p is Precision.BF16,
        "use_bf16_packed": p is Precision.BF16}
    for p in (Precision.FP32, Precision.FP16, Precision.BF16)
}
_CHANNELS, _SIZE = 16, 8
_PROBE_PARAM = (f"7767517\n2 2\nInput in0 0 1 in0 0={_SIZE} 1={_SIZE} 2={_CHANNELS}\n"
                f"Convolution conv0 1 1 in0 out0 0={_CHANNELS} 1=3 4=1 5=1 6={_CHANNELS * _CHANNELS * 9}\n")
#: compute layers of a .param, and those whose key 8 (int8_scale_term) marks int8 weights
_COMPUTE_LAYER = re.compile(r"^(Convolution|ConvolutionDepthWise|InnerProduct|Deconvolution)\s", re.M)
_INT8_LAYER = re.compile(r"^(Convolution|ConvolutionDepthWise|InnerProduct)\s.*\s8=[1-9]", re.M)


def param_precision(param_text: str) -> Precision | None:
    """INT8 / MIXED for a .param with int8 layers (all / some of its compute layers), else None (float)."""
    counted = param_tally(param_text)
    return counted.precision if counted.quantized else None


def param_tally(param_text: str) -> LayerTally:
    """The .param's compute layers and those with int8 weights (the precision is only meaningful when some are)."""
    quantized, total = len(_INT8_LAYER.findall(param_text)), len(_COMPUTE_LAYER.findall(param_text))
    return LayerTally(from_counts((), quantized, total), quantized, total)


@functools.cache
def switches_take_effect(ncnn: Any, precision: Precision) -> bool:
    """True when `precision`'s switches change a convolution's output on this CPU (fp32: always True)."""
    if precision is Precision.FP32:
        return True
    rng = np.random.default_rng(0)
    n = _CHANNELS * _CHANNELS * 9
    weights = struct.pack("<I", 0) + rng.standard_normal(n).astype(np.float32).tobytes() \
        + rng.standard_normal(_CHANNELS).astype(np.float32).tobytes()
    x = rng.standard_normal((_CHANNELS, _SIZE, _SIZE)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="edgebench-ncnn-probe.") as tmp:
        (Path(tmp) / "p.param").write_text(_PROBE_PARAM)
        (Path(tmp) / "p.bin").write_bytes(weights)
        ref = _probe_run(ncnn, Path(tmp), PRECISION_FLAGS[Precision.FP32], x)
        out = _probe_run(ncnn, Path(tmp), PRECISION_FLAGS[precision], x)
    return not np.array_equal(ref, out)


def _probe_run(ncnn: Any, folder: Path, flags: dict[str, bool], x: np.ndarray) -> np.ndarray:
    net = ncnn.Net()
    for key, value in flags.items():
        setattr(net.opt, key, value)
    net.opt.num_threads = 1
    net.opt.use_vulkan_compute = False
    if net.load_param(str(folder / "p.param")) != 0 or net.load_model(str(folder / "p.bin")) != 0:
        raise EdgebenchError("ncnn could not load its own precision probe")
    ex = net.create_extractor()
    ex.input("in0", ncnn.Mat(x))
    _, mat = ex.extract("out0")
    out = np.array(mat)
    del mat, ex  # the extractor's blobs belong to the net's allocators: free them first
    net.clear()
    return out
