"""Label-free accuracy: unlabelled image folders, agreement mAP against a reference, and how
reports and compare keep it apart from labelled mAP."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.report.compare import CompareOptions, compare
from bench.report.compare_render import render_compare_markdown
from bench.report.writer import load_report, new_report
from bench.sweep.agreement import parse_reference, reference_gt, resolve_reference
from bench.sweep.run import RunOptions, run
from edge_sdk.coco_eval import evaluate
from edge_sdk.datasets import load_dataset
from runtimes.errors import DatasetError, InputError
from tests.conftest import run_cli
from tests.test_budgets import row

REF = "onnxruntime fp32, conf 0.25"


def _image_folder(root: Path, n: int = 3) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(root / f"{i}.jpg"), (rng.random((96, 128, 3)) * 255).astype(np.uint8))
    (root / "notes.txt").write_text("not an image")
    return root


def _dets(image_ids: list[int]) -> list[dict]:
    """Reference-like detections: confident boxes plus low-score ones below the GT threshold."""
    rng = np.random.default_rng(1)
    out = []
    for img in image_ids:
        for k in range(4):
            x, y = rng.uniform(0, 60), rng.uniform(0, 40)
            out.append({"image_id": img, "category_id": k % 2, "bbox": [x, y, 30.0, 25.0],
                        "score": float(rng.uniform(0.3, 0.9))})
            out.append({"image_id": img, "category_id": k % 2, "bbox": [x + 40, y + 30, 20.0, 20.0],
                        "score": float(rng.uniform(0.01, 0.2))})
    return out


def _unlabelled(tmp_path: Path):
    ds = load_dataset(_image_folder(tmp_path / "imgs"), allow_unlabelled=True)
    ds.names, ds.category_ids = {0: "a", 1: "b"}, {0: 0, 1: 1}
    return ds


def test_image_folder_is_an_unlabelled_data_set(tmp_path):
    with pytest.raises(DatasetError, match="no data.yaml"):  # readers that need labels
        load_dataset(_image_folder(tmp_path / "imgs"))
    ds = load_dataset(tmp_path / "imgs", allow_unlabelled=True)
    assert not ds.labelled and ds.format == "images" and len(ds) == 3
    assert all(len(s) == 0 and s.size == (96, 128) for s in ds.samples)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        load_dataset(tmp_path / "empty", allow_unlabelled=True)


def test_reference_against_itself_is_one_and_a_perturbed_copy_scores_lower(tmp_path):
    ds = _unlabelled(tmp_path)
    ids = [s.image_id for s in ds.samples]
    dets = _dets(ids)
    gt = reference_gt(ds, dets, 0.25, set(ids))
    assert len(gt["annotations"]) == sum(d["score"] >= 0.25 for d in dets) > 0
    same = evaluate(gt, dets)
    assert same.stats["AP"] == 1.0 and same.stats["AP50"] == 1.0  # what pycocotools gives
    shifted = [{**d, "bbox": [d["bbox"][0] + 4.0, *d["bbox"][1:]]} for d in dets]
    worse = evaluate(gt, shifted)
    assert worse.stats["AP"] < 1.0
    assert evaluate(gt, dets[: len(dets) // 2]).stats["AP"] < 1.0  # missing detections


def test_reference_spec_and_errors(small_model):
    assert parse_reference("fp32") == (None, "fp32")
    assert parse_reference("onnxruntime:fp32") == ("onnxruntime", "fp32")
    with pytest.raises(InputError, match="unknown backend"):
        parse_reference("nosuch:fp32")
    ref = resolve_reference("fp32", 0.3, small_model, "openvino")  # falls back to ONNX Runtime
    assert (ref.backend, ref.precision, ref.label) == ("onnxruntime", "fp32", "onnxruntime fp32, conf 0.3")
    with pytest.raises(InputError, match="cannot run"):
        resolve_reference("int8", 0.25, small_model, "onnxruntime")
    with pytest.raises(InputError, match="reference-conf"):
        resolve_reference("fp32", 1.5, small_model, "onnxruntime")


def test_unlabelled_without_reference_skips_accuracy_with_a_note(tmp_path, small_model):
    report, _, md_path = run(RunOptions(model=str(small_model), data=str(_image_folder(tmp_path / "imgs")),
                                        out_dir=str(tmp_path / "runs"), precisions=("fp32",), warmup=1,
                                        min_iterations=2, min_duration_s=0.0))
    (r,) = report.results
    assert r.status == "ok" and r.accuracy is None and r.agreement is None
    assert any(n.startswith("accuracy skipped") and "--reference" in n for n in report.notes)
    assert "accuracy skipped" in md_path.read_text()


def test_labels_and_reference_report_both(tmp_path, small_model, small_data):
    report, _, _ = run(RunOptions(model=str(small_model), data=str(small_data), out_dir=str(tmp_path / "runs"),
                                  precisions=("fp32",), warmup=1, min_iterations=2, min_duration_s=0.0,
                                  reference="fp32", reference_conf=0.01))
    (r,) = report.results
    assert "kind" not in r.accuracy.to_dict() and r.accuracy.num_images == 4  # labelled mAP, as before
    assert r.agreement.kind == "agreement" and r.agreement.reference == "onnxruntime fp32, conf 0.01"
    assert report.settings.reference["conf"] == 0.01


def test_cli_run_reference_on_the_bundled_model(tmp_path):
    from bench.sweep.defaults import default_model
    from edge_sdk.synth import generate

    default_model()  # the bundled model ships with the repo: a build without it fails here, never skips
    synth = generate(tmp_path / "synth", train=0, val=3, imgsz=320, seed=0)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for p in sorted(Path(synth).rglob("*.jpg"))[:3]:
        (imgs / p.name).write_bytes(p.read_bytes())
    proc = run_cli("run", "--data", str(imgs), "--reference", "fp32", "--precisions", "fp32",
                   "--warmup", "1", "--min-iterations", "2", "--min-duration", "0",
                   "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    json_path = tmp_path / "r" / "report.json"  # --out DIR is the report's folder itself
    report = load_report(json_path)
    (r,) = report.results
    assert r.accuracy is None  # no labels: no labelled mAP
    agree = r.agreement
    assert agree.kind == "agreement" and agree.reference == REF and agree.num_images == 3
    assert agree.AP >= 0.99  # the reference's own configuration, run again
    assert report.settings.reference["boxes"] > 0 and r.imgsz == [320, 320]
    md = json_path.with_suffix(".md").read_text()
    assert f"agreement mAP vs {REF}" in md and "| imgsz |" in md
    assert "agree mAP" in proc.stdout


def _agree(ap: float, ref: str = REF) -> dict:
    return {"kind": "agreement", "reference": ref, "AP": ap, "AP50": ap}


def test_compare_never_mixes_labelled_and_agreement_mAP():
    labelled = new_report(status="complete", profile={"name": "t"},
                          results=[row(ap=0.60), row(precision="int8", ap=0.55, p99=30.0)])
    free = new_report(status="complete", profile={"name": "t"},
                      results=[row(ap=None, agreement=_agree(1.0)),
                               row(precision="int8", ap=None, p99=20.0, agreement=_agree(0.90))])
    mixed = compare([("a.json", labelled), ("b.json", free)], CompareOptions(max_map_drop=0.02))
    assert mixed["accuracy_basis"]["kind"] == "labelled"
    rows = {r["label"]: r for r in mixed["rows"]}
    b_int8 = rows["b.json: onnxruntime/int8@640"]
    assert b_int8["metrics"]["AP"] is None and "AP" not in b_int8["deltas"]
    assert "not compared with labelled mAP" in b_int8["accuracy_note"]
    assert [c["status"] for c in b_int8["budget_checks"]] == ["unknown"]
    assert rows["a.json: onnxruntime/int8@640"]["deltas"]["AP"]["abs"] == pytest.approx(-0.05)
    assert "(not compared)" in render_compare_markdown(mixed)

    alone = compare([("b.json", free)], CompareOptions(max_map_drop=0.05))
    assert alone["accuracy_basis"] == {"kind": "agreement", "reference": REF}
    int8 = {r["label"]: r for r in alone["rows"]}["b.json: onnxruntime/int8@640"]
    assert int8["deltas"]["AP"]["abs"] == pytest.approx(-0.10)
    assert "agreement mAP drop too large" in int8["budget_checks"][0]["message"]
    md = render_compare_markdown(alone)
    assert f"agreement mAP vs {REF}" in md.split("## Recommendation")[0]
    assert "| AP50-95 |" not in md and "| imgsz |" in md
    assert json.loads(json.dumps(alone)) == alone
