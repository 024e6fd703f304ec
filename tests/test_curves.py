"""edge_sdk.curves: PR / F1-vs-confidence curves, best-F1 threshold and the confusion matrix on hand-built
cases with known answers, and its AP50 against pycocotools."""
from __future__ import annotations

import numpy as np
import pytest

from edge_sdk.coco_eval import evaluate
from edge_sdk.curves import BACKGROUND, conf_curves, confusion_matrix, match_by_class, views
from tests.coco_cases import pycocotools_stats, random_case

#: our 101-point AP50 vs pycocotools' (same interpolation, same greedy matching): equal up to float noise
AP50_TOL = 1e-6


def case(gt_boxes: list[tuple[int, int, list[float]]], dets: list[tuple[int, int, list[float], float]],
         n_images: int = 2, cats: tuple[int, ...] = (1, 2)) -> tuple[dict, list[dict]]:
    """GT from (image, category, xywh), detections from (image, category, xywh, score)."""
    gt = {"images": [{"id": i, "width": 100, "height": 100} for i in range(n_images)],
          "annotations": [{"id": k + 1, "image_id": img, "category_id": c, "bbox": b, "area": b[2] * b[3],
                           "iscrowd": 0} for k, (img, c, b) in enumerate(gt_boxes)],
          "categories": [{"id": c, "name": f"c{c}"} for c in cats]}
    return gt, [{"image_id": img, "category_id": c, "bbox": b, "score": s} for img, c, b, s in dets]


A, B, C = [10.0, 10.0, 20.0, 20.0], [50.0, 50.0, 30.0, 20.0], [5.0, 60.0, 15.0, 15.0]
LABELS = {1: "cat", 2: "dog"}


def perfect() -> tuple[dict, list[dict]]:
    return case([(0, 1, A), (0, 2, B), (1, 1, C)], [(0, 1, A, 0.9), (0, 2, B, 0.8), (1, 1, C, 0.7)])


def test_perfect_detections_have_p_r_f1_one_below_every_score():
    gt, dets = perfect()
    v = views(gt, dets, LABELS, deploy_conf=0.25)
    for curve in (v["curves"]["all"], *v["curves"]["classes"].values()):
        grid = np.array(v["curves"]["conf" if "pr" in curve else "class_conf"])
        below = grid <= 0.7
        assert all(x == 1.0 for x, b in zip(curve["p"], below, strict=True) if b)
        assert all(x == 1.0 for x, b in zip(curve["r"], below, strict=True) if b)
        assert curve["ap50"] == 1.0 and curve["best_f1"] == 1.0
    assert v["curves"]["map50"] == 1.0
    overall = v["curves"]["all"]
    assert overall["p"][-1] is None and overall["r"][-1] == 0.0  # no detection at conf 1: precision undefined
    assert 0.0 <= v["best_f1_conf"] <= 0.7 and v["best_f1"] == 1.0
    m = np.array(v["confusion"]["matrix"])
    assert v["confusion"]["labels"] == ["cat", "dog", BACKGROUND]
    assert m.tolist() == [[2, 0, 0], [0, 1, 0], [0, 0, 0]]


def test_best_f1_sits_between_the_false_positives_and_the_true_ones():
    gt, dets = case([(0, 1, A), (0, 1, B), (1, 1, C)],
                    [(0, 1, A, 0.9), (0, 1, B, 0.85), (1, 1, C, 0.8),
                     (1, 1, [70.0, 5.0, 10.0, 10.0], 0.3), (1, 1, [80.0, 80.0, 10.0, 10.0], 0.2)], cats=(1,))
    v = views(gt, dets, {1: "cat"}, deploy_conf=0.25)
    assert v["best_f1"] == 1.0 and 0.3 < v["best_f1_conf"] <= 0.8
    p, r, f1 = (v["curves"]["all"][k] for k in ("p", "r", "f1"))
    assert p[0] == pytest.approx(3 / 5) and r[0] == 1.0 and f1[0] == pytest.approx(0.75)
    assert p[25] == pytest.approx(3 / 4)  # conf 0.25: the 0.3 false positive still counts
    assert all(0.0 <= x <= 1.0 for x in f1)


def test_false_positive_and_missed_object_land_in_background_column_and_row():
    gt, dets = case([(0, 1, A), (0, 2, B)], [(0, 1, A, 0.9), (1, 2, C, 0.6)])
    m = np.array(confusion_matrix(gt, dets, conf=0.25))
    # rows predicted (cat, dog, background), columns true
    assert m[0, 0] == 1  # the cat found
    assert m[1, 2] == 1  # the dog detection on image 1 matches nothing: a false detection, background column
    assert m[2, 1] == 1  # the dog on image 0 was missed: background row
    assert m.sum() == 3


def test_class_confusion_lands_off_diagonal_and_is_not_also_a_miss():
    gt, dets = case([(0, 1, A), (0, 2, B)], [(0, 2, A, 0.9), (0, 2, B, 0.8)])
    m = np.array(confusion_matrix(gt, dets, conf=0.25))
    assert m.tolist() == [[0, 0, 0], [1, 1, 0], [0, 0, 0]]  # a cat predicted as dog: row dog, column cat


def test_confusion_uses_the_deploy_threshold_and_iou_half():
    shifted = [A[0] + 12.0, A[1], A[2], A[3]]  # IoU 8/32 = 0.25 with A
    gt, dets = case([(0, 1, A)], [(0, 1, A, 0.2), (0, 1, shifted, 0.9)])
    m = np.array(confusion_matrix(gt, dets, conf=0.25))
    assert m.tolist() == [[0, 0, 1], [0, 0, 0], [1, 0, 0]]  # the 0.2 hit is below conf; the shifted one misses


def test_crowd_matches_are_ignored_and_crowds_are_not_objects():
    gt, dets = case([(0, 1, A), (0, 1, B)], [(0, 1, A, 0.9), (0, 1, B, 0.8)], cats=(1,))
    gt["annotations"][1]["iscrowd"] = 1
    m = match_by_class(gt, dets)[1]
    assert m.n_gt == 1 and m.tp.tolist() == [True] and len(m.scores) == 1
    assert np.array(confusion_matrix(gt, dets, conf=0.25)).tolist() == [[1, 0], [0, 0]]


def test_conf_curves_are_monotone_in_recall_and_bounded():
    gt, dets = random_case(3)
    for m in match_by_class(gt, dets).values():
        p, r, f1 = conf_curves(m)
        assert np.all(np.diff(r) <= 1e-12) and np.all((r >= 0) & (r <= 1)) and np.all((f1 >= 0) & (f1 <= 1))
        assert np.all(np.isnan(p) | ((p >= 0) & (p <= 1)))


@pytest.mark.parametrize("seed", [0, 1, 2, 7])
def test_ap50_matches_pycocotools(seed):
    gt, dets = random_case(seed)
    v = views(gt, dets, {}, deploy_conf=0.25)
    coco_ap50 = float(pycocotools_stats(gt, dets)[1])
    assert v["curves"]["map50"] == pytest.approx(coco_ap50, abs=AP50_TOL + 5e-5)  # map50 is rounded to 4 places


def test_evaluate_carries_the_views_and_json_stays_small():
    gt, dets = random_case(1)
    result = evaluate(gt, dets, deploy_conf=0.25, names={1: "a", 5: "b", 90: "c"})
    assert result.curves is not None and result.confusion is not None
    assert set(result.curves["classes"]) <= {"a", "b", "c"}
    assert result.confusion["labels"] == ["a", "b", "c", BACKGROUND]
    assert result.best_f1_conf == result.curves["all"]["best_f1_conf"]
    diag = np.trace(np.array(result.confusion["matrix"])[:-1, :-1])
    assert diag == result.tp  # same IoU 0.5 matching at the deploy threshold as pycocotools' evalImgs
    assert set(result.views()) == {"best_f1_conf", "best_f1", "curves", "confusion"}
    assert evaluate(gt, dets, views=False).curves is None


def test_no_detections_and_no_gt():
    gt, _ = case([(0, 1, A)], [])
    v = views(gt, [], LABELS, deploy_conf=0.25)
    assert v["best_f1"] == 0.0 and v["curves"]["classes"]["cat"]["ap50"] == 0.0
    assert np.array(v["confusion"]["matrix"]).tolist() == [[0, 0, 0], [0, 0, 0], [1, 0, 0]]
    empty, dets = case([], [(0, 2, B, 0.5)])
    v = views(empty, dets, LABELS, deploy_conf=0.25)
    assert v["curves"]["classes"] == {} and v["curves"]["map50"] is None
    assert np.array(v["confusion"]["matrix"]).tolist() == [[0, 0, 0], [0, 0, 1], [0, 0, 0]]


def test_val_prints_best_f1_and_matrix_and_writes_plots(small_model, small_data, tmp_path):
    from bench.report import plots
    from tests.conftest import run_cli

    out = tmp_path / "plots"
    args = ["val", "--model", str(small_model), "--data", str(small_data), "--conf", "0.01"]
    result = run_cli(*args, *(["--plots", str(out)] if plots.available() else []))
    assert result.returncode == 0, result.stderr
    assert "Best F1 (IoU 0.5, all classes pooled):" in result.stdout
    assert "Confusion matrix at conf >= 0.01, IoU 0.5" in result.stdout
    assert "  background " in result.stdout
    if plots.available():
        assert sorted(p.name for p in out.iterdir()) == ["F1_curve.png", "PR_curve.png", "confusion_matrix.png"]


def test_val_plots_without_matplotlib_is_one_line(monkeypatch, tmp_path):
    from click.testing import CliRunner

    import bench.commands.val_cmd as val_cmd
    from runtimes.errors import InputError

    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "matplotlib" else object())
    with pytest.raises(InputError, match=r"--plots: plots need matplotlib.*edgebench\[report\]"):
        val_cmd._require_matplotlib()
    result = CliRunner().invoke(val_cmd.command, ["--model", "x.onnx", "--data", "d", "--plots", str(tmp_path)])
    assert isinstance(result.exception, InputError)
