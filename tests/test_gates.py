"""Sanity gates and what a run refuses or says: crushed scores, failed parity, AP collapse, class
mismatch, pre-quantized models, the bundled data set only for the bundled model, nothing measured."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from bench.report.compare import compare
from bench.report.rows import Accuracy
from bench.report.writer import new_report
from bench.sweep.defaults import default_model
from bench.sweep.gates import COLLAPSE_RATIO, MIN_REFERENCE_AP, collapse_reason, gate_collapse, gate_row
from bench.sweep.isolate import ChildOutcome
from bench.sweep.run import RunOptions, measure_spec, prepare, row_from_outcome, run
from runtimes.errors import InputError
from tests.conftest import assert_one_line_error, run_cli, write_yolo_set
from tests.test_budgets import row


def _opts(tmp_path: Path, model: Path, data: Path | None, **kw) -> RunOptions:
    return RunOptions(model=str(model), data=str(data) if data else None, out_dir=str(tmp_path / "runs"),
                      warmup=0, min_iterations=2, min_duration_s=0.0, duration_s=0, **kw)


def crushed(src: Path, dst: Path) -> Path:
    """A copy of a YOLOv8 ONNX whose class scores are multiplied by 0: no detection at any threshold."""
    proto = onnx.load(str(src))
    out = proto.graph.output[0]
    rows = out.type.tensor_type.shape.dim[1].dim_value
    mask = np.ones((1, rows, 1), np.float32)
    mask[:, 4:] = 0.0
    producer = next(n for n in proto.graph.node if out.name in n.output)
    producer.output[list(producer.output).index(out.name)] = "uncrushed"
    proto.graph.initializer.append(numpy_helper.from_array(mask, "crush_mask"))
    proto.graph.node.append(helper.make_node("Mul", ["uncrushed", "crush_mask"], [out.name], name="crush"))
    onnx.save(proto, str(dst))
    return dst


# --- gates on rows ------------------------------------------------------------------------------

def test_zero_detections_on_labelled_images_is_a_suspect_row_compare_skips(tmp_path, small_model, small_data):
    model = crushed(small_model, tmp_path / "crushed.onnx")
    report, _, md_path = run(_opts(tmp_path, model, small_data, precisions=("fp32",)))
    (fp32,) = report.results
    assert fp32.status == "suspect" and fp32.measured and not fp32.ok
    assert fp32.fps and fp32.accuracy.num_detections == 0  # its numbers are kept
    assert "zero detections on images with 4 labelled boxes" in fp32.flag_texts("suspect")[0]
    assert "suspect: zero detections" in md_path.read_text()
    result = compare([("crushed.json", report)])
    assert result["recommendation"] is None
    (out,) = result["rows"]
    assert out["metrics"]["p99"] is not None  # shown, not recommended
    assert out["rejected"][0]["code"] == "suspect" and "zero detections" in out["rejected"][0]["message"]


def test_the_real_model_with_detections_is_not_flagged(tmp_path, small_model, small_data):
    report, _, _ = run(_opts(tmp_path, small_model, small_data, precisions=("fp32",)))
    assert report.results[0].status == "ok" and not report.results[0].flag_texts("suspect")


def test_failed_parity_makes_the_row_suspect(tmp_path, small_model, small_data):
    opts = _opts(tmp_path, small_model, small_data)
    ctx = prepare(opts)
    spec = measure_spec(ctx, opts, small_model, "fp32")
    first = spec.eval_images[0][0]
    label = next(a for a in ctx.dataset.to_coco()["annotations"] if a["image_id"] == first)  # found where it is
    value = {"latency_ms": {"total": {"p50": 1.0, "p99": 2.0}}, "fps": 500.0,
             "detections": [{"image_id": first, "category_id": label["category_id"], "bbox": label["bbox"],
                             "score": 0.9}]}
    parity = {"passed": False, "failures": ["scores cos 0.90 < 0.99"]}
    bad = row_from_outcome(ctx, spec, ChildOutcome("ok", value), parity=parity)
    assert bad.status == "suspect" and "parity failed" in bad.flag_texts()[0] and "0.90" in bad.flag_texts()[0]
    good = row_from_outcome(ctx, spec, ChildOutcome("ok", value), parity={**parity, "passed": True})
    assert good.status == "ok" and not good.flags
    result = compare([("r.json", new_report(status="complete", results=[good, bad]))])
    assert result["recommendation"] == "r.json: onnxruntime/fp32 #1"


def test_gate_row_leaves_unmeasured_and_unlabelled_rows_alone():
    skipped = row(status="skipped")
    gate_row(skipped, 0, 10)
    assert skipped.status == "skipped" and not skipped.flags
    nothing_to_find = row()
    gate_row(nothing_to_find, 0, 0)
    assert nothing_to_find.status == "ok"
    reference_boxes = row()
    gate_row(reference_boxes, 0, 0, reference_boxes=7)
    assert reference_boxes.status == "suspect" and "7 reference boxes" in reference_boxes.flag_texts()[0]


def test_detections_that_match_no_label_make_the_row_suspect():
    found_nothing = row()
    found_nothing.accuracy = Accuracy(AP=0.0, AP50=0.0)
    gate_row(found_nothing, 250, 40)
    assert found_nothing.status == "suspect"
    assert found_nothing.flag_texts() == ["suspect: AP50 0.000 on 40 labelled boxes: none of its 250 detections "
                                          "is where a label is"]
    weak_but_real = row()
    weak_but_real.accuracy = Accuracy(AP=0.001, AP50=0.004)
    gate_row(weak_but_real, 250, 40)
    assert weak_but_real.status == "ok"
    unlabelled = row(ap=None)
    gate_row(unlabelled, 250, 0)
    assert unlabelled.status == "ok"


def test_ap_collapse_threshold():
    assert collapse_reason(0.19, 0.40, "x") is not None  # < 50% of 0.40
    assert collapse_reason(0.20, 0.40, "x") is None  # exactly half: kept
    assert collapse_reason(0.0, MIN_REFERENCE_AP - 1e-3, "x") is None  # the reference is too weak to judge
    assert COLLAPSE_RATIO == 0.5 and MIN_REFERENCE_AP == 0.05
    fp32, int8 = row(ap=0.40), row(precision="int8", ap=0.10)
    other_size = row(precision="int8", ap=0.01, imgsz=[320, 320])  # no fp32 row at 320
    rows = [int8, fp32, other_size]
    gate_collapse(rows)
    gate_collapse(rows)  # idempotent
    assert int8.status == "suspect" and len(int8.flags) == 1
    assert "0.100 < 50% of onnxruntime/fp32's 0.400" in int8.flags[0].reason
    assert fp32.status == "ok" and other_size.status == "ok"


# --- what a run refuses before anything runs ---------------------------------------------------

def test_class_mismatch_is_one_line_exit_2_before_anything_runs(tmp_path, small_model):
    three = write_yolo_set(tmp_path / "three", names={0: "a", 1: "b", 2: "c"})
    proc = run_cli("run", "--model", str(small_model), "--data", str(three), "--out", str(tmp_path / "r"),
                   cwd=tmp_path)
    assert_one_line_error(proc, "has 3 classes", "the model has 4", "--allow-class-mismatch")
    assert not (tmp_path / "r").exists()
    renamed = write_yolo_set(tmp_path / "renamed", names={i: f"other{i}" for i in range(4)})
    with pytest.raises(InputError, match="the class names differ: data set .* has class 0 'other0' where the "
                                         "model has 'class0'"):
        prepare(_opts(tmp_path, small_model, renamed))
    ctx = prepare(_opts(tmp_path, small_model, renamed, allow_class_mismatch=True))
    assert any(n.startswith("class mismatch allowed") for n in ctx.notes)


def test_a_qdq_onnx_runs_its_int8_row_and_skips_fp32(tmp_path, qdq_model, small_data):
    report, _, _ = run(_opts(tmp_path, qdq_model, small_data, precisions=("int8", "fp32")))
    rows = {r.precision: r for r in report.results}
    assert rows["int8"].measured and rows["int8"].precision_used in ("int8", "mixed")
    assert rows["fp32"].status == "skipped"
    assert "already quantized" in rows["fp32"].error and "float model" in rows["fp32"].error


def test_nothing_measured_is_a_partial_report_and_a_non_zero_exit(tmp_path, small_model, small_data):
    report, json_path, md_path = run(_opts(tmp_path, small_model, small_data, precisions=("fp16",)))
    assert report.status == "partial" and all(r.status == "skipped" for r in report.results)
    assert "nothing was measured" in md_path.read_text()
    proc = run_cli("run", "--model", str(small_model), "--data", str(small_data), "--out", str(tmp_path / "c"),
                   "--precisions", "fp16", "--warmup", "0", "--min-iterations", "2", "--min-duration", "0",
                   cwd=tmp_path)
    assert proc.returncode == 1 and "note: nothing was measured" in proc.stderr


def test_the_bundled_data_set_is_not_the_default_for_another_model(tmp_path, small_model):
    report, _, md_path = run(_opts(tmp_path, small_model, None, precisions=("fp32",)))
    (fp32,) = report.results
    assert fp32.ok and fp32.accuracy is None and fp32.fps
    assert report.data.scored_images == 0 and report.data.sha256 is None
    assert any(n.startswith("no --data:") and "latency only" in n for n in report.notes)
    assert "none scored (timing only)" in md_path.read_text()


def test_report_identity_hashes_and_scored_count(tmp_path, small_model, small_data):
    from edge_sdk.hashing import sha256_of

    report, _, md_path = run(_opts(tmp_path, small_model, small_data, precisions=("fp32",), max_eval_images=3))
    assert report.data.images == 4 and report.data.scored_images == 3 and len(report.data.sha256) == 64
    assert report.results[0].artifact_sha256 == sha256_of(small_model) == report.model.sha256
    assert report.results[0].source_sha256 is None  # not converted
    assert "3 of 4 images scored" in md_path.read_text()
    again, _, _ = run(_opts(tmp_path, small_model, small_data, precisions=("fp32",), max_eval_images=4,
                            overwrite=True))  # the same --out folder
    assert again.data.sha256 != report.data.sha256


def test_a_sweep_that_measures_nothing_is_partial(tmp_path, small_model, small_data):
    from bench.sweep.sweep import SweepOptions, sweep

    report, json_path, _ = sweep(SweepOptions(model=str(small_model), data=str(small_data), out_dir=str(tmp_path / "s"),
                                              precisions=("int8",), warmup=0, min_iterations=2, min_duration_s=0.0))
    assert report.status == "partial" and report.sweep and not report.sweep.interrupted
    assert any(n.startswith("nothing was measured") for n in report.notes)


def test_cli_says_a_foreign_model_without_data_is_latency_only(tmp_path, small_model):
    proc = run_cli("run", "--model", str(small_model), "--out", str(tmp_path / "r"), "--precisions", "fp32",
                   "--warmup", "0", "--min-iterations", "2", "--min-duration", "0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "note: no --data: the bundled synthetic data set belongs to the bundled model" in proc.stderr


def test_val_refuses_different_class_names_like_run(tmp_path, small_model, capfd):
    from bench.cli import main

    renamed = write_yolo_set(tmp_path / "renamed", names={0: "class0", 1: "class2", 2: "class1", 3: "class3"})
    with pytest.raises(SystemExit) as exc:
        main(["val", "-m", str(small_model), "-d", str(renamed)])
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert exc.value.code == 2 and len(lines) == 1, lines
    assert "the class names differ" in lines[0] and "class 1 'class2'" in lines[0], lines
    main(["val", "-m", str(small_model), "-d", str(renamed), "--allow-class-mismatch", "--json"])
    captured = capfd.readouterr()
    assert "note: class mismatch allowed (--allow-class-mismatch)" in captured.err
    assert json.loads(captured.out)


def test_val_refuses_an_imgsz_an_artifact_does_not_have(tmp_path, small_model, small_data, capfd):
    from bench.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["val", "-m", str(small_model), "-d", str(small_data), "--imgsz", "640"])
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert exc.value.code == 2 and len(lines) == 1 and "--imgsz 640" in lines[0] and "128x128" in lines[0], lines


def test_an_artifact_converted_from_the_bundled_model_takes_the_bundled_data(small_model):
    from bench.sweep.inputs import _source_hash, data_for, is_bundled_model

    bundled_hash = _source_hash(str(default_model()))
    assert bundled_hash  # the bundled model records the checkpoint it was exported from
    converted = {"source_hash": bundled_hash, "extra": {"converted_from": "default_model.onnx"}}
    assert is_bundled_model(small_model, converted)
    assert data_for(None, small_model, converted, False)[1] is None  # scored: its labels are the model's
    for other in ({"source_hash": None, "extra": {"converted_from": "default_model.onnx"}},
                  {"source_hash": "f" * 64, "extra": {"converted_from": "default_model.onnx"}},
                  {"source_hash": bundled_hash, "extra": {}}, {}):
        assert not is_bundled_model(small_model, other)
        assert "labels are not used" in (data_for(None, small_model, other, False)[1] or "")


def test_a_qdq_onnx_is_converted_as_it_is_for_openvino(tmp_path, qdq_model, small_data):
    """OpenVINO reads Q/DQ as FakeQuantize: the quantized ONNX becomes an int8 IR without quantizing again;
    the other converters are still refused with the reason."""
    report, _, _ = run(_opts(tmp_path, qdq_model, small_data, backends=("openvino", "tflite"), precisions=("int8",)))
    ov, tfl = report.results
    assert ov.measured and ov.precision_used in ("int8", "mixed"), (ov.status, ov.error)
    assert ov.artifact.endswith("-openvino-int8.xml") and ov.quantization is None
    assert ov.parity is not None and ov.parity.precision_used in ("int8", "mixed")  # checked against the Q/DQ ONNX
    assert tfl.status == "skipped" and "already quantized" in tfl.error and "on openvino at int8" in tfl.error
