"""ONNX Runtime INT8 (calibration.ort): with the decode tail in float the bundled model keeps its accuracy
and runs int8 (every other Conv fused into QLinearConv: the fast path); without it the class scores are
crushed; a cache hit is byte-identical and a changed model is a miss; the methods really differ."""
from __future__ import annotations

import contextlib
import filecmp
import io
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from calibration.cache import CalibrationCache
from calibration.dataset import build_calibration_set
from calibration.exclusions import decode_tail
from calibration.methods import Method
from calibration.onnx_prep import float32_onnx
from calibration.ort import DEFAULT_SCHEME, cache_key, quantize
from calibration.ort_ranges import compute_ranges, entropy_threshold
from calibration.request import QuantizeRequest, QuantizeResult
from edge_sdk.synth import generate
from runtimes.errors import CalibrationError
from runtimes.precision import Precision
from runtimes.registry import load
from trainer.val import validate

BUNDLED = Path(__file__).resolve().parents[1] / "edge_sdk" / "assets" / "default_model.onnx"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    logging.getLogger().setLevel(logging.ERROR)  # ORT's quantizer logs through the root logger
    return tmp_path_factory.mktemp("ort_int8")


@pytest.fixture(scope="module")
def data(work: Path) -> Path:
    """Synthetic images of the bundled model's classes (16 train for calibration, 16 val)."""
    return generate(work / "data", train=16, val=16, imgsz=320, seed=7) / "data.yaml"


@pytest.fixture(scope="module")
def source(work: Path) -> Path:
    return float32_onnx(BUNDLED, work / "f32.onnx")


def _request(source: Path, data: Path, out: Path, **kw: object) -> QuantizeRequest:
    fields: dict = {"method": Method.MINMAX, "exclude": decode_tail(onnx.load(str(source)))}
    fields.update(kw)
    return QuantizeRequest(source=source, artifact=source, out=out, calib=build_calibration_set(data, 320, limit=16),
                           **fields)


@pytest.fixture(scope="module")
def int8(source: Path, data: Path, work: Path) -> tuple[QuantizeRequest, QuantizeResult]:
    req = _request(source, data, work / "int8" / "model.onnx", cache=CalibrationCache(work / "cache"), threads=1)
    return req, quantize(req)


def _ap(model: Path, data: Path) -> tuple[float, int]:
    with contextlib.redirect_stdout(io.StringIO()):
        r = validate(model, data, backend="onnxruntime")
    return float(r.stats["AP"]), int(r.num_detections)


def test_auto_exclusion_keeps_the_accuracy_and_runs_int8(int8: tuple, source: Path, data: Path) -> None:
    req, result = int8
    assert result.path == req.out and req.out.is_file() and not result.cache_hit
    assert result.quantizer.startswith("onnxruntime.quantization 1.")
    assert result.scheme.startswith("QDQ, weights int8 per-channel symmetric, activations uint8")
    assert result.excluded == req.exclude and "/head/dfl/Conv" in result.excluded and result.float_ops == ()
    with load(req.out, "onnxruntime") as rt:
        assert rt.precision_used is Precision.MIXED  # int8 convolutions, the DFL convolution in float
    (fp32, _), (q, n) = _ap(source, data), _ap(req.out, data)
    assert fp32 > 0.4 and q > fp32 - 0.05 and n > 0, (fp32, q)


def test_without_the_exclusion_the_class_scores_are_crushed(int8: tuple, source: Path, data: Path,
                                                          work: Path) -> None:
    req, _ = int8
    bare = quantize(replace(req, out=work / "bare.onnx", exclude=()))
    assert bare.cache_hit  # exclusions do not change the ranges: the same calibration serves
    import onnxruntime as ort

    x = next(iter(req.calib.arrays()))
    ref = ort.InferenceSession(str(source)).run(None, {"images": x})[0]
    got = ort.InferenceSession(str(bare.path)).run(None, {"images": x})[0]
    # one int8 scale over boxes (0..320 px) and scores (0..1): a step of ~1.3 px rounds every score to 0
    assert ref[0, 4:].max() > 0.5 and got[0, 4:].max() == 0.0
    ap, n = _ap(bare.path, data)
    assert ap < 0.01 and n == 0, (ap, n)


def test_an_unknown_exclusion_is_a_one_line_error(int8: tuple, work: Path) -> None:
    req, _ = int8
    with pytest.raises(CalibrationError, match=r"^cannot keep in float: no node named /no/such/node in f32.onnx$"):
        quantize(replace(req, out=work / "refused.onnx", exclude=("/no/such/node",)))


def test_every_quantized_conv_runs_as_qlinearconv(int8: tuple, work: Path) -> None:
    """U8S8 is ORT's integer path on x86: each Conv outside the exclusions becomes a QLinearConv at load."""
    import onnxruntime as ort

    req, _ = int8
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(work / "optimised.onnx")
    ort.InferenceSession(str(req.out), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(work / "optimised.onnx")).graph.node]
    convs = [n for n in onnx.load(str(req.source)).graph.node if n.op_type == "Conv"]
    assert ops.count("QLinearConv") == len([c for c in convs if c.name not in req.exclude]) and ops.count("Conv") == 1


def test_a_cache_hit_is_byte_identical_and_a_changed_model_misses(int8: tuple, source: Path, work: Path) -> None:
    req, first = int8
    again = quantize(replace(req, out=work / "again.onnx"))
    assert again.cache_hit and filecmp.cmp(first.path, again.path, shallow=False)
    assert cache_key(source, req.calib, Method.PERCENTILE, DEFAULT_SCHEME) != cache_key(source, req.calib,
                                                                                      req.method, DEFAULT_SCHEME)

    model = onnx.load(str(source))  # same file name, one weight changed
    changed = work / "changed" / source.name
    changed.parent.mkdir()
    weight = next(i for i in model.graph.initializer if i.name.endswith("weight"))
    arr = numpy_helper.to_array(weight).copy()
    arr.flat[0] += 0.5
    weight.CopyFrom(numpy_helper.from_array(arr, weight.name))
    onnx.save(model, str(changed))
    assert cache_key(changed, req.calib, req.method, DEFAULT_SCHEME) != cache_key(source, req.calib, req.method,
                                                                             DEFAULT_SCHEME)
    miss = quantize(replace(req, source=changed, artifact=changed, out=work / "changed.onnx"))
    assert not miss.cache_hit


def test_entropy_and_minmax_give_different_ranges(source: Path, data: Path, work: Path) -> None:
    """ORT's quantize_static runs Entropy with 128 bins: one candidate, the MinMax range. Ours must differ."""
    from calibration.ort import op_types, prepare

    calib = build_calibration_set(data, 320, limit=2)
    pre, _ = prepare(source, work / "pre.onnx")
    minmax, entropy = ({k: float(v.range_value[1]) for k, v in compute_ranges(pre, calib, m, op_types()).items()}
                       for m in (Method.MINMAX, Method.ENTROPY))
    assert minmax.keys() == entropy.keys()
    narrower = [k for k, hi in entropy.items() if hi < minmax[k] - 1e-6]
    assert len(narrower) > len(minmax) // 4 and all(entropy[k] <= minmax[k] + 1e-6 for k in minmax)


def test_the_vectorised_entropy_search_agrees_with_ort() -> None:
    from onnxruntime.quantization.calibrate import HistogramCollector

    rng = np.random.default_rng(0)
    collector = HistogramCollector("entropy", False, 512, 128, 99.99, "same")
    for trial in range(6):
        data = np.concatenate([rng.normal(0, rng.uniform(0.2, 3), 5000), rng.exponential(2, 500),
                               rng.normal(0, 20, 10)]).astype(np.float32)
        data = np.abs(data) if trial % 2 else data
        top = np.float32(np.abs(data).max())
        hist, edges = np.histogram(data, 256 + 128 * trial, range=(-top, top))
        edges = edges.astype(np.float32)
        with contextlib.redirect_stdout(io.StringIO()):
            lo, hi = collector.get_entropy_threshold((hist, edges, np.float32(-1e9), np.float32(1e9), top), 128)
        ours = entropy_threshold(hist, edges, 128)
        step = float(edges[1] - edges[0])
        # the same search; float32 near-ties may pick a neighbouring candidate
        assert abs(float(ours[1]) - float(hi)) <= 3 * step and abs(float(ours[0]) - float(lo)) <= 3 * step
