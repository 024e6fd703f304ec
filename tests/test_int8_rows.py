"""int8 rows end to end on the bundled model (ONNX Runtime's quantizer, a few calibration images): sweep makes
int8 rows that carry their calibration provenance, exclusions, integer-op fraction and parity, and that compare
can pick; quantizing without exclusions reproduces the crushed-scores failure and the gate catches it;
calibration on evaluation images is refused; `export --precision int8` and `quantize` work from the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.report.compare import compare
from bench.sweep.defaults import default_data
from bench.sweep.sweep import SweepOptions, sweep
from converters.int8 import read_provenance
from tests.conftest import assert_one_line_error, run_cli

FAST = dict(warmup=1, min_iterations=5, min_duration_s=0.0, duration_s=0, max_eval_images=24, calib_images=16)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _cache_env(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEBENCH_CACHE", str(cache))


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory, cache: Path):
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEBENCH_CACHE", str(cache))
    try:
        out = tmp_path_factory.mktemp("sweep") / "out"
        report, json_path, _ = sweep(SweepOptions(backends=("onnxruntime",), precisions=("fp32", "int8"),
                                                  out_dir=str(out), **FAST))
    finally:
        mp.undo()
    return report, json_path


def test_sweep_makes_int8_rows_with_their_provenance(swept) -> None:
    report, _ = swept
    fp32, int8 = report.results
    assert fp32.status == "ok" and int8.status == "ok", (int8.error, int8.flag_texts())
    assert int8.precision_used in ("int8", "mixed")
    q = int8.quantization
    assert q is not None and q.method == "percentile" and q.quantizer.startswith("onnxruntime.quantization")
    assert q.calibration["images"] == 16 and q.calibration["source"].endswith("data.yaml:train")
    assert q.calibration["overlap_with_eval"] == 0 and len(q.calibration["sha256"]) == 64
    assert q.exclusion["mode"] == "auto" and "/head/Concat_9" in q.exclusion["nodes"]
    assert int8.layers is not None and 0.5 < int8.layers.integer_fraction < 1.0
    assert int8.parity is not None and int8.parity.passed, int8.parity
    ap32, ap8 = fp32.accuracy.AP, int8.accuracy.AP
    assert ap8 > 0.9 * ap32, (ap32, ap8)
    assert read_provenance(int8.artifact)["calibration"]["sha256"] == q.calibration["sha256"]
    assert any("int8 by onnxruntime.quantization" in n for n in Path(swept[1]).with_suffix(".md").read_text()
               .splitlines())


def test_compare_can_pick_the_int8_row(swept) -> None:
    report, _ = swept
    result = compare([("r.json", report)])
    int8 = next(r for r in result["rows"] if r["precision"] == "int8")
    assert int8["status"] == "ok" and int8["quantization"].startswith("int8 by onnxruntime.quantization")
    assert not any(r["code"] in ("suspect", "parity_fail", "map_drop") for r in int8["rejected"]), int8["rejected"]
    assert result["recommendation"] is not None


def test_without_exclusions_the_crushed_scores_are_caught(tmp_path: Path) -> None:
    report, _, _ = sweep(SweepOptions(backends=("onnxruntime",), precisions=("fp32", "int8"), exclude="none",
                                      out_dir=str(tmp_path / "out"), **FAST))
    fp32, int8 = report.results
    assert fp32.status == "ok"
    assert int8.status == "suspect", (int8.accuracy, int8.flag_texts())
    assert int8.accuracy is None or int8.accuracy.AP < 0.5 * fp32.accuracy.AP
    assert compare([("r.json", report)])["recommendation"] == "r.json: onnxruntime/fp32@320"


def test_calibrating_on_the_evaluation_images_is_refused(tmp_path: Path, cache: Path) -> None:
    val = default_data()
    proc = run_cli("run", "--precisions", "int8", "--calib", f"{val}:val", "--out", str(tmp_path / "o"),
                   cwd=tmp_path)
    assert_one_line_error(proc, "are also evaluation images", "--allow-calib-overlap")
    assert not (tmp_path / "o").exists()


def test_export_and_quantize_from_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "m.int8.onnx"
    proc = run_cli("export", "--model", str(_bundled()), "--to", "onnxruntime", "--precision", "int8",
                   "--calib-images", "8", "-o", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "parity PASS" in proc.stdout and out.is_file()
    side = json.loads(Path(f"{out}.json").read_text())
    assert side["int8"]["calibration"]["images"] == 8 and side["parity"]["passed"]
    q = tmp_path / "q.onnx"
    proc = run_cli("quantize", "--calib-images", "8", "--max-images", "16", "-o", str(q), cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr
    assert "AP50-95 fp32" in proc.stdout and "-> int8" in proc.stdout, proc.stdout
    kept = json.loads(Path(f"{q}.json").read_text())["quantize"]
    assert kept["scores"]["images"] == 16 and 0 < kept["scores"]["int8"]["AP50-95"] <= 1


def test_a_foreign_model_needs_calib(tmp_path: Path, small_model: Path, small_data: Path) -> None:
    proc = run_cli("export", "--model", str(small_model), "--to", "onnxruntime", "--precision", "int8",
                   "-o", str(tmp_path / "x.onnx"), cwd=tmp_path)
    assert_one_line_error(proc, "needs calibration images", "--calib")
    report, _, _ = sweep(SweepOptions(model=str(small_model), data=str(small_data), backends=("onnxruntime",),
                                      precisions=("int8",), out_dir=str(tmp_path / "o"), **FAST))
    assert report.results[0].status == "skipped" and "--calib" in report.results[0].error


def _bundled() -> Path:
    from bench.sweep.defaults import default_model

    return default_model()


def test_a_labelled_train_split_of_the_evaluation_yaml_is_not_the_evaluation_images(tmp_path: Path) -> None:
    """`quantize --calib D --data D`: the search judges on D's train split, so no "flattered" note."""
    from bench.tasks.quantize import _is_evaluation

    data = tmp_path / "data.yaml"
    data.write_text("path: .\n")
    assert not _is_evaluation(str(data), "train", str(data))
    assert _is_evaluation(str(data), "val", str(tmp_path / "." / "data.yaml"))
    assert not _is_evaluation(str(tmp_path / "other.yaml"), "val", str(data))
