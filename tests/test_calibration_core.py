"""calibration/'s shared core: the calibration set (preprocessing, hashing, overlap refusal), the keyed cache
(a changed model or an altered file is never reused), the decode-tail exclusion and the fp16-weight fold."""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from calibration.cache import CacheKey, CacheWarning, CalibrationCache
from calibration.dataset import build_calibration_set
from calibration.exclusions import auto_exclusion, decode_tail, head_outputs, resolve_exclusion
from calibration.methods import Method
from calibration.onnx_prep import float32_onnx
from edge_sdk.frames import read_image
from edge_sdk.letterbox import preprocess
from edge_sdk.synth import generate
from runtimes.errors import CalibrationError, InputError
from testkit.models import make_yolov8_onnx

BUNDLED = Path(__file__).resolve().parents[1] / "edge_sdk" / "assets" / "default_model.onnx"


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("calib") / "data", train=12, val=6, imgsz=96, seed=3) / "data.yaml"


def test_default_source_is_the_train_split_preprocessed_as_inference(synth: Path) -> None:
    calib = build_calibration_set(synth, 96)
    assert len(calib) == 12 and all("/train/" in p.as_posix() for p in calib.files)
    assert calib.source.endswith("data.yaml:train")
    first = next(calib.arrays())
    expected, _ = preprocess(read_image(calib.files[0]), 96)
    np.testing.assert_array_equal(first, expected)
    assert next(calib.with_layout("nhwc").arrays()).shape == (1, 96, 96, 3)
    assert calib.provenance()["images"] == 12 and calib.provenance()["sha256"] == calib.sha256


def test_limit_takes_the_same_seeded_sample_and_the_hash_follows_content(synth: Path) -> None:
    a = build_calibration_set(synth, 96, limit=5)
    b = build_calibration_set(synth, 96, limit=5)
    assert a.files == b.files and a.sha256 == b.sha256 and len(a) == 5
    assert build_calibration_set(synth, 96).sha256 != a.sha256
    assert build_calibration_set(synth, 64, limit=5).sha256 != a.sha256  # preprocessing is part of the hash


def test_overlap_with_the_evaluation_images_is_refused_unless_allowed(synth: Path, tmp_path: Path) -> None:
    val = sorted((synth.parent / "images" / "val").iterdir())
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(val[0], folder / "renamed.jpg")  # same content, another name
    shutil.copy(next((synth.parent / "images" / "train").iterdir()), folder / "t.jpg")
    with pytest.raises(CalibrationError, match=r"1 of the 2 calibration images .* --allow-calib-overlap"):
        build_calibration_set(folder, 96, eval_images=val)
    allowed = build_calibration_set(folder, 96, eval_images=val, allow_overlap=True)
    assert allowed.overlap == 1 and allowed.provenance()["overlap_allowed"] is True
    assert build_calibration_set(synth, 96, eval_images=val).overlap == 0


def test_bad_sources_are_one_line_errors(synth: Path, tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="not found or not understood"):
        build_calibration_set(tmp_path / "nope", 96)
    with pytest.raises(CalibrationError, match="no 'test' split"):
        build_calibration_set(f"{synth}:test", 96)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="no calibration images"):
        build_calibration_set(tmp_path / "empty", 96)
    listing = tmp_path / "list.txt"
    listing.write_text("missing.jpg\n")
    with pytest.raises(CalibrationError, match="1 image"):
        build_calibration_set(listing, 96)
    with pytest.raises(InputError, match="unknown calibration method 'kl'"):
        Method.parse("kl")


def _key(model_sha: str = "m" * 64) -> CacheKey:
    return CacheKey(model_sha, "c" * 64, "minmax", "letterbox", "onnxruntime", {"onnxruntime": "1"}, {"exclude": []})


def test_cache_hit_needs_the_same_key_and_untouched_files(tmp_path: Path) -> None:
    cache = CalibrationCache(tmp_path / "cache")
    result = tmp_path / "ranges.json"
    result.write_text('{"a": [0, 1]}')
    assert not cache.lookup(_key(), ("ranges.json",)).hit
    cache.store(_key(), {"ranges.json": result})
    hit = cache.lookup(_key(), ("ranges.json",))
    assert hit.hit and hit.files is not None and hit.files["ranges.json"].read_text() == '{"a": [0, 1]}'
    assert not cache.lookup(_key("n" * 64), ("ranges.json",)).hit  # another model: another entry
    stored = cache.entry(_key()) / "ranges.json"
    stored.write_text('{"a": [0, 9]}')  # poisoned
    with pytest.warns(CacheWarning, match="ranges.json changed since it was stored"):
        assert not cache.lookup(_key(), ("ranges.json",)).hit


def test_a_manifest_of_another_key_under_the_same_digest_is_not_trusted(tmp_path: Path) -> None:
    cache = CalibrationCache(tmp_path)
    f = tmp_path / "t.txt"
    f.write_text("x")
    cache.store(_key(), {"t.txt": f})
    other = cache.entry(_key("z" * 64))
    shutil.copytree(cache.entry(_key()), other)  # an entry copied under another key's folder
    with pytest.warns(CacheWarning, match="key differs in model_sha256"):
        assert not cache.lookup(_key("z" * 64), ("t.txt",)).hit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.lookup(_key(), ("t.txt",)).hit


def test_decode_tail_is_found_by_position_on_our_model_and_an_ultralytics_style_one(tmp_path: Path) -> None:
    ours = decode_tail(onnx.load(BUNDLED))
    assert ours[-1] == "/head/Concat_9" and "/head/dfl/Softmax" in ours and "/head/Concat_3" in ours
    assert not any("cls" in n or "box" in n for n in ours)  # the head's convolutions stay quantizable
    theirs = onnx.load(make_yolov8_onnx(tmp_path / "y8.onnx", nc=3, imgsz=64))
    tail = decode_tail(theirs)
    ops = {n.name: n.op_type for n in theirs.graph.node}
    assert {"Softmax", "Sigmoid", "Concat"} <= {ops[n] for n in tail} and "Conv" in {ops[n] for n in tail}
    assert sum(ops[n] == "Conv" for n in tail) == 1  # the DFL's fixed conv, no learned one


def test_auto_keeps_the_heads_output_convs_and_their_concat_too(tmp_path: Path) -> None:
    for model in (onnx.load(BUNDLED), onnx.load(make_yolov8_onnx(tmp_path / "y8.onnx", nc=3, imgsz=64))):
        tail = decode_tail(model)
        head = head_outputs(model, tail)
        ops = {n.name: n.op_type for n in model.graph.node}
        assert [ops[n] for n in head].count("Conv") == 6 and [ops[n] for n in head].count("Concat") == 3
        assert set(auto_exclusion(model)) == set(tail) | set(head)
        assert resolve_exclusion("auto", model).nodes == auto_exclusion(model)
        producer = {o: n.name for n in model.graph.node for o in n.output}
        conv_inputs = [i for n in model.graph.node if n.name in head and ops[n.name] == "Conv" for i in n.input]
        assert not any(producer.get(i) in head for i in conv_inputs)  # the walk stops at the first conv


def test_exclude_spec(tmp_path: Path) -> None:
    model = onnx.load(BUNDLED)
    assert resolve_exclusion("none", model).nodes == ()
    assert resolve_exclusion(None, model).mode == "auto"
    dfl = resolve_exclusion("/head/dfl/Softmax, /head/dfl/Conv", model)
    assert dfl.nodes == ("/head/dfl/Softmax", "/head/dfl/Conv")
    with pytest.raises(InputError, match="no node named '/nope'"):
        resolve_exclusion("/nope", model)
    with pytest.raises(InputError, match="not a mix"):
        resolve_exclusion("auto,/head/dfl/Conv", model)


def test_fp16_weights_fold_to_float32_without_changing_the_outputs(tmp_path: Path) -> None:
    out = float32_onnx(BUNDLED, tmp_path / "f32.onnx")
    model = onnx.load(out)
    assert not any(n.op_type == "Cast" for n in model.graph.node)
    assert all(i.data_type != onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    a, b = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (BUNDLED, out))
    name = a.get_inputs()[0].name
    np.testing.assert_array_equal(a.run(None, {name: x})[0], b.run(None, {name: x})[0])
