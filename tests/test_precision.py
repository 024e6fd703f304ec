"""Precision as a checked type, and precision_used read from the graph / engine, never echoed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_sdk import Detector
from runtimes import RuntimeOptions, load
from runtimes.onnx_precision import graph_precision, graph_tally
from runtimes.precision import (
    Precision,
    PrecisionError,
    PrecisionUnsupportedError,
    parse_precisions,
    satisfies,
)

P = Precision


@pytest.fixture(scope="module")
def default_model() -> Path:
    from bench.sweep.defaults import default_model

    return default_model()  # ships with the repo


def test_parse_accepts_the_five_names_and_lists_them_for_anything_else() -> None:
    assert [P.parse(n) for n in ("fp32", "FP16", " bf16 ", "int8", "mixed")] == \
        [P.FP32, P.FP16, P.BF16, P.INT8, P.MIXED]
    for bad in ("fp64", "unknown", "", "int4"):
        with pytest.raises(PrecisionError, match=r"\(valid: fp32, fp16, bf16, int8, mixed\)"):
            P.parse(bad)
    assert parse_precisions("fp32, int8,fp32") == (P.FP32, P.INT8)
    assert f"{P.FP16}" == str(P.FP16) == "fp16" and P.FP16 == "fp16"


def test_satisfies() -> None:
    assert satisfies(P.FP32, None) and satisfies(P.UNKNOWN, P.INT8)
    assert satisfies(P.MIXED, P.INT8) and not satisfies(P.INT8, P.MIXED)
    assert not satisfies(P.FP32, P.FP16) and not satisfies(P.BF16, P.FP16)


def test_runtime_options_and_detector_validate_at_once(tmp_path: Path) -> None:
    with pytest.raises(PrecisionError, match="unknown precision 'fp64'"):
        RuntimeOptions(precision="fp64")
    assert RuntimeOptions(precision="FP16").precision is P.FP16 and RuntimeOptions().precision is None
    with pytest.raises(PrecisionError):
        Detector(tmp_path / "missing.onnx", precision="half")


def test_detector_on_an_fp32_onnx_asked_int8_is_refused_not_relabelled(default_model: Path) -> None:
    with pytest.raises(PrecisionUnsupportedError, match="onnxruntime cannot run this model at int8; it runs fp32"):
        Detector(default_model, precision="int8")
    with Detector(default_model) as det:
        assert det.precision_used is P.FP32


# ------------------------------------------------------------------ ONNX graphs built by hand

def _conv_graph(nodes: list, inits: list, in_type: int = TensorProto.FLOAT) -> onnx.GraphProto:
    return helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", in_type, [1, 4, 8, 8])],
                             [helper.make_tensor_value_info("y", in_type, None)], inits)


def _weight(name: str, dtype: type = np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ones((4, 4, 1, 1), dtype), name)


def test_float_kind_comes_from_the_weights() -> None:
    conv = helper.make_node("Conv", ["x", "w"], ["y"])
    assert graph_precision(_conv_graph([conv], [_weight("w")])) is P.FP32
    assert graph_precision(_conv_graph([conv], [_weight("w", np.float16)], TensorProto.FLOAT16)) is P.FP16


def test_fp16_stored_weights_cast_to_fp32_compute_fp32() -> None:
    cast = helper.make_node("Cast", ["w16"], ["w"], to=TensorProto.FLOAT)
    conv = helper.make_node("Conv", ["x", "w"], ["y"])
    assert graph_precision(_conv_graph([cast, conv], [_weight("w16", np.float16)])) is P.FP32


def _dq(name: str) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    q = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.int8), f"{name}_q")
    s = numpy_helper.from_array(np.array(0.1, np.float32), f"{name}_s")
    return helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s"], [name]), [q, s]


def test_qdq_convs_are_int8_and_a_float_conv_beside_them_makes_mixed() -> None:
    xs = numpy_helper.from_array(np.array(0.1, np.float32), "xs")
    qx = helper.make_node("QuantizeLinear", ["x", "xs"], ["xq"])
    dqx = helper.make_node("DequantizeLinear", ["xq", "xs"], ["xd"])
    dqw, winits = _dq("w")
    conv = helper.make_node("Conv", ["xd", "w"], ["y"])
    qdq = [qx, dqx, dqw, conv]
    assert graph_precision(_conv_graph(qdq, [xs, *winits])) is P.INT8
    conv.output[0] = "h"
    extra = helper.make_node("Conv", ["h", "w2"], ["y"])
    assert graph_precision(_conv_graph([*qdq, extra], [xs, *winits, _weight("w2")])) is P.MIXED


def test_onnx_runtime_counts_a_qdq_conv_as_integer_only_when_its_output_is_requantized() -> None:
    xs = numpy_helper.from_array(np.array(0.1, np.float32), "xs")
    qx = helper.make_node("QuantizeLinear", ["x", "xs"], ["xq"])
    dqx = helper.make_node("DequantizeLinear", ["xq", "xs"], ["xd"])
    dqw, winits = _dq("w")
    conv = helper.make_node("Conv", ["xd", "w"], ["h"])
    qy = helper.make_node("QuantizeLinear", ["h", "xs"], ["hq"])
    dqy = helper.make_node("DequantizeLinear", ["hq", "xs"], ["y"])
    fused = _conv_graph([qx, dqx, dqw, conv, qy, dqy], [xs, *winits])
    assert graph_tally(fused, requantized_only=True).precision is P.INT8
    float_out = _conv_graph([qx, dqx, dqw, helper.make_node("Conv", ["xd", "w"], ["y"])], [xs, *winits])
    assert graph_tally(float_out, requantized_only=True).precision is P.FP32  # ORT: dequantize, float conv
    assert graph_tally(float_out).precision is P.INT8  # still a quantized model


def test_weight_only_dequantized_conv_computes_in_float() -> None:
    dqw, winits = _dq("w")
    conv = helper.make_node("Conv", ["x", "w"], ["y"])
    assert graph_precision(_conv_graph([dqw, conv], winits)) is not P.INT8


def test_no_compute_node_is_unknown() -> None:
    relu = helper.make_node("Relu", ["x"], ["y"])
    assert graph_precision(_conv_graph([relu], [])) is P.UNKNOWN


# ------------------------------------------------------------------ a real QDQ model on two engines

@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_quantized_onnx_reports_int8_and_an_fp32_request_on_it_is_refused(qdq_model: Path, backend: str) -> None:
    from runtimes.registry import availability

    ok, why = availability(backend)
    if not ok:
        pytest.skip(f"{backend}: {why}")
    with load(qdq_model, backend) as rt:
        assert rt.precision_used in (P.INT8, P.MIXED)
    with load(qdq_model, backend, precision="int8") as rt:
        assert rt.precision_used in (P.INT8, P.MIXED)
    with pytest.raises(PrecisionUnsupportedError, match="at fp32; it runs (int8|mixed)"):
        load(qdq_model, backend, precision="fp32")
