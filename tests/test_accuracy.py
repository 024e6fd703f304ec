"""COCO stats equal pycocotools (both engines); P/R/F1 and per-class AP on hand-built cases."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from coco_cases import pycocotools_stats, random_case

from edge_sdk.coco_eval import STAT_KEYS, coco_stats, evaluate, format_accuracy
from runtimes.errors import DatasetError, ReportError


def _engines() -> list:
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return ["pycocotools", pytest.param("faster", marks=pytest.mark.skip(reason="faster-coco-eval missing"))]
    return ["pycocotools", "faster"]


def _as_array(stats: dict[str, float]) -> np.ndarray:
    assert list(stats) == list(STAT_KEYS)
    return np.array([stats[k] for k in STAT_KEYS])


def _gt(boxes: list[tuple[int, list[float], int]], n_images: int = 1, cats=(1, 5, 90)) -> dict:
    """GT on images 1..n_images from (image_id, bbox, category_id) tuples."""
    anns = [{"id": i + 1, "image_id": img, "category_id": cat, "bbox": box, "area": box[2] * box[3],
             "iscrowd": 0} for i, (img, box, cat) in enumerate(boxes)]
    return {"images": [{"id": i + 1} for i in range(n_images)], "annotations": anns,
            "categories": [{"id": c, "name": f"c{c}"} for c in cats]}


def _det(img: int, box: list[float], cat: int, score: float) -> dict:
    return {"image_id": img, "category_id": cat, "bbox": box, "score": score}


@pytest.mark.parametrize("engine", _engines())
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_stats_equal_pycocotools(seed: int, engine: str) -> None:
    gt, dt = random_case(seed)
    assert any(a["iscrowd"] for a in gt["annotations"])
    assert max(np.bincount([d["image_id"] for d in dt])) > 100
    assert {img["id"] for img in gt["images"]} - {a["image_id"] for a in gt["annotations"]}  # empty images
    assert {img["id"] for img in gt["images"]} - {d["image_id"] for d in dt}  # images without dets
    ours = _as_array(coco_stats(gt, dt, engine))
    ref = pycocotools_stats(gt, dt)
    assert np.abs(ours - ref).max() <= 1e-6
    assert ref[0] > 0.01  # the case scores something


@pytest.mark.parametrize("engine", _engines())
def test_images_without_detections_and_area_without_gt(engine: str) -> None:
    big = [[10.0, 10.0, 200.0, 150.0], [300.0, 200.0, 120.0, 110.0]]
    gt = _gt([(1, big[0], 1), (2, big[1], 90)], n_images=4)
    dt = [_det(1, [12.0, 11.0, 198.0, 150.0], 1, 0.9), _det(3, [5, 5, 20, 20], 90, 0.8)]  # int box
    ours = _as_array(coco_stats(gt, dt, engine))
    ref = pycocotools_stats(gt, dt)
    assert np.abs(ours - ref).max() <= 1e-6
    assert ours[STAT_KEYS.index("APs")] == -1 and ours[STAT_KEYS.index("APl")] > 0


@pytest.mark.parametrize("engine", _engines())
def test_empty_detections(engine: str) -> None:
    gt, _ = random_case(5)
    ours = _as_array(coco_stats(gt, [], engine))
    np.testing.assert_allclose(ours, pycocotools_stats(gt, []), atol=1e-6)
    only_large = _gt([(1, [0.0, 0.0, 300.0, 300.0], 5)])
    stats = coco_stats(only_large, [], engine)
    assert stats["AP"] == 0 and stats["AR100"] == 0 and stats["APs"] == -1 and stats["ARm"] == -1
    np.testing.assert_allclose(_as_array(stats), pycocotools_stats(only_large, []), atol=1e-6)


def test_engines_agree_and_auto(tmp_path) -> None:
    gt, dt = random_case(7)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    from_files = coco_stats(tmp_path / "gt.json", str(tmp_path / "dt.json"), "auto")
    assert from_files == pytest.approx(coco_stats(gt, dt, "pycocotools"), abs=1e-6)


def test_inputs_not_mutated_and_numpy_boxes_accepted(capfd) -> None:
    gt, dt = random_case(8)
    gt_before, dt_before = copy.deepcopy(gt), copy.deepcopy(dt)
    stats = coco_stats(gt, dt, "pycocotools")
    evaluate(gt, dt)
    assert gt == gt_before and dt == dt_before
    np_dt = [{**d, "bbox": np.asarray(d["bbox"], np.float32).astype(np.float64), "image_id": np.int64(d["image_id"])}
             for d in dt]
    assert coco_stats(gt, np_dt, "pycocotools") == pytest.approx(stats, abs=1e-9)
    assert capfd.readouterr().out == ""  # the COCO libraries' chatter is swallowed


def test_precision_recall_f1_hand_built() -> None:
    # 3 GT; 2 correct above conf, 1 false positive above conf, 1 correct below conf (the third GT)
    boxes = [[0.0, 0.0, 50.0, 50.0], [100.0, 100.0, 40.0, 60.0], [200.0, 50.0, 80.0, 30.0]]
    gt = _gt([(1, boxes[0], 1), (1, boxes[1], 5), (2, boxes[2], 1)], n_images=2)
    dt = [_det(1, [1.0, 1.0, 50.0, 50.0], 1, 0.9), _det(1, [100.0, 101.0, 40.0, 60.0], 5, 0.6),
          _det(2, [400.0, 300.0, 30.0, 30.0], 1, 0.7), _det(2, boxes[2], 1, 0.1)]
    r = evaluate(gt, dt, deploy_conf=0.25)
    assert (r.tp, r.fp, r.fn) == (2, 1, 1)
    assert r.precision == pytest.approx(2 / 3) and r.recall == pytest.approx(2 / 3)
    assert r.f1 == pytest.approx(2 / 3)
    low = evaluate(gt, dt, deploy_conf=0.05)
    assert (low.tp, low.fp, low.fn) == (3, 1, 0) and low.recall == 1.0
    none = evaluate(gt, dt, deploy_conf=0.95)
    assert (none.precision, none.recall, none.f1, none.fn) == (0.0, 0.0, 0.0, 3)
    assert r.num_images == 2 and r.num_detections == 4 and r.deploy_conf == 0.25


def test_precision_recall_crowd_and_wrong_class() -> None:
    gt = _gt([(1, [0.0, 0.0, 50.0, 50.0], 1), (1, [200.0, 200.0, 100.0, 100.0], 1)])
    gt["annotations"][1]["iscrowd"] = 1
    dt = [_det(1, [0.0, 0.0, 50.0, 50.0], 1, 0.9),      # TP
          _det(1, [210.0, 210.0, 40.0, 40.0], 1, 0.8),  # inside the crowd box: ignored
          _det(1, [0.0, 0.0, 50.0, 50.0], 5, 0.8)]      # right box, wrong class: FP
    r = evaluate(gt, dt)
    assert (r.tp, r.fp, r.fn) == (1, 1, 0)
    assert r.precision == 0.5 and r.recall == 1.0


def test_precision_recall_counts_more_than_100_detections_per_image() -> None:
    boxes = [[float(x * 30), float(y * 30), 20.0, 20.0] for x in range(15) for y in range(10)]
    gt = _gt([(1, b, 1) for b in boxes])
    r = evaluate(gt, [_det(1, b, 1, 0.5 + i / 1000) for i, b in enumerate(boxes)])
    assert (r.tp, r.fp, r.fn) == (150, 0, 0)  # no 100-per-image cap on P/R
    assert r.stats["AR100"] == pytest.approx(100 / 150)  # while COCO's stats keep theirs


@pytest.mark.parametrize("engine", _engines())
def test_per_class_ap(engine: str) -> None:
    gt = _gt([(1, [0.0, 0.0, 50.0, 50.0], 1), (1, [100.0, 100.0, 60.0, 60.0], 1),
              (2, [10.0, 10.0, 80.0, 80.0], 90)], n_images=2)
    dt = [_det(1, [0.0, 0.0, 50.0, 50.0], 1, 0.9), _det(1, [100.0, 100.0, 60.0, 60.0], 1, 0.8),
          _det(2, [300.0, 300.0, 80.0, 80.0], 90, 0.9)]  # class 90 detected in the wrong place
    r = evaluate(gt, dt, names={1: "person", 5: "car"}, engine=engine)
    assert r.per_class_ap == {"person": pytest.approx(1.0), "c90": 0.0}  # class 5 has no GT: absent
    assert r.stats["AP"] == pytest.approx(0.5)
    assert r.engine == engine


@pytest.mark.parametrize("engine", _engines())
def test_per_class_ap_averages_to_ap(engine: str) -> None:
    gt, dt = random_case(4)
    r = evaluate(gt, dt, engine=engine)
    assert set(r.per_class_ap) == {"class1", "class5", "class90"}
    assert np.mean(list(r.per_class_ap.values())) == pytest.approx(r.stats["AP"], abs=1e-9)
    d = r.to_dict()
    assert json.loads(json.dumps(d))["stats"] == r.stats and d["per_class_ap"] == r.per_class_ap
    text = format_accuracy(r)
    assert "AP50" in text and "class90" in text and f"P {r.precision:.4f}" in text


def test_unknown_image_id_is_one_line_error() -> None:
    gt, dt = random_case(0)
    dt = dt + [_det(999999, [0.0, 0.0, 5.0, 5.0], 1, 0.5)]
    with pytest.raises(ReportError, match=r"1 detection\(s\) have an image_id not in the ground truth.*999999"):
        coco_stats(gt, dt)


@pytest.mark.parametrize("mutate, message", [
    (lambda g: g.pop("images"), "no 'images' list"),
    (lambda g: g.pop("annotations"), "no 'annotations' list"),
    (lambda g: g["annotations"][0].pop("bbox"), r"annotations\[0\] lacks key\(s\) bbox"),
    (lambda g: g["annotations"][0].update(id=0), "positive integers"),
    (lambda g: g["annotations"][1].update(id=g["annotations"][0]["id"]), "not unique"),
    (lambda g: g["annotations"][0].update(category_id=77), "not in 'categories'"),
    (lambda g: g["annotations"][0].update(bbox=[1, 2, 3]), "expected"),
])
def test_bad_ground_truth(mutate, message: str) -> None:
    gt, dt = random_case(0)
    mutate(gt)
    with pytest.raises(DatasetError, match=message):
        coco_stats(gt, dt)


@pytest.mark.parametrize("bad, message", [
    ({"image_id": 100, "category_id": 1, "bbox": [0, 0, 1, 1]}, r"lacks key\(s\) score"),
    ({"image_id": 100, "category_id": 1, "bbox": [0, 0, 1], "score": 0.5}, "bbox"),
    ({"image_id": 100, "category_id": 1, "bbox": [0, 0, 1, 1], "score": "high"}, "score"),
    ({"image_id": "100", "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}, "integers"),
    ([1, 2, 3, 4], "not an object"),
])
def test_bad_detections(bad, message: str) -> None:
    gt, dt = random_case(0)
    with pytest.raises(ReportError, match=message):
        coco_stats(gt, dt + [bad])
    with pytest.raises(ReportError, match="expected a JSON list"):
        coco_stats(gt, {"annotations": dt})


def test_missing_faster_engine_or_unknown_engine() -> None:
    gt, dt = random_case(0)
    with pytest.raises(ValueError, match="unknown COCO engine"):
        coco_stats(gt, dt, "fastest")
