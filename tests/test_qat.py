"""QAT (trainer.qat*, `edgebench qat`) on a tiny detector: the exported Q/DQ ONNX carries the trained scales,
ONNX Runtime reproduces each fake quantizer within one step and the detections of the fake-quant model, the
scheme follows the target, freezing happens on schedule, resume continues a run, and bad input is one line."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
torch = pytest.importorskip("torch", reason="the trainer needs torch (pip install 'edgebench[train]')")
pytest.importorskip("lightning", reason="the trainer needs lightning (pip install 'edgebench[train]')")
pytest.importorskip("nncf", reason="QAT needs NNCF (pip install 'edgebench[train]')")

import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402
from test_trainer_fixtures import NAMES, make_yolo_dataset  # noqa: E402

from edge_sdk.meta import ModelMeta  # noqa: E402
from trainer.checkpoint import CKPT_KEY, checkpoint_info, load_detector  # noqa: E402
from trainer.lift import module_name  # noqa: E402
from trainer.model import build_model  # noqa: E402
from trainer.qat_export import export_qat_onnx  # noqa: E402
from trainer.qat_model import insert_fake_quant, op_names, quantizers, resolve_scheme  # noqa: E402

IMGSZ = 64
ROOT = Path(__file__).resolve().parents[1]


def _healthy_model(seed: int = 0) -> torch.nn.Module:
    """A random network with measured BN statistics (non-trivial BN folding) and a few boxes."""
    torch.manual_seed(seed)
    model = build_model("n", len(NAMES))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
            m.reset_running_stats()
            m.weight.data.uniform_(-1.5, 1.5)  # negative BN scales too: the fold must flip those weights
    with torch.no_grad():
        model.train()(torch.rand(4, 3, IMGSZ, IMGSZ))
    for conv in model.head.cls:
        conv[-1].bias.data.fill_(-1.0)  # scores around 0.25: detections to compare
    return model.eval()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("qat") / "tiny.ckpt"
    model = _healthy_model()
    state = {f"ema.module.{k}": v for k, v in model.state_dict().items()}
    torch.save({CKPT_KEY: checkpoint_info(model.config, NAMES, IMGSZ), "state_dict": state}, path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_yolo_dataset(tmp_path_factory.mktemp("ds"), train=8, val=4)


def _calib(n: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.random((1, 3, IMGSZ, IMGSZ), dtype=np.float32) for _ in range(n)]


def _trained(target: str) -> torch.nn.Module:
    """Fake-quantized with ranges from calibration, then "trained": every range parameter moved."""
    model = _healthy_model()
    calib = _calib()
    scheme = resolve_scheme(target, "auto", op_names(model, torch.from_numpy(calib[0])))
    quantized = insert_fake_quant(model, calib, scheme, len(calib))
    with torch.no_grad():
        for q in quantizers(quantized).values():
            for p in q.parameters():
                if p.is_floating_point():
                    p.mul_(0.9)
    return quantized.eval()


def _keep(record: dict, name: str, inp: torch.Tensor, out: torch.Tensor) -> None:
    """A forward hook's body: keep a quantizer's first input and output (returns None: output unchanged)."""
    record.setdefault(name, (inp.detach().clone(), out.detach().clone(), inp.data_ptr()))  # in-place ops follow


def _export(model: torch.nn.Module, path: Path) -> onnx.ModelProto:
    meta = ModelMeta(names=dict(NAMES), imgsz=(IMGSZ, IMGSZ), layout="yolov8")
    export_qat_onnx(model, path, IMGSZ, meta)
    return onnx.load(str(path))


def _qparams(q: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """A quantizer's trained ONNX (scale, zero point), from its own range parameters."""
    with torch.no_grad():
        low, high = (t.detach().numpy().reshape(-1) for t in q.get_input_low_input_high())
    steps = q.level_high - q.level_low
    scale = (high - low) / steps
    return scale, np.round(q.level_low - low / scale)


def _inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    out = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            out[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return out


@pytest.mark.parametrize("target", ["onnxruntime", "tensorrt"])
def test_exported_activation_scales_are_the_trained_ones(target: str, tmp_path: Path) -> None:
    model = _trained(target)
    proto = _export(model, tmp_path / "q.onnx")
    values = _inits(proto)
    exported = [(values[n.input[1]], values[n.input[2]]) for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    acts = [q for q in quantizers(model).values() if not q.per_channel]
    assert acts
    for q in acts:
        scale, zero = _qparams(q)
        hits = [z for s, z in exported if s.size == 1 and abs(float(s) - scale[0]) <= 1e-6 * scale[0]]
        assert hits, f"no QuantizeLinear with the trained scale {scale[0]}"
        assert any(int(z) == int(zero[0]) for z in hits)
        assert (hits[0].dtype == np.int8) == (target == "tensorrt")  # symmetric int8 vs uint8 + zero point


def test_exported_weights_are_the_trained_grid_with_bn_folded(tmp_path: Path) -> None:
    model = _trained("onnxruntime")
    proto = _export(model, tmp_path / "q.onnx")
    values = _inits(proto)
    producer = {o: n for n in proto.graph.node for o in n.output}
    fq_weights = {}  # module path -> fake-quantized weight, as training used it
    record = {}
    hooks = [q.register_forward_hook(lambda m, i, o, n=name: _keep(record, n, i[0], o))
             for name, q in quantizers(model).items() if q.per_channel]
    with torch.no_grad():
        model(torch.zeros(1, 3, IMGSZ, IMGSZ))
    for h in hooks:
        h.remove()
    params = {p.data_ptr(): n for n, p in model.named_parameters()}
    for _, out, ptr in record.values():
        fq_weights[params[ptr].rsplit(".", 1)[0]] = out.numpy()
    modules = dict(model.named_modules())
    checked = 0
    for conv in (n for n in proto.graph.node if n.op_type == "Conv"):
        dq = producer.get(conv.input[1])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        ints, scale = values[dq.input[0]], values[dq.input[1]]
        assert ints.dtype == np.int8 and np.abs(ints).max() <= 127
        path = module_name(conv.name)
        block = modules[path.rsplit(".", 1)[0]] if path.endswith(".conv") else None
        k = np.ones(ints.shape[0], np.float32)
        if block is not None and hasattr(block, "bn"):
            bn = block.bn
            k = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
        expected = fq_weights[path] * k.reshape(-1, 1, 1, 1)
        got = ints.astype(np.float32) * scale.reshape(-1, 1, 1, 1)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
        checked += 1
    assert checked >= 50 and not any(n.op_type == "BatchNormalization" for n in proto.graph.node)


def test_onnxruntime_matches_the_fake_quant_model(tmp_path: Path) -> None:
    """Each exported Q/DQ pair, run by ONNX Runtime on what its quantizer saw, is within one step of the torch
    quantizer's output (equal but for rounding ties)."""
    import onnxruntime as ort

    model = _trained("onnxruntime")
    path = tmp_path / "q.onnx"
    proto = _export(model, path)
    values = _inits(proto)
    x = _calib(1)[0] * 0.8 + 0.1
    record = {}
    hooks = [q.register_forward_hook(lambda m, i, o, n=name: _keep(record, n, i[0], o))
             for name, q in quantizers(model).items() if not q.per_channel]
    with torch.no_grad():
        model(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    pairs = [(float(values[n.input[1]]), int(values[n.input[2]]), n) for n in proto.graph.node
             if n.op_type == "QuantizeLinear" and values[n.input[1]].size == 1]
    for name, (inp, out, _) in record.items():
        scale, zero = _qparams(quantizers(model)[name])
        q = next(n for s, z, n in pairs if abs(s - scale[0]) <= 1e-6 * scale[0] and z == int(zero[0]))
        got = _run_qdq(ort, values[q.input[1]], values[q.input[2]], inp.numpy())
        d = np.abs(got - out.numpy())
        assert d.max() <= scale[0] * 1.001, name
        assert (d > 1e-6).mean() < 0.01, name  # rounding ties only


def test_onnxruntime_detects_what_the_fake_quant_model_detects(tmp_path: Path) -> None:
    """End to end on a trained network (the bundled model's weights lifted into a checkpoint; a random one
    amplifies every rounding tie chaotically): ONNX Runtime on the Q/DQ export finds the fake-quant model's
    detections."""
    from bench.tasks.qat_check import fake_quant_parity
    from converters.parity import parity_inputs
    from runtimes.onnx_precision import onnx_tally
    from trainer.checkpoint import load_detector
    from trainer.lift import lift_checkpoint

    ckpt = lift_checkpoint(ROOT / "edge_sdk" / "assets" / "default_model.onnx", tmp_path / "bundled.ckpt")
    loaded = load_detector(ckpt)
    inputs = parity_inputs((loaded.imgsz, loaded.imgsz), 6)
    scheme = resolve_scheme("onnxruntime", "auto", op_names(loaded.model, torch.from_numpy(inputs[0])))
    quantized = insert_fake_quant(loaded.model, inputs, scheme, len(inputs))
    qat_ckpt = tmp_path / "qat.ckpt"
    state = {f"model.{k}": v for k, v in quantized.state_dict().items()}
    info = checkpoint_info(loaded.model.config, loaded.names, loaded.imgsz) | {"qat": scheme.to_dict()}
    torch.save({CKPT_KEY: info, "state_dict": state}, qat_ckpt)
    meta = ModelMeta(names=loaded.names, imgsz=(loaded.imgsz, loaded.imgsz), layout="yolov8")
    path, stats = export_qat_onnx(quantized, tmp_path / "q.onnx", loaded.imgsz, meta)
    res = fake_quant_parity(qat_ckpt, path, inputs)
    assert res.passed and res.ref_detections > 5, res.summary()
    # every quantized convolution reaches ONNX Runtime as DequantizeLinear -> Conv -> QuantizeLinear (its output
    # quantizer was trained; layout ops between quantized tensors got a pair on their grid), so ORT fuses all
    tally = onnx_tally(path, requantized_only=True)
    assert stats.requantized_inputs > 0 and tally.quantized == stats.int8_weights == 57, tally


def _run_qdq(ort: object, scale: np.ndarray, zero: np.ndarray, x: np.ndarray) -> np.ndarray:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]), helper.make_node("DequantizeLinear",
                                                                                       ["q", "s", "z"], ["y"])],
        "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))],
        [numpy_helper.from_array(np.asarray(scale, np.float32), "s"), numpy_helper.from_array(zero, "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])  # type: ignore[attr-defined]
    return sess.run(None, {"x": x})[0]


def test_the_scheme_follows_the_target() -> None:
    names = op_names(_healthy_model(), torch.zeros(1, 3, IMGSZ, IMGSZ))
    ort_scheme = resolve_scheme("onnxruntime", "auto", names)
    assert "head/2/conv2d/0" in ort_scheme.ignored and "head/cat/7" in ort_scheme.ignored  # head outputs + tail
    assert not any(n.startswith(("head/0/", "head/1/", "backbone/")) for n in ort_scheme.ignored)
    assert resolve_scheme("tflite", "auto", names).ignored == ()  # full integer
    assert ort_scheme.outputs and "backbone/stem/bn/batch_norm/0" in ort_scheme.outputs  # ORT requantizes
    assert resolve_scheme("tensorrt", "auto", names).outputs == ()  # TensorRT fuses conv outputs itself
    assert resolve_scheme("tensorrt", "none", names).symmetric_activations
    assert not ort_scheme.symmetric_activations
    assert resolve_scheme("ncnn", r"backbone/stem/.*", names).ignored[0].startswith("backbone/stem/")
    decode = set(resolve_scheme("onnxruntime", "decode", names).ignored)
    assert "head/sigmoid/0" in decode and "head/cat/7" in decode  # the box arithmetic, sigmoid, final concat
    assert not any(n.startswith(("head/2/", "head/dfl/", "head/cat/0")) for n in decode)  # int8: outputs, DFL
    both = set(resolve_scheme("onnxruntime", "decode,head/dfl/.*", names).ignored)
    assert decode < both and "head/dfl/conv2d/0" in both


def test_bad_scheme_requests_are_one_clear_error() -> None:
    from runtimes.errors import InputError

    names = op_names(_healthy_model(), torch.zeros(1, 3, IMGSZ, IMGSZ))
    with pytest.raises(InputError, match="unknown QAT target"):
        resolve_scheme("coreml", "auto", names)
    with pytest.raises(InputError, match="matches no op"):
        resolve_scheme("onnxruntime", "nothing/like/this", names)


TINY = dict(imgsz=IMGSZ, batch=4, workers=0, progress=False, accelerator="cpu", seed=1)


def _cfg(ckpt: Path, data: Path, out: Path, **kw: object) -> object:
    from trainer.qat import QatConfig

    base = dict(data=str(data), checkpoint=str(ckpt), out_dir=str(out), target="onnxruntime", epochs=3,
                freeze_bn_epoch=1, freeze_quantizers_epoch=2, calib_images=4, **TINY)
    base.pop("imgsz")
    return QatConfig(**{**base, **kw})  # type: ignore[arg-type]


class _Watch:
    """Per epoch: were all BN layers in eval mode, and did any quantizer range still learn?"""

    def __new__(cls) -> object:
        import lightning as L

        class Watch(L.Callback):
            def __init__(self) -> None:
                self.bn_eval: list[bool] = []
                self.ranges_learn: list[bool] = []

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
                if batch_idx == 0:
                    bns = [m for m in module.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
                    self.bn_eval.append(all(not m.training for m in bns))
                    self.ranges_learn.append(any(p.requires_grad for q in quantizers(module.model).values()
                                                 for p in q.parameters()))

        return Watch()


def test_freezing_follows_the_schedule_and_the_best_epoch_is_exported(ckpt: Path, data: Path, tmp_path: Path) -> None:
    from trainer.qat import fit_qat

    watch = _Watch()
    result = fit_qat(_cfg(ckpt, data, tmp_path / "run"), _calib(), callbacks=[watch])  # type: ignore[arg-type]
    assert watch.bn_eval == [False, True, True]  # type: ignore[attr-defined]
    assert watch.ranges_learn == [True, True, False]  # type: ignore[attr-defined]
    assert result.onnx is not None and result.onnx.is_file() and result.best is not None
    assert [int(h["epoch"]) for h in result.history] == [0, 1, 2]
    meta = ModelMeta.from_props({p.key: p.value for p in onnx.load(str(result.onnx)).metadata_props})
    assert meta.precision == "int8" and meta.extra["quantization"]["method"] == "qat"


def test_an_int8_dfl_trains_on_its_int8_bins(ckpt: Path, data: Path, tmp_path: Path) -> None:
    """With the DFL quantized (--exclude decode), the loss decodes with the bins the int8 DFL computes (the
    15/127 weight grid: 1 -> 0.945), so training fits what the target outputs; with the DFL float, 0..15."""
    from trainer.qat import QatConfig, prepare
    from trainer.qat_model import exact_dfl_grid, int8_dfl_bins
    from trainer.qat_module import QatModule

    grid = torch.round(torch.arange(16.0) * 127 / 15) * 15 / 127
    for exclude, expected in (("decode", grid), ("auto", torch.arange(16.0))):
        loaded = load_detector(ckpt)
        cfg = QatConfig(data=str(data), checkpoint=str(ckpt), exclude=exclude)
        quantized, _ = prepare(cfg, loaded, _calib())
        module = QatModule(loaded.model.config.to_dict(), loaded.names, IMGSZ, {}, {"freeze_bn_epoch": 0,
                                                                                   "freeze_quantizers_epoch": 1})
        module.attach(quantized)
        assert torch.allclose(module.criterion.bins, expected, atol=1e-5), exclude
        assert (int8_dfl_bins(quantized) is None) == (exclude == "auto")
        assert exact_dfl_grid(quantized) == (exclude != "auto")
        if exclude != "auto":
            assert torch.equal(int8_dfl_bins(quantized), torch.arange(16.0))  # step 1/8: 0..15 exact


def test_resume_continues_the_run(ckpt: Path, data: Path, tmp_path: Path) -> None:
    import lightning as L

    from trainer.qat import fit_qat, load_qat

    class StopAfterFirst(L.Callback):
        def on_train_epoch_end(self, trainer, module) -> None:  # type: ignore[no-untyped-def]
            trainer.should_stop = True

    out = tmp_path / "run"
    first = fit_qat(_cfg(ckpt, data, out), _calib(), callbacks=[StopAfterFirst()])  # type: ignore[arg-type]
    assert first.last is not None and first.epochs_run == 1
    before, _ = load_qat(first.last)
    resumed = fit_qat(_cfg(ckpt, data, out, resume=str(first.last)), _calib())  # type: ignore[arg-type]
    assert resumed.epochs_run == 3
    assert [int(h["epoch"]) for h in resumed.history][-2:] == [1, 2]
    after, qat = load_qat(resumed.last)  # type: ignore[arg-type]
    assert qat["target"] == "onnxruntime"
    moved = [not torch.equal(a, b) for (_, a), (_, b) in zip(before.state_dict().items(), after.state_dict().items(),
                                                              strict=True)]
    assert any(moved)


def test_qat_cli_writes_the_qdq_onnx_and_its_parity(ckpt: Path, data: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bench.cli import cli

    out = tmp_path / "cli"
    res = CliRunner().invoke(cli, ["qat", "--model", str(ckpt), "--data", str(data), "--epochs", "1", "--batch",
                                   "4", "--workers", "0", "--calib-images", "4", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert (out / "weights" / "best-qat.onnx").is_file()
    # a random network turns rounding ties into chaos, so only the verdict's presence is checked here (the
    # bundled model's passes: test_onnxruntime_detects_what_the_fake_quant_model_detects)
    assert "parity " in res.output and "epoch 0: val mAP50-95" in res.output
    assert "Statistics collection" not in res.output  # NNCF's progress bar stays off the terminal


@pytest.mark.parametrize("args, message", [
    (["--target", "coreml"], "Invalid value for '--target'"),
    (["--model", "x.tflite"], "QAT starts from one of our checkpoints"),
    (["--model", "nope.ckpt"], "--model nope.ckpt: no such file"),
    (["--model", str(ROOT / "edge_sdk" / "assets" / "default_model.onnx")], "--data is required"),
    (["--data", "missing.yaml"], "--data missing.yaml: no such file"),
])
def test_qat_cli_refuses_bad_input_in_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    from conftest import assert_one_line_error, run_cli

    assert_one_line_error(run_cli("qat", *args, cwd=tmp_path), message)


def test_qat_cli_refuses_a_bad_exclusion_before_calibrating(ckpt: Path, data: Path, tmp_path: Path) -> None:
    from conftest import assert_one_line_error, run_cli

    res = run_cli("qat", "--model", str(ckpt), "--data", str(data), "--exclude", "no/such/op", "--out",
                  str(tmp_path / "run"), cwd=tmp_path)
    assert_one_line_error(res, "--exclude no/such/op matches no op")
    assert not (tmp_path / "run").exists()



def test_a_bad_exclusion_is_refused_before_the_calibration_images_are_read(ckpt: Path, data: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.tasks.qat as task
    from runtimes.errors import InputError

    def no_calibration(*_: object) -> None:
        raise AssertionError("calibration images read before the --exclude check")

    monkeypatch.setattr(task, "calibration", no_calibration)
    req = task.QatRequest(str(ckpt), str(data), "onnxruntime", "no/such/op", 1, 4, None, None, 1, None, 4,
                          str(tmp_path / "run"), None, 0, 0, False, None, None, False)
    with pytest.raises(InputError, match="no/such/op matches no op"):
        task.run_qat(req)


def test_qat_cli_leaves_no_folder_for_a_foreign_onnx(data: Path, tmp_path: Path) -> None:
    from conftest import assert_one_line_error, run_cli

    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes((ROOT / "edge_sdk" / "assets" / "default_model.onnx").read_bytes())
    proto = onnx.load(str(foreign))
    del proto.metadata_props[:]
    onnx.save(proto, str(foreign))
    res = run_cli("qat", "--model", str(foreign), "--data", str(data), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert_one_line_error(res, "was not exported by edgebench's trainer")
    assert not (tmp_path / "run").exists()


def test_a_plain_checkpoint_is_not_a_qat_one(ckpt: Path) -> None:
    from runtimes.errors import ModelLoadError
    from trainer.qat import load_qat

    with pytest.raises(ModelLoadError, match="not a QAT checkpoint"):
        load_qat(ckpt)


def test_the_native_kernels_are_used_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from trainer.qat_model import NATIVE_KERNELS_ENV, fake_quant_kernels

    monkeypatch.setenv(NATIVE_KERNELS_ENV, "1")
    assert fake_quant_kernels() == "torch-native (asked)"
