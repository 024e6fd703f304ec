"""`edgebench map`: one clean JSON object equal to coco_stats; bad input -> one line, exit 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from coco_cases import random_case

from bench.cli import cli, main
from edge_sdk.coco_eval import STAT_KEYS, coco_stats


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    gt, dt = random_case(11)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    return tmp_path / "gt.json", tmp_path / "dt.json"


def _edgebench(*args: str) -> subprocess.CompletedProcess:
    code = "from bench.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_json_is_exactly_one_object_equal_to_coco_stats(files) -> None:
    gt, dt = files
    proc = _edgebench("map", "--gt", str(gt), "--pred", str(dt), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)  # raises if anything else is on stdout
    assert list(out) == list(STAT_KEYS)
    expected = coco_stats(gt, dt, "pycocotools")
    assert all(abs(out[k] - expected[k]) <= 1e-6 for k in STAT_KEYS)


@pytest.mark.parametrize("engine", ["pycocotools", "faster"])
def test_json_per_engine(files, engine: str, capfd) -> None:
    if engine == "faster":
        pytest.importorskip("faster_coco_eval")
    gt, dt = files
    main(["map", "--gt", str(gt), "--pred", str(dt), "--json", "--engine", engine])
    out = capfd.readouterr().out
    assert json.loads(out) == pytest.approx(coco_stats(gt, dt, "pycocotools"), abs=1e-6)


def test_table_shows_stats_prf_and_per_class(files) -> None:
    gt, dt = files
    result = CliRunner().invoke(cli, ["map", "--gt", str(gt), "--pred", str(dt), "--conf", "0.5"])
    assert result.exit_code == 0, result.output
    for text in ("AP50", "ARl", "conf >= 0.5", "F1", "Per-class AP50-95", "class1", "class90"):
        assert text in result.output


def _bad_cases(tmp_path: Path, gt: Path, dt: Path) -> dict[str, tuple[list[str], str]]:
    def write(name: str, text: str) -> str:
        (tmp_path / name).write_text(text)
        return str(tmp_path / name)

    good_dt = json.loads(dt.read_text())
    return {
        "missing gt": (["--gt", str(tmp_path / "nope.json"), "--pred", str(dt)], "nope.json"),
        "missing pred": (["--gt", str(gt), "--pred", str(tmp_path / "gone.json")], "gone.json"),
        "invalid json": (["--gt", write("broken.json", '{"images": ['), "--pred", str(dt)], "broken.json"),
        "dt not a list": (["--gt", str(gt), "--pred", write("obj.json", '{"a": 1}')], "obj.json"),
        "dt missing key": (["--gt", str(gt), "--pred", write("nokey.json", json.dumps(
            [{k: v for k, v in good_dt[0].items() if k != "bbox"}]))], "nokey.json"),
        "gt without images": (["--gt", write("noimg.json", '{"annotations": [], "categories": []}'),
                               "--pred", str(dt)], "noimg.json"),
        "unknown image id": (["--gt", str(gt), "--pred", write("stray.json", json.dumps(
            [{**good_dt[0], "image_id": 424242}]))], "stray.json"),
        "unknown category id": (["--gt", str(gt), "--pred", write("cats.json", json.dumps(
            [{**good_dt[0], "category_id": 777}, *good_dt]))], "cats.json"),
    }


def test_unknown_category_ids_are_named(files, tmp_path: Path, capfd) -> None:
    """Category ids the ground truth lacks (e.g. 0-based class indices against 1-based COCO ids) are an
    error naming them, not AP -1.0 everywhere."""
    gt, dt = files
    gt_cats = sorted(c["id"] for c in json.loads(gt.read_text())["categories"])
    shifted = [{**d, "category_id": d["category_id"] + 1000} for d in json.loads(dt.read_text())[:3]]
    (tmp_path / "shifted.json").write_text(json.dumps(shifted))
    with pytest.raises(SystemExit) as exc:
        main(["map", "--gt", str(gt), "--pred", str(tmp_path / "shifted.json")])
    err = capfd.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err
    ids = sorted({d["category_id"] for d in shifted})
    assert f"3 detection(s) have category ids not in the ground truth: {', '.join(map(str, ids))}" in err
    assert f"ground-truth categories: {gt_cats[0]}, " in err


def test_bad_input_one_line_exit_2(files, tmp_path: Path, capfd) -> None:
    gt, dt = files
    for name, (args, filename) in _bad_cases(tmp_path, gt, dt).items():
        with pytest.raises(SystemExit) as exc:
            main(["map", *args, "--json"])
        captured = capfd.readouterr()
        assert exc.value.code == 2, name
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and filename in lines[0], (name, captured.err)
        assert captured.out == "", name


def test_bad_input_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "gt.json").write_text("[1, 2]")
    proc = _edgebench("map", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "dt.json"))
    assert proc.returncode == 2
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'gt.json'}: expected a COCO "
                                                "ground-truth object, got a JSON list"]


def test_an_empty_detection_list_warns_once_and_exits_0(files, capfd) -> None:
    gt, dt = files
    dt.write_text("[]")
    main(["map", "--gt", str(gt), "--pred", str(dt), "--json"])
    captured = capfd.readouterr()
    assert captured.err.strip() == f"warning: no detections in {dt}: every score below is 0"
    assert json.loads(captured.out)
