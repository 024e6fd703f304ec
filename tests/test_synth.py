"""The synthetic detection data generator and `edgebench data synth`."""
from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli import cli
from edge_sdk.datasets import load_coco, load_yolo
from edge_sdk.synth import CLASS_NAMES, generate, render_image
from edge_sdk.synth.compose import Canvas, object_layer, pick_colour, shade
from edge_sdk.synth.distractors import Layer
from runtimes.errors import DatasetError
from tests.conftest import assert_one_line_error, run_cli

LINE = re.compile(r"^\d+( \d\.\d{6}){4}$")


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two data sets with seed 3 (same arguments) and one with seed 4."""
    root = tmp_path_factory.mktemp("synth")
    return {name: generate(root / name, train=24, val=16, imgsz=160, seed=seed)
            for name, seed in (("a", 3), ("b", 3), ("c", 4))}


def _files(root: Path, pattern: str) -> list[Path]:
    return sorted(root.glob(pattern))


def _read(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_COLOR)


def test_same_seed_gives_identical_data(sets: dict[str, Path]) -> None:
    a, b = sets["a"], sets["b"]
    labels = _files(a, "labels/*/*.txt")
    assert len(labels) == 40
    for la in labels:
        assert la.read_bytes() == (b / la.relative_to(a)).read_bytes()
    for ia in _files(a, "images/*/*.jpg"):
        assert np.array_equal(_read(ia), _read(b / ia.relative_to(a)))
    for name in ("data.yaml", "annotations/instances_val.json", "synth.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_other_seed_and_other_split_differ(sets: dict[str, Path]) -> None:
    a, c = sets["a"], sets["c"]
    same = sum((a / p.relative_to(c)).read_bytes() == p.read_bytes()
               for p in _files(c, "labels/*/*.txt") if p.stat().st_size)
    assert same == 0
    first = "images/val/000000.jpg"
    assert not np.array_equal(_read(a / first), _read(c / first))
    train = render_image(3, "train", 5, 160, CLASS_NAMES)
    val = render_image(3, "val", 5, 160, CLASS_NAMES)
    assert train.image.shape != val.image.shape or not np.array_equal(train.image, val.image)


def test_any_image_regenerates_alone(sets: dict[str, Path]) -> None:
    from edge_sdk.synth.writer import label_text

    for split, index in (("train", 11), ("val", 7)):
        scene = render_image(3, split, index, 160, CLASS_NAMES, 0.25 if split == "val" else 0.0)
        stem = f"{index:06d}"
        assert label_text(scene) == (sets["a"] / "labels" / split / f"{stem}.txt").read_text()
        ok, buf = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok and np.array_equal(cv2.imdecode(buf, cv2.IMREAD_COLOR),
                                     _read(sets["a"] / "images" / split / f"{stem}.jpg"))


def test_labels_are_valid(sets: dict[str, Path]) -> None:
    nc = len(CLASS_NAMES)
    for path in _files(sets["a"], "labels/*/*.txt"):
        for line in path.read_text().splitlines():
            assert LINE.match(line), (path, line)
            cls, cx, cy, w, h = (float(v) for v in line.split())
            assert 0 <= cls < nc and w > 0 and h > 0
            assert 0 <= cx - w / 2 + 1e-6 and cx + w / 2 - 1e-6 <= 1
            assert 0 <= cy - h / 2 + 1e-6 and cy + h / 2 - 1e-6 <= 1
    for split in ("train", "val"):
        data = load_yolo(sets["a"] / "data.yaml", split=split, strict=True)
        assert data.nc == nc and not data.issues and len(data) == (24 if split == "train" else 16)


def test_coco_ground_truth_matches_txt_labels(sets: dict[str, Path]) -> None:
    root = sets["a"]
    coco = json.loads((root / "annotations/instances_val.json").read_text())
    assert [c["id"] for c in coco["categories"]] == list(range(1, len(CLASS_NAMES) + 1))
    assert [c["name"] for c in coco["categories"]] == list(CLASS_NAMES)
    yolo = load_yolo(root / "data.yaml", split="val", strict=True)
    assert [im["id"] for im in coco["images"]] == [s.image_id for s in yolo.samples]
    by_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        assert ann["iscrowd"] == 0 and 0 < ann["area"] <= ann["bbox"][2] * ann["bbox"][3]
        by_image.setdefault(ann["image_id"], []).append(ann)
    for im, sample in zip(coco["images"], yolo.samples, strict=False):
        assert (root / im["file_name"]).resolve() == sample.image_path.resolve()
        assert (im["height"], im["width"]) == _read(root / im["file_name"]).shape[:2]
        anns = by_image.get(im["id"], [])
        xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
        assert np.abs(xyxy.reshape(-1, 4) - sample.boxes_xyxy).max(initial=0) < 1e-3
        assert [a["category_id"] - 1 for a in anns] == sample.class_ids.tolist()
    gt = load_coco(root / "annotations/instances_val.json", strict=True)
    assert len(gt) == 16 and sum(len(s) for s in gt.samples) == len(coco["annotations"])


def _flat_canvas(size: int, grey: float) -> Canvas:
    return Canvas(np.full((size, size, 3), grey, np.float32))


@pytest.mark.parametrize("name", CLASS_NAMES)
def test_box_is_tight_around_a_single_object(name: str) -> None:
    rng = np.random.default_rng(len(name))
    for size, corner in ((7.0, (30, 40)), (23.0, (50, 12)), (55.0, (-12, 70))):
        canvas = _flat_canvas(128, 40.0)
        alpha = object_layer(rng, name, size)
        colour = np.array([220.0, 200.0, 180.0], np.float32)
        canvas.paint(Layer(alpha, corner[0], corner[1], shade(rng, alpha, colour)), cls=3)
        cls, boxes, _ = canvas.labels()
        assert cls.tolist() == [3]
        ys, xs = np.nonzero(np.abs(canvas.image - 40.0).max(axis=2) > 10.0)
        extent = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        assert np.abs(boxes[0] - extent).max() <= 1, (name, size, boxes[0], extent)
        assert max(boxes[0][2] - boxes[0][0], boxes[0][3] - boxes[0][1]) <= size * 1.5 + 2


def test_occluded_object_keeps_box_of_visible_part_or_is_dropped() -> None:
    rng = np.random.default_rng(0)
    canvas = _flat_canvas(100, 0.0)
    square = np.full((40, 40), 255, np.uint8)
    canvas.paint(Layer(square, 10, 10, np.ones((1, 1, 3), np.float32) * 200), cls=0)
    cover = Layer(np.full((40, 16), 255, np.uint8), 34, 10, np.ones((1, 1, 3), np.float32))
    assert canvas.fits(cover)  # 60% of the square stays visible
    canvas.paint(cover)
    assert canvas.labels()[1].tolist() == [[10, 10, 34, 50]]
    assert not canvas.fits(Layer(np.full((40, 12), 255, np.uint8), 18, 10, cover.colours))
    canvas.paint(Layer(np.full((40, 12), 255, np.uint8), 18, 10, cover.colours))
    assert canvas.labels()[0].size == 0  # 12 of 40 columns visible: below 40%, dropped
    assert pick_colour(rng, np.zeros((4, 4, 3), np.float32)).shape == (3,)


def test_boxes_sit_on_drawn_objects() -> None:
    covered, outside, total = [], 0, 0
    for index in range(24):
        with_obj = render_image(9, "train", index, 160, CLASS_NAMES)
        without = render_image(9, "train", index, 160, CLASS_NAMES, draw_objects=False)
        diff = np.abs(with_obj.image.astype(np.int16) - without.image).max(axis=2)
        changed = diff > np.median(diff) + 30
        inside = np.zeros_like(changed)
        for x1, y1, x2, y2 in with_obj.boxes.astype(int):
            box = changed[y1:y2, x1:x2]
            covered.append(box.mean())
            inside[max(y1 - 3, 0):y2 + 3, max(x1 - 3, 0):x2 + 3] = True
        outside += int((changed & ~inside).sum())
        total += int(changed.sum())
    assert len(covered) > 40
    assert np.median(covered) > 0.4 and np.mean(np.array(covered) > 0.1) > 0.95
    assert outside <= 0.01 * total


def test_sample_has_small_large_empty_and_every_class() -> None:
    sides, classes, empty, shapes = [], set(), 0, set()
    for index in range(160):
        scene = render_image(0, "val", index, 320, CLASS_NAMES, nonsquare=0.25)
        shapes.add(scene.image.shape)
        empty += len(scene.class_ids) == 0
        classes |= set(scene.class_ids.tolist())
        sides.extend((scene.boxes[:, 2:] - scene.boxes[:, :2]).max(axis=1).tolist())
    sides_arr = np.array(sides)
    assert (sides_arr < 12).sum() > 50 and (sides_arr > 0.3 * 320).sum() > 5
    assert 2 <= empty <= 25
    assert classes == set(range(len(CLASS_NAMES)))
    assert shapes == {(320, 320, 3), (240, 320, 3), (320, 240, 3)}


def test_class_subset_and_bad_arguments(tmp_path: Path) -> None:
    out = generate(tmp_path / "two", train=6, val=2, imgsz=96, classes=["ring", "arrow"])
    assert "names:\n  0: ring\n  1: arrow\n" in (out / "data.yaml").read_text()
    lines = [ln for p in out.glob("labels/*/*.txt") for ln in p.read_text().splitlines()]
    ids = {int(ln.split()[0]) for ln in lines}
    assert ids <= {0, 1} and ids
    with pytest.raises(DatasetError, match="nope"):
        generate(tmp_path / "x", train=1, val=1, classes=["circle", "nope"])
    with pytest.raises(DatasetError, match="imgsz"):
        generate(tmp_path / "y", train=1, val=1, imgsz=8)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_interrupted_run_leaves_nothing(tmp_path: Path) -> None:
    def stop(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "out", train=10, val=2, imgsz=64, progress=stop)
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_and_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "data"
    result = CliRunner().invoke(cli, ["data", "synth", str(out), "--train", "4", "--val", "3",
                                      "--imgsz", "64", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert len(list((out / "images" / "train").iterdir())) == 4
    first = (out / "synth.json").read_text()
    result = CliRunner().invoke(cli, ["data", "synth", str(out), "--train", "2", "--val", "1",
                                      "--imgsz", "64", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert len(list((out / "images" / "train").iterdir())) == 2
    assert first != (out / "synth.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_cli_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = run_cli("data", "synth", str(out), "--train", "2", "--val", "1", cwd=tmp_path)
    assert_one_line_error(proc, str(out), "--overwrite")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]
