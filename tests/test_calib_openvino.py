"""OpenVINO INT8 through NNCF (calibration.openvino): ONNX exclusions become OpenVINO op names, the
quantized IR runs int8 with the decode tail in float and keeps the float model's accuracy, a cache hit
does not run NNCF, unsupported methods are refused, and accuracy control returns layers to float."""
from __future__ import annotations

import filecmp
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("nncf")
pytest.importorskip("openvino")

from calibration.cache import CalibrationCache  # noqa: E402
from calibration.dataset import build_calibration_set  # noqa: E402
from calibration.exclusions import decode_tail  # noqa: E402
from calibration.methods import Method  # noqa: E402
from calibration.onnx_prep import float32_onnx  # noqa: E402
from calibration.openvino import float_ops, map_exclusions, quantize  # noqa: E402
from calibration.openvino_accuracy import (  # noqa: E402
    AccuracyControl,
    Infer,
    detection_map,
    quantize_with_accuracy_control,
)
from calibration.request import QuantizeRequest, QuantizeResult  # noqa: E402
from converters.openvino import to_openvino  # noqa: E402
from edge_sdk.synth import generate  # noqa: E402
from runtimes.base import RuntimeOptions  # noqa: E402
from runtimes.errors import CalibrationError  # noqa: E402
from runtimes.precision import Precision  # noqa: E402
from runtimes.registry import load  # noqa: E402

BUNDLED = Path(__file__).resolve().parents[1] / "edge_sdk" / "assets" / "default_model.onnx"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ov_int8")


@pytest.fixture(scope="module")
def data(work: Path) -> Path:
    """Synthetic images of the bundled model's classes (16 train for calibration, 12 val)."""
    return generate(work / "data", train=16, val=12, imgsz=320, seed=7) / "data.yaml"


@pytest.fixture(scope="module")
def source(work: Path) -> Path:
    return float32_onnx(BUNDLED, work / "f32.onnx")


@pytest.fixture(scope="module")
def float_ir(source: Path, work: Path) -> Path:
    return to_openvino(source, work / "f32.xml", "fp32")


def _request(source: Path, float_ir: Path, data: Path, out: Path, **kw: object) -> QuantizeRequest:
    calib = build_calibration_set(data, 320, limit=16)
    fields: dict = {"method": Method.MINMAX, "exclude": decode_tail(onnx.load(str(source)))}
    fields.update(kw)
    return QuantizeRequest(source=source, artifact=float_ir, out=out, calib=calib, **fields)


@pytest.fixture(scope="module")
def int8(source: Path, float_ir: Path, data: Path, work: Path) -> tuple[QuantizeRequest, QuantizeResult]:
    req = _request(source, float_ir, data, work / "int8" / "model.xml", cache=CalibrationCache(work / "cache"))
    return req, quantize(req)


@pytest.fixture(scope="module")
def fp32_map(float_ir: Path, data: Path) -> float:
    return _map(float_ir, data, "fp32")


def _map(path: Path, data: Path, precision: str | None) -> float:
    metric, items = detection_map(data, (320, 320))
    with load(path, "openvino", RuntimeOptions(precision=Precision.parse(precision) if precision else None)) as rt:
        return metric(lambda x: rt.infer(x), items)


def test_exclusions_map_onto_openvino_op_names(source: Path, float_ir: Path) -> None:
    import openvino as ov

    model = ov.Core().read_model(str(float_ir))
    onnx_model = onnx.load(str(source))
    tail = decode_tail(onnx_model)
    names, unmapped = map_exclusions(model, onnx_model, tail)
    assert unmapped == ()
    ops = {op.get_friendly_name(): op.get_type_name() for op in model.get_ordered_ops()}
    assert set(names) <= set(ops)
    assert ops["/head/dfl/Conv"] == "Convolution" and "/head/dfl/Conv" in names
    assert "/head/Concat_9" in tail and "/head/Concat_9" not in ops  # the final concat is named after its output
    assert ops["output0"] == "Concat" and "output0" in names
    # a Conv with a bias: the Add carries the node's name, the Convolution an unnamed '/WithoutBiases' one
    conv, _ = map_exclusions(model, onnx_model, ["/backbone/stem/conv/Conv"])
    assert conv == ("/backbone/stem/conv/Conv", "/backbone/stem/conv/Conv/WithoutBiases")
    fused = "/backbone/stem/act/Sigmoid"  # Sigmoid * x became one Swish op named after the Mul
    assert ops["/backbone/stem/act/Mul"] == "Swish" and fused not in ops
    assert map_exclusions(model, onnx_model, [fused]) == ((), (fused,))


def test_int8_ir_runs_int8_with_the_decode_tail_in_float(int8: tuple, fp32_map: float, data: Path) -> None:
    req, result = int8
    assert result.path == req.out and req.out.with_suffix(".bin").is_file()
    assert "/head/dfl/Conv" in result.excluded and result.float_ops == () and not result.cache_hit
    with load(req.out, "openvino", RuntimeOptions(precision=Precision.INT8)) as rt:
        assert rt.precision_used is Precision.MIXED  # int8 convolutions, the DFL convolution in f32
        assert '"precision": "int8"' in rt.metadata()["edgebench"]
    q = _map(req.out, data, None)
    assert fp32_map > 0.4 and q > fp32_map - 0.06, (fp32_map, q)


def test_a_cache_hit_reuses_the_ir_without_running_nncf(int8: tuple, work: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import nncf

    req, first = int8

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("nncf.quantize ran")

    monkeypatch.setattr(nncf, "quantize", refuse)
    again = quantize(replace(req, out=work / "again" / "model.xml"))
    assert again.cache_hit and again.excluded == first.excluded
    for suffix in (".xml", ".bin"):
        assert filecmp.cmp(req.out.with_suffix(suffix), again.path.with_suffix(suffix), shallow=False)
    with pytest.raises(AssertionError, match="nncf.quantize ran"):  # another method is another key
        quantize(replace(req, out=work / "other" / "model.xml", method=Method.PERCENTILE))


def test_openvino_runs_an_onnx_runtime_qdq_model_as_int8(source: Path, data: Path, work: Path,
                                                         fp32_map: float) -> None:
    """ONNX Runtime's static QDQ quantization (per-channel, decode tail left out) read by OpenVINO directly:
    its Q/DQ pairs become int8 layers, and only the excluded DFL convolution stays in float."""
    import openvino as ov
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    calib = build_calibration_set(data, 320, limit=4)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = calib.arrays()

        def get_next(self) -> dict[str, np.ndarray] | None:
            blob = next(self._it, None)
            return None if blob is None else {"images": blob}

    qdq = work / "qdq.onnx"
    quantize_static(str(source), str(qdq), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=list(decode_tail(onnx.load(str(source)))))
    with load(qdq, "openvino", RuntimeOptions(precision=Precision.INT8)) as rt:
        assert rt.precision_used is Precision.MIXED
    assert float_ops(ov, qdq) == ("/head/dfl/Conv",)
    q = _map(qdq, data, None)
    assert q > fp32_map - 0.06, (fp32_map, q)


@pytest.mark.parametrize("method", [Method.ENTROPY, Method.DISTRIBUTION])
def test_methods_nncf_lacks_are_refused_in_one_line(int8: tuple, method: Method, work: Path) -> None:
    req, _ = int8
    refused = r"^the OpenVINO \(NNCF\) quantizer has no .* minmax, moving_average, percentile$"
    with pytest.raises(CalibrationError, match=refused):
        quantize(replace(req, out=work / "refused.xml", method=method))


def _three_convs(path: Path) -> Path:
    """images (1,3,16,16) -> 3 x (Conv 3x3, Relu) -> out: a model NNCF ranks in a few steps."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    nodes, inits, prev, cin = [], [], "images", 3
    for i, cout in enumerate((8, 8, 4)):
        inits += [numpy_helper.from_array(rng.normal(0, 0.5, (cout, cin, 3, 3)).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(rng.normal(0, 0.1, cout).astype(np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], f"conv{i}", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}" if i < 2 else "out"], f"relu{i}")]
        prev, cin = f"r{i}", cout
    graph = helper.make_graph(nodes, "three", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                             [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 16, 16])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_accuracy_control_returns_layers_to_float(tmp_path: Path) -> None:
    """A metric only float can satisfy: NNCF must put layers back in float; it calls the metric on the
    whole set (float, quantized, after each step) and on single items (to rank the layers)."""
    import openvino as ov

    src = _three_convs(tmp_path / "three.onnx")
    ir = to_openvino(src, tmp_path / "three.xml", "fp32")
    rng = np.random.default_rng(0)
    items = [rng.random((1, 3, 16, 16), dtype=np.float32) for _ in range(4)]
    reference = ov.Core().compile_model(str(ir), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    expected = {id(x): reference(x)[0] for x in items}
    sizes: list[int] = []

    def metric(infer: Infer, chosen: list) -> float:  # 100 for float, less the further the outputs move
        sizes.append(len(chosen))
        return 100 - 1000 * float(np.mean([np.abs(infer(x)[0] - expected[id(x)]).max() for x in chosen]))

    calib = _Fixed(items)
    req = QuantizeRequest(source=src, artifact=ir, out=tmp_path / "q.xml", calib=calib,  # type: ignore[arg-type]
                          method=Method.MINMAX)
    result = quantize_with_accuracy_control(req, AccuracyControl(metric, items, max_drop=0.01, max_iterations=3))
    extra = result.extra
    assert extra["metric_float"] == 100.0 and extra["metric_quantized"] < 99.99, extra
    assert extra["metric_final"] > extra["metric_quantized"] and extra["metric_evaluations"] >= 3, extra
    assert result.float_ops, "nothing returned to float"
    assert 1 in sizes and len(items) in sizes
    assert any("not cached" in n for n in result.notes)


class _Fixed:
    """A CalibrationSet stand-in over fixed arrays."""

    sha256 = "fixed"

    def __init__(self, items: list[np.ndarray]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def with_layout(self, layout: str) -> _Fixed:
        return self

    def arrays(self, limit: int | None = None) -> Iterator[np.ndarray]:
        return iter(self.items[:limit])
