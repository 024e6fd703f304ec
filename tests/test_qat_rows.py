"""int8 rows say how they were made: "int8-ptq" (our calibration route) or "int8-qat" (the model carried QAT
metadata), in the JSON rows, Markdown, HTML, the terminal table and compare; a PTQ row over the mAP-drop budget
(run/sweep report, compare, `edgebench quantize`) prints the `edgebench qat` command, or why QAT cannot start."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from bench.report.budgets import attach_checks
from bench.report.compare import compare
from bench.report.compare_render import render_compare_markdown
from bench.report.html import render_html
from bench.report.markdown import render_markdown, render_table
from bench.report.qat_advice import qat_advice, report_advice
from bench.report.rows import Report, ResultRow
from bench.report.writer import new_report
from bench.sweep.defaults import default_model
from bench.sweep.finish import terminal_notes
from bench.sweep.quant_route import mark_route, model_quantization
from edge_sdk.profiles import Budgets
from tests.conftest import NAMES, write_yolo_set
from tests.test_budgets import row

QAT_META = {"method": "qat", "library": "nncf", "target": "onnxruntime", "weights": "int8 per-channel symmetric",
            "activations": "int8 per-tensor asymmetric", "calib_images": 8, "source": "source.ckpt",
            "source_sha256": "c625f27380eb" + "0" * 52, "float_ops": ["head/cat/0", "head/sigmoid/0"]}
PTQ_RECORD = {"method": "percentile", "calibration": {"images": 16, "source": "d.yaml:train", "sha256": "ab" * 32},
              "exclusion": {"mode": "auto", "nodes": ["/head/Concat_9"], "added": []},
              "quantizer": "onnxruntime.quantization 1.32", "scheme": "QDQ s8/s8", "float_ops": ["Concat"]}
TRAINER_META = {"extra": {"producer": "edgebench.trainer", "model": {"scale": "n", "nc": 4}}}
FOREIGN_META = {"extra": {}}


def int8_row(quantization: dict[str, Any] | None, ap: float = 0.30, backend: str = "onnxruntime") -> ResultRow:
    r = row(backend, "int8", ap=ap, imgsz=[320, 320], quantization=quantization)
    r.precision_used = "mixed"
    return r


def ptq_report(model: str, data: str | None, meta: dict[str, Any], int8_ap: float = 0.30,
               quantization: dict[str, Any] | None = None) -> Report:
    """fp32 (AP 0.40) and one int8 row, checked against a 0.02 mAP-drop budget as `run` does."""
    rows = [row("onnxruntime", "fp32", ap=0.40, imgsz=[320, 320]),
            int8_row({**PTQ_RECORD, "route": "ptq"} if quantization is None else quantization, ap=int8_ap)]
    report = new_report(status="complete", profile={"name": "t", "budgets": {"max_map_drop": 0.02}}, results=rows,
                        model={"path": model, "sha256": "m" * 64, "meta": meta}, data={"path": data, "images": 4})
    attach_checks(report.results, Budgets(max_map_drop=0.02), None, True)
    return report


def trainable_data(root: Path) -> Path:
    """A data.yaml whose train split has labelled images (what QAT fine-tunes on)."""
    data = write_yolo_set(root)
    data.write_text(yaml.safe_dump({"path": ".", "train": "images/val", "val": "images/val", "names": dict(NAMES)}))
    return data


# --- the route and its one display helper ---------------------------------------------------------------------

@pytest.mark.parametrize(("quantization", "label"), [
    ({**PTQ_RECORD, "route": "ptq"}, "int8-ptq"),
    (PTQ_RECORD, "int8-ptq"),  # a report written before `route`: PTQ was the only route that wrote a record
    ({**QAT_META, "route": "qat", "as_stored": True}, "int8-qat"),
    ({"method": "qat (learned scales)"}, "int8-qat"),  # a QAT model converted for TFLite: its sidecar record
    (None, "int8"),  # a quantized model of unknown origin
])
def test_an_int8_row_says_how_it_was_made(quantization: dict[str, Any] | None, label: str) -> None:
    r = int8_row(quantization)
    assert r.precision_label == label
    assert r.precision_text == f"{label}/mixed"
    assert r.config == f"onnxruntime/{label}@320"
    assert r.precision == "int8"  # what was asked stays what it was
    back = ResultRow.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back.precision_label == label
    from bench.commands.sweep_cmd import row_line

    assert row_line(r).startswith(f"  onnxruntime/{label}@320: ")  # the sweep's progress line too
    if quantization is not None and "route" not in quantization:
        assert "route" not in r.to_dict()["quantization"]  # an old report is written back as it was read


def test_float_rows_have_no_route() -> None:
    fp32 = row("onnxruntime", "fp32")
    assert fp32.quant_route is None and fp32.precision_label == "fp32" and fp32.config == "onnxruntime/fp32@640"


def test_qat_summary_names_what_qat_metadata_records() -> None:
    text = int8_row({**QAT_META, "route": "qat", "as_stored": True}).quantization.summary()
    assert text.startswith("int8 by QAT (nncf, target onnxruntime): weights int8 per-channel symmetric")
    assert "fine-tuned from source.ckpt (sha256 c625f27380eb)" in text and "2 op(s) kept in float" in text


# --- where rows are built: the route of a run's rows -----------------------------------------------------------

def test_a_run_of_a_qat_model_marks_its_int8_rows_qat(tmp_path: Path) -> None:
    ctx = SimpleNamespace(model=tmp_path / "best-qat.onnx", model_precision="mixed",
                          model_meta={"precision": "int8", "extra": {"quantization": QAT_META}})
    r = mark_route(int8_row(None), ctx)
    assert r.quant_route == "qat" and r.quantization.as_stored and r.quantization.extra["library"] == "nncf"
    assert r.to_dict()["quantization"]["route"] == "qat"
    skipped = mark_route(row("onnxruntime", "fp32"), ctx)  # an fp32 row of a quantized model is skipped, no route
    assert skipped.quantization is None and skipped.precision_label == "fp32"


def test_a_run_of_our_ptq_artifact_reads_its_sidecar_and_an_unknown_one_stays_int8(tmp_path: Path) -> None:
    model = tmp_path / "m.int8.onnx"
    ctx = SimpleNamespace(model=model, model_precision="mixed", model_meta={"extra": {"producer": "x"}})
    assert mark_route(int8_row(None), ctx).precision_label == "int8"  # no QAT metadata, no sidecar
    Path(f"{model}.json").write_text(json.dumps({"int8": PTQ_RECORD, "precision": "int8"}))
    r = mark_route(int8_row(None), ctx)
    assert r.precision_label == "int8-ptq" and r.quantization.as_stored
    assert model_quantization(model, {}).calibration["images"] == 16


def test_a_row_quantized_by_the_run_is_ptq_and_a_float_model_adds_nothing(tmp_path: Path) -> None:
    ctx = SimpleNamespace(model=tmp_path / "m.onnx", model_precision="fp32", model_meta={})
    made = mark_route(int8_row(dict(PTQ_RECORD)), ctx)
    assert made.quantization.route == "ptq" and not made.quantization.as_stored
    failed = mark_route(int8_row(None), ctx)  # e.g. quantizing failed: nothing says how it would have been made
    assert failed.quantization is None and failed.precision_label == "int8"


# --- every view shows the label ------------------------------------------------------------------------------

def test_markdown_html_table_and_compare_show_int8_qat_and_int8_ptq(tmp_path: Path) -> None:
    qat = new_report(status="complete", profile={"name": "t"}, model={"path": "best-qat.onnx", "sha256": "q" * 64},
                     results=[int8_row({**QAT_META, "route": "qat", "as_stored": True})])
    ptq = ptq_report("m.onnx", None, FOREIGN_META, int8_ap=0.395)
    md, html, table = render_markdown(qat), render_html(qat), render_table(qat)
    assert "| onnxruntime | int8-qat/mixed |" in md and "int8 by QAT (nncf" in md
    assert "int8-qat (ran mixed)" in html and "int8-qat/mixed" in table
    result = compare([("ptq.json", ptq), ("qat.json", qat)], None)
    by_label = {r["label"]: r for r in result["rows"]}
    assert {"ptq.json: onnxruntime/int8-ptq@320", "qat.json: onnxruntime/int8-qat@320"} <= set(by_label)
    q = by_label["qat.json: onnxruntime/int8-qat@320"]
    assert (q["precision"], q["precision_label"], q["quantization_route"]) == ("int8", "int8-qat", "qat")
    assert q["quantization"].startswith("int8 by QAT")
    assert "onnxruntime/int8-qat@320" in render_compare_markdown(result)


def test_a_baseline_named_by_its_label_or_plain_precision(tmp_path: Path) -> None:
    ptq = ptq_report("m.onnx", None, FOREIGN_META, int8_ap=0.395)
    for spec in ("onnxruntime/int8-ptq", "onnxruntime/int8"):
        result = compare([("a.json", ptq)], _opts(baseline=spec))
        fp32 = next(r for r in result["rows"] if r["precision"] == "fp32")
        assert fp32["baseline"] == "a.json: onnxruntime/int8-ptq@320", spec


def _opts(**kw: Any) -> Any:
    from bench.report.compare import CompareOptions

    return CompareOptions(**kw)


# --- the QAT advice ------------------------------------------------------------------------------------------

def test_a_ptq_row_over_the_budget_prints_the_qat_command(tmp_path: Path) -> None:
    data = trainable_data(tmp_path / "d")
    ckpt = ptq_report(str(tmp_path / "best.ckpt"), str(data), {})
    (line,) = report_advice(ckpt)
    assert line.startswith("onnxruntime int8-ptq/mixed is over the mAP-drop budget")
    assert line.endswith(f"edgebench qat --model {tmp_path / 'best.ckpt'} --data {data} --target onnxruntime")
    assert line in terminal_notes(ckpt) and f"- {line}" in render_markdown(ckpt)
    ours = ptq_report(str(tmp_path / "ours.onnx"), str(data), TRAINER_META)  # our trainer's ONNX is lifted
    assert report_advice(ours)[0].endswith(f"--model {tmp_path / 'ours.onnx'} --data {data} --target onnxruntime")
    result = compare([("r.json", ckpt)], _opts(max_map_drop=0.02))
    bad = next(r for r in result["rows"] if r["precision_label"] == "int8-ptq")
    assert bad["advice"] and bad["advice"] in render_compare_markdown(result)
    assert all(r["advice"] is None for r in result["rows"] if r is not bad)


def test_no_advice_within_budget_or_for_a_qat_row(tmp_path: Path) -> None:
    data = trainable_data(tmp_path / "d")
    assert report_advice(ptq_report(str(tmp_path / "b.ckpt"), str(data), {}, int8_ap=0.39)) == []
    qat = ptq_report(str(tmp_path / "b.onnx"), str(data), TRAINER_META,
                     quantization={**QAT_META, "route": "qat", "as_stored": True})
    assert qat.results[1].budget_checks[0].status == "fail" and report_advice(qat) == []
    result = compare([("r.json", qat)], _opts(max_map_drop=0.02))
    assert all(r["advice"] is None for r in result["rows"])


def test_a_foreign_onnx_or_a_quantized_model_gets_the_reason_not_a_command(tmp_path: Path) -> None:
    data = trainable_data(tmp_path / "d")
    foreign = report_advice(ptq_report(str(tmp_path / "yolov8n.onnx"), str(data), FOREIGN_META))[0]
    assert "QAT cannot start from yolov8n.onnx: it was not exported by edgebench's trainer" in foreign
    assert "edgebench qat --model" not in foreign
    artifact = qat_advice(tmp_path / "m.xml", data, "openvino", {})
    assert "QAT cannot start from m.xml" in artifact and "edgebench qat --model" not in artifact
    given = ptq_report(str(tmp_path / "m.int8.onnx"), str(data), TRAINER_META,
                       quantization={**PTQ_RECORD, "route": "ptq", "as_stored": True})
    line = report_advice(given)[0]
    assert "m.int8.onnx is already quantized" in line and "edgebench qat --model FLOAT.ckpt --data" in line
    assert "QAT has no coreml target" in qat_advice(tmp_path / "b.ckpt", data, "coreml")


def test_the_data_argument(tmp_path: Path) -> None:
    val_only = write_yolo_set(tmp_path / "v")  # no train split: QAT could not fine-tune on it
    line = qat_advice(tmp_path / "b.ckpt", val_only, "openvino")
    assert "--data DATA.yaml --target openvino" in line and f"({val_only} has none)" in line
    bundled = qat_advice(default_model(), val_only, "onnxruntime", TRAINER_META)  # QAT's own synthetic train set
    assert bundled.endswith(f"edgebench qat --model {default_model()} --target onnxruntime")
    spaced = tmp_path / "my data"
    assert f"--data '{trainable_data(spaced)}'" in qat_advice(tmp_path / "b.ckpt", spaced / "data.yaml", "ncnn")


def test_quantize_over_budget_ends_with_the_advice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   small_model: Path, small_data: Path) -> None:
    import bench.tasks.quantize as task
    from converters.export import ExportResult

    out = tmp_path / "q.onnx"
    monkeypatch.setattr(task, "export", lambda *a, **k: ExportResult(out, "onnxruntime", "int8"))
    monkeypatch.setattr(task, "_score", lambda artifact, *a, **k: {
        "AP50-95": 0.40 if Path(artifact) == small_model else 0.30, "AP50": 0.6, "images": 4, "detections": 9})
    opts = task.QuantizeOptions(out=str(out), model=str(small_model), data=str(small_data), calib=str(small_data),
                                exclude="none", allow_calib_overlap=True)
    notes = task.quantize(opts).notes
    assert "but --exclude is explicit" in notes[-2]
    assert notes[-1].startswith("AP50-95 drop 25.0% > 1.0%: QAT cannot start from small.onnx")
    within = task.quantize(task.QuantizeOptions(**{**opts.__dict__, "max_map_drop": 0.5})).notes
    assert not any("QAT" in n for n in within)


# --- end to end: `run --model <Q/DQ ONNX with QAT metadata>` ---------------------------------------------------

def with_qat_metadata(qdq: Path, dst: Path) -> Path:
    """A copy of a Q/DQ ONNX whose metadata is what `edgebench qat` writes (precision int8, the QAT record)."""
    import onnx

    from edge_sdk.meta import ModelMeta

    proto = onnx.load(str(qdq))
    del proto.metadata_props[:]
    meta = ModelMeta(names=dict(NAMES), imgsz=(128, 128), layout="yolov8", precision="int8",
                     extra={"producer": "edgebench.trainer", "quantization": QAT_META})
    for key, value in meta.to_props().items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(dst))
    return dst


def test_run_of_a_qat_onnx_shows_int8_qat_and_skips_fp32(tmp_path: Path, qdq_model: Path, small_data: Path) -> None:
    from bench.sweep.run import RunOptions, run

    model = with_qat_metadata(qdq_model, tmp_path / "best-qat.onnx")
    report, json_path, md_path = run(RunOptions(
        model=str(model), data=str(small_data), backends=("onnxruntime",), precisions=("fp32", "int8"),
        out_dir=str(tmp_path / "out"), warmup=1, min_iterations=3, min_duration_s=0.0, duration_s=0,
        max_eval_images=4))
    fp32, int8 = report.results
    assert fp32.status == "skipped" and "already quantized" in str(fp32.error) and fp32.quantization is None
    assert int8.status in ("ok", "suspect"), int8.error  # random weights: a gate may distrust the scores
    assert int8.precision == "int8" and int8.precision_used in ("int8", "mixed")
    assert int8.precision_label == "int8-qat" and int8.quantization.as_stored
    stored = json.loads(json_path.read_text())["results"][1]
    assert stored["quantization"]["route"] == "qat" and stored["quantization"]["library"] == "nncf"
    assert f"| onnxruntime | int8-qat/{int8.precision_used} |" in md_path.read_text()
