"""Data set readers: YOLO data.yaml + txt labels, COCO json, validation, to_coco, dispatch."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edge_sdk.datasets import LabelIssue, label_path, load_coco, load_dataset, load_yolo
from runtimes.errors import DatasetError


def write_image(path: Path, h: int, w: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((h, w, 3), 127, np.uint8))
    return path


def write_yaml(path: Path, config: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def yolo_set(root: Path, labels: dict[str, str | None], size=(40, 60), names=None, **extra) -> Path:
    """Standard Ultralytics layout with val images (h, w = size) and their label text."""
    for stem, text in labels.items():
        write_image(root / "images" / "val" / f"{stem}.jpg", *size)
        if text is not None:
            lbl = root / "labels" / "val" / f"{stem}.txt"
            lbl.parent.mkdir(parents=True, exist_ok=True)
            lbl.write_text(text)
    config = {"path": ".", "train": "images/val", "val": "images/val",
              "names": names if names is not None else ["cat", "dog", "bird"], **extra}
    return write_yaml(root / "data.yaml", config)


# ---------------------------------------------------------------- YOLO: good data


def test_yolo_folder_split_converts_to_pixels(tmp_path):
    data = yolo_set(tmp_path, {"a": "0 0.5 0.5 0.5 0.25\n2 0.25 0.75 0.1 0.2\n", "b": None})
    ds = load_yolo(data)
    assert ds.format == "yolo" and ds.split == "val" and len(ds) == 2 and ds.issues == []
    assert ds.names == {0: "cat", 1: "dog", 2: "bird"} and ds.category_ids == {0: 0, 1: 1, 2: 2}
    a, b = ds.samples
    assert a.image_path == tmp_path / "images/val/a.jpg" and a.size == (40, 60)
    assert a.label_path == tmp_path / "labels/val/a.txt"
    np.testing.assert_allclose(a.boxes_xyxy, [[15, 15, 45, 25], [12, 26, 18, 34]], atol=1e-4)
    assert a.boxes_xyxy.dtype == np.float32 and a.class_ids.tolist() == [0, 2]
    assert a.class_ids.dtype == np.int64 and a.iscrowd.tolist() == [False, False]
    assert b.boxes_xyxy.shape == (0, 4) and len(b) == 0  # no label file: no objects
    assert [s.image_id for s in ds.samples] == [1, 2]
    assert ds.image_paths() == [a.image_path, b.image_path]


def test_yolo_relative_path_and_dict_names(tmp_path):
    yolo_set(tmp_path / "sets" / "ds", {"a": "2 0.5 0.5 0.2 0.2\n"})
    data = write_yaml(tmp_path / "cfg" / "mine.yaml",
                      {"path": "../sets/ds", "val": "images/val", "nc": 2,
                       "names": {0: "person", 2: "car"}})
    ds = load_yolo(data)
    assert ds.root == tmp_path / "cfg" / "../sets/ds"
    assert ds.names == {0: "person", 2: "car"} and ds.samples[0].class_ids.tolist() == [2]


def test_label_file_with_bom_and_crlf(tmp_path):
    data = yolo_set(tmp_path, {"a": None})
    (tmp_path / "labels/val").mkdir(parents=True)
    (tmp_path / "labels/val/a.txt").write_bytes(b"\xef\xbb\xbf1 0.5 0.5 0.2 0.2\r\n\r\n")
    ds = load_yolo(data, strict=True)
    assert ds.samples[0].class_ids.tolist() == [1]


def test_yolo_without_path_key_uses_yaml_folder(tmp_path):
    yolo_set(tmp_path, {"a": "1 0.5 0.5 0.2 0.2\n"})
    config = yaml.safe_load((tmp_path / "data.yaml").read_text())
    del config["path"]
    ds = load_yolo(write_yaml(tmp_path / "data.yaml", config))
    assert ds.root == tmp_path and ds.samples[0].class_ids.tolist() == [1]


def test_yolo_txt_list_split_reports_missing_entries(tmp_path):
    yolo_set(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n", "b": "1 0.5 0.5 0.2 0.2\n", "c": None})
    (tmp_path / "val.txt").write_text("./images/val/b.jpg\nimages/val/a.jpg\n\nimages/val/zz.jpg\n")
    config = yaml.safe_load((tmp_path / "data.yaml").read_text())
    ds = load_yolo(write_yaml(tmp_path / "data.yaml", {**config, "val": "val.txt"}))
    assert [s.image_path.name for s in ds.samples] == ["b.jpg", "a.jpg"]
    assert [s.class_ids.tolist() for s in ds.samples] == [[1], [0]]
    [issue] = ds.issues
    assert issue.file == tmp_path / "val.txt" and issue.line == 4 and "zz.jpg" in issue.message


def test_yolo_split_as_list_and_test_split(tmp_path):
    yolo_set(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n"})
    write_image(tmp_path / "images" / "extra" / "e.png", 10, 20)
    config = yaml.safe_load((tmp_path / "data.yaml").read_text())
    data = write_yaml(tmp_path / "data.yaml", {**config, "test": ["images/val", "images/extra"]})
    ds = load_yolo(data, split="test")
    assert [s.image_path.name for s in ds.samples] == ["a.jpg", "e.png"]
    assert ds.samples[1].size == (10, 20) and ds.split == "test"


def test_polygon_label_becomes_its_extent(tmp_path):
    data = yolo_set(tmp_path, {"a": "1 0.1 0.2 0.5 0.1 0.3 0.6\n"}, size=(100, 200))
    boxes = load_yolo(data).samples[0].boxes_xyxy
    np.testing.assert_allclose(boxes, [[20, 10, 100, 60]], atol=1e-4)


def test_small_overshoot_is_clipped_not_reported(tmp_path):
    data = yolo_set(tmp_path, {"a": "0 0.5 0.5 1.0008 0.5\n"}, size=(10, 10))
    ds = load_yolo(data, strict=True)
    np.testing.assert_allclose(ds.samples[0].boxes_xyxy, [[0, 2.5, 10, 7.5]], atol=1e-4)


def test_label_path_replaces_last_images_component():
    assert label_path(Path("/d/images/x/images/val/a.jpg")) == Path("/d/images/x/labels/val/a.txt")
    assert label_path(Path("/d/pics/a.png")) == Path("/d/pics/a.txt")


# ---------------------------------------------------------------- YOLO: bad labels

BAD_LINES = [
    ("0 0.5 0.5 0.2", "expected 5 columns"),
    ("0 0.5 0.5 0.2 0.2 0.9", "expected 5 columns"),
    ("0 0.5 abc 0.2 0.2", "'abc' is not a number"),
    ("0 nan 0.5 0.2 0.2", "not a finite number"),
    ("1.5 0.5 0.5 0.2 0.2", "not an integer"),
    ("7 0.5 0.5 0.2 0.2", "unknown class id 7"),
    ("-1 0.5 0.5 0.2 0.2", "unknown class id -1"),
    ("0 1.2 0.5 0.2 0.2", "out of range"),
    ("0 0.5 0.5 1.5 0.2", "out of range"),
    ("0 0.95 0.5 0.2 0.2", "extends outside the image"),
    ("0 0.5 0.02 0.2 0.2", "extends outside the image"),
    ("0 0.5 0.5 0 0.2", "zero or negative box size"),
    ("0 0.5 0.5 0.2 -0.1", "zero or negative box size"),
    ("0 0.1 0.1 0.1 0.1 0.1 0.1", "zero or negative box size"),
]


@pytest.mark.parametrize("line, message", BAD_LINES)
def test_bad_label_line_is_reported_with_file_and_line(tmp_path, line, message):
    text = f"0 0.5 0.5 0.2 0.2\n\n{line}\n1 0.5 0.5 0.4 0.4\n"
    data = yolo_set(tmp_path, {"a": text, "b": "2 0.5 0.5 0.2 0.2\n"})
    ds = load_yolo(data)
    [issue] = ds.issues
    assert issue.file == tmp_path / "labels/val/a.txt" and issue.line == 3
    assert message in issue.message
    assert ds.samples[0].class_ids.tolist() == [0, 1]  # the bad line is skipped, the rest kept
    assert ds.samples[1].class_ids.tolist() == [2]
    with pytest.raises(DatasetError) as err:
        load_yolo(data, strict=True)
    assert str(err.value) == str(issue) == f"{tmp_path / 'labels/val/a.txt'}:3: {issue.message}"


def test_strict_names_first_issue_and_counts_the_rest(tmp_path):
    data = yolo_set(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n9 0.5 0.5 0.2 0.2\n",
                               "b": "0 2 0.5 0.2 0.2\n0 0.5 0.5 0 0\n"})
    with pytest.raises(DatasetError) as err:
        load_yolo(data, strict=True)
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'labels/val/a.txt'}:2: unknown class id 9")
    assert msg.endswith("(and 2 more issues)") and "\n" not in msg
    assert [(i.file.name, i.line) for i in load_yolo(data).issues] == [
        ("a.txt", 2), ("b.txt", 1), ("b.txt", 2)]


def test_lenient_load_logs_a_summary(tmp_path, caplog):
    data = yolo_set(tmp_path, {"a": "5 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n"})
    with caplog.at_level(logging.WARNING, logger="edgebench.data"):
        ds = load_yolo(data)
    [record] = [r for r in caplog.records if r.name == "edgebench.data"]
    assert "2 bad" in record.getMessage() and "unknown class id 5" in record.getMessage()
    assert len(ds.issues) == 2


@pytest.mark.parametrize("content", [b"this is not a jpeg", b""])
def test_unreadable_image_is_skipped_and_reported(tmp_path, content):
    data = yolo_set(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n", "c": "1 0.5 0.5 0.2 0.2\n"})
    bad = tmp_path / "images" / "val" / "b.jpg"
    bad.write_bytes(content)
    ds = load_yolo(data)
    assert [(s.image_path.name, s.image_id) for s in ds.samples] == [("a.jpg", 1), ("c.jpg", 3)]
    [issue] = ds.issues
    assert issue.file == bad and issue.line is None and "cannot decode image" in issue.message
    with pytest.raises(DatasetError, match="b.jpg: cannot decode image"):
        load_yolo(data, strict=True)


# ---------------------------------------------------------------- YOLO: bad data.yaml


def _config_error(tmp_path, config: dict | str, split: str = "val") -> str:
    yolo_set(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n"})
    path = tmp_path / "data.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    with pytest.raises(DatasetError) as err:
        load_yolo(path, split=split)
    msg = str(err.value)
    assert "\n" not in msg and "data.yaml" in msg
    return msg


BASE = {"path": ".", "val": "images/val", "names": ["cat", "dog"]}


@pytest.mark.parametrize("config, split, expected", [
    ("names: [a, b\nval: x\n", "val", "invalid YAML at line"),
    ("- just\n- a list\n", "val", "expected a mapping"),
    ({**BASE, "val": "images/nope"}, "val", "'val' path not found"),
    (BASE, "test", "no 'test' split"),
    ({**BASE, "nc": 3}, "val", "'nc' is 3 but 'names' has 2"),
    ({"path": ".", "val": "images/val"}, "val", "missing 'names'"),
    ({**BASE, "names": {"zero": "a"}}, "val", "not a class index"),
    ({**BASE, "path": "elsewhere"}, "val", "'path' folder not found"),
])
def test_bad_data_yaml_is_one_clear_line(tmp_path, config, split, expected):
    assert expected in _config_error(tmp_path, config, split)


def test_missing_data_yaml(tmp_path):
    with pytest.raises(DatasetError, match="data set file not found: .*data.yaml"):
        load_yolo(tmp_path / "data.yaml")


def test_nc_alone_names_classes(tmp_path):
    yolo_set(tmp_path, {"a": "1 0.5 0.5 0.2 0.2\n"})
    ds = load_yolo(write_yaml(tmp_path / "data.yaml", {"val": "images/val", "nc": 2}))
    assert ds.names == {0: "class0", 1: "class1"}


# ---------------------------------------------------------------- COCO


def coco_set(root: Path, annotations: list[dict], images=None, json_name="val.json") -> Path:
    """Images a.jpg (40x60) and b.jpg (30x50) under root/images, categories 90, 1, 5."""
    images = images or [{"id": 7, "file_name": "a.jpg", "width": 60, "height": 40},
                        {"id": 3, "file_name": "b.jpg", "width": 50, "height": 30}]
    for img in images:
        write_image(root / "images" / img["file_name"], img["height"], img["width"])
    gt = {"images": images, "annotations": annotations,
          "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"},
                         {"id": 5, "name": "airplane"}]}
    path = root / json_name
    path.write_text(json.dumps(gt))
    return path


GOOD_ANNS = [
    {"id": 1, "image_id": 7, "category_id": 90, "bbox": [10, 5, 20, 10], "area": 150.0,
     "iscrowd": 0},
    {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 60, 40], "area": 2000.0,
     "iscrowd": 1},
    {"id": 3, "image_id": 3, "category_id": 5, "bbox": [1.5, 2.5, 3.25, 4.75], "iscrowd": 0},
]


def test_coco_noncontiguous_ids_and_crowd(tmp_path):
    ds = load_coco(coco_set(tmp_path, GOOD_ANNS))
    assert ds.format == "coco" and ds.issues == [] and ds.root == tmp_path / "images"
    assert ds.names == {0: "person", 1: "airplane", 2: "toothbrush"}
    assert ds.category_ids == {0: 1, 1: 5, 2: 90}
    a, b = ds.samples
    assert (a.image_id, a.size, a.image_path) == (7, (40, 60), tmp_path / "images/a.jpg")
    np.testing.assert_allclose(a.boxes_xyxy, [[10, 5, 30, 15], [0, 0, 60, 40]])
    assert a.class_ids.tolist() == [2, 0] and a.iscrowd.tolist() == [False, True]
    assert a.areas.tolist() == [150.0, 2000.0]
    assert b.class_ids.tolist() == [1] and b.areas.tolist() == [pytest.approx(3.25 * 4.75)]


def test_coco_to_coco_round_trip(tmp_path):
    path = coco_set(tmp_path, GOOD_ANNS)
    out = load_coco(path).to_coco()
    src = json.loads(path.read_text())
    assert sorted(c["id"] for c in out["categories"]) == [1, 5, 90]
    assert {c["id"]: c["name"] for c in out["categories"]} == {c["id"]: c["name"]
                                                               for c in src["categories"]}
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in out["images"]] == [
        (i["id"], i["file_name"], i["width"], i["height"]) for i in src["images"]]
    got = [(a["image_id"], a["category_id"], a["iscrowd"], a["area"]) for a in out["annotations"]]
    assert got == [(7, 90, 0, 150.0), (7, 1, 1, 2000.0), (3, 5, 0, pytest.approx(3.25 * 4.75))]
    for mine, theirs in zip(out["annotations"], src["annotations"], strict=False):
        np.testing.assert_allclose(mine["bbox"], theirs["bbox"], atol=1e-5)
    assert len({a["id"] for a in out["annotations"]}) == 3


def test_coco_file_name_relative_to_json_folder(tmp_path):
    images = [{"id": 1, "file_name": "images/val/a.jpg", "width": 60, "height": 40}]
    write_image(tmp_path / "images/val/a.jpg", 40, 60)
    gt = {"images": images, "annotations": [], "categories": [{"id": 1, "name": "x"}]}
    (tmp_path / "ann").mkdir()
    path = tmp_path / "ann" / "instances_val.json"
    path.write_text(json.dumps(gt))
    ds = load_coco(path)
    assert ds.samples[0].image_path == tmp_path / "images/val/a.jpg" and ds.issues == []
    assert load_coco(path, images_dir=tmp_path).samples[0].size == (40, 60)


BAD_ANNS = [
    ({"id": 11, "image_id": 7, "category_id": 2, "bbox": [1, 1, 5, 5]}, "unknown category id 2"),
    ({"id": 12, "image_id": 99, "category_id": 1, "bbox": [1, 1, 5, 5]}, "unknown image id 99"),
    ({"id": 13, "image_id": 7, "category_id": 1, "bbox": [1, 1, 0, 5]}, "zero or negative"),
    ({"id": 14, "image_id": 7, "category_id": 1, "bbox": [50, 1, 20, 5]}, "outside the 60x40"),
    ({"id": 15, "image_id": 7, "category_id": 1, "bbox": [1, 1, 5]}, "malformed bbox"),
    ({"id": 16, "image_id": 7, "category_id": 1, "bbox": [1, "a", 5, 5]}, "malformed bbox"),
]


@pytest.mark.parametrize("ann, message", BAD_ANNS)
def test_coco_bad_annotation(tmp_path, ann, message):
    path = coco_set(tmp_path, [*GOOD_ANNS, ann])
    ds = load_coco(path)
    [issue] = ds.issues
    assert issue.file == path and issue.line is None
    assert f"annotation id {ann['id']}" in issue.message and message in issue.message
    assert sum(len(s) for s in ds.samples) == 3
    with pytest.raises(DatasetError, match=f"val.json: annotation id {ann['id']}"):
        load_coco(path, strict=True)


def test_coco_missing_and_mis_sized_images(tmp_path):
    path = coco_set(tmp_path, GOOD_ANNS)
    (tmp_path / "images" / "b.jpg").unlink()
    write_image(tmp_path / "images" / "a.jpg", 41, 60)
    ds = load_coco(path)
    assert ds.samples == []
    assert sorted(i.message for i in ds.issues) == [
        "image is 60x41 but the json says 60x40", "image not found"]
    trusted = load_coco(path, check_images=False)  # json sizes, images not opened
    assert [s.size for s in trusted.samples] == [(40, 60), (30, 50)] and trusted.issues == []


def test_coco_structural_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{\"images\": [")
    with pytest.raises(DatasetError, match="bad.json: invalid JSON at line 1"):
        load_coco(bad)
    bad.write_text(json.dumps({"images": [], "categories": []}))
    with pytest.raises(DatasetError, match="bad.json: no 'categories'"):
        load_coco(bad)
    with pytest.raises(DatasetError, match="annotation file not found"):
        load_coco(tmp_path / "none.json")


# ---------------------------------------------------------------- to_coco, dispatch, issue text


def test_yolo_to_coco_round_trips_through_load_coco(tmp_path):
    data = yolo_set(tmp_path, {"a": "0 0.5 0.5 0.5 0.25\n2 0.25 0.75 0.1 0.2\n", "b": None},
                    names={0: "cat", 1: "dog", 2: "bird"})
    ds = load_yolo(data)
    gt = ds.to_coco()
    assert [(i["file_name"], i["width"], i["height"]) for i in gt["images"]] == [
        ("images/val/a.jpg", 60, 40), ("images/val/b.jpg", 60, 40)]
    np.testing.assert_allclose([a["bbox"] for a in gt["annotations"]],
                               [[15, 15, 30, 10], [12, 26, 6, 8]], atol=1e-4)
    np.testing.assert_allclose([a["area"] for a in gt["annotations"]], [300, 48], atol=1e-3)
    assert [a["category_id"] for a in gt["annotations"]] == [0, 2]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    back = load_coco(tmp_path / "gt.json", images_dir=tmp_path)
    assert back.names == ds.names and back.issues == []
    for mine, theirs in zip(ds.samples, back.samples, strict=False):
        assert (mine.image_id, mine.size, mine.image_path) == (theirs.image_id, theirs.size,
                                                                theirs.image_path)
        np.testing.assert_allclose(mine.boxes_xyxy, theirs.boxes_xyxy, atol=1e-4)
        assert mine.class_ids.tolist() == theirs.class_ids.tolist()


def test_to_coco_is_accepted_by_pycocotools(tmp_path):
    pycoco = pytest.importorskip("pycocotools.coco")
    coco = pycoco.COCO()
    coco.dataset = load_coco(coco_set(tmp_path, GOOD_ANNS)).to_coco()
    coco.createIndex()
    assert sorted(coco.getCatIds()) == [1, 5, 90] and len(coco.getAnnIds(imgIds=[7])) == 2


def test_load_dataset_dispatch(tmp_path):
    data = yolo_set(tmp_path / "y", {"a": "0 0.5 0.5 0.2 0.2\n"})
    coco = coco_set(tmp_path / "c", GOOD_ANNS)
    assert load_dataset(data).format == "yolo"
    assert load_dataset(tmp_path / "y").source == data
    assert load_dataset(coco).format == "coco" and len(load_dataset(coco)) == 2
    (tmp_path / "notes.txt").write_text("x")
    for bad, text in [(tmp_path / "notes.txt", "not a data set"), (tmp_path / "c", "no data.yaml"),
                      (tmp_path / "nothing", "data set not found")]:
        with pytest.raises(DatasetError, match=text) as err:
            load_dataset(bad)
        assert str(bad) in str(err.value)


def test_label_issue_text():
    assert str(LabelIssue(Path("l/a.txt"), 3, "bad")) == "l/a.txt:3: bad"
    assert str(LabelIssue("g.json", None, "annotation id 4: bad")) == "g.json: annotation id 4: bad"


def test_many_images_keep_order_and_ids(tmp_path):
    labels = {f"img{i:02d}": f"{i % 3} 0.5 0.5 0.2 0.2\n" for i in range(12)}
    data = yolo_set(tmp_path, labels, size=(16, 24))
    (tmp_path / "images" / "val" / "img05.jpg").write_bytes(b"garbage")
    ds = load_yolo(data)
    assert [s.image_id for s in ds.samples] == [i + 1 for i in range(12) if i != 5]
    assert [s.class_ids.tolist() for s in ds.samples] == [[i % 3] for i in range(12) if i != 5]
    assert all(s.size == (16, 24) for s in ds.samples)
    assert [i.file.name for i in ds.issues] == ["img05.jpg"]
