"""Boxes stay on their objects through mosaic, affine, flip, letterbox and the training dataset."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch", reason="the trainer needs torch (pip install 'edgebench[train]')")

from trainer import augment as A  # noqa: E402
from trainer.augment import AugmentConfig  # noqa: E402

COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255)]  # one pure colour per class (BGR)
GREY = 114


def one_object(cls: int, size=(90, 120), rect=(20, 15, 70, 55)) -> A.Labelled:
    img = np.full((*size, 3), GREY, np.uint8)
    x1, y1, x2, y2 = rect
    cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), COLOURS[cls], -1)
    return img, np.array([rect], np.float32), np.array([cls], np.int64)


def object_pixels(img: np.ndarray, cls: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels close to the class colour (interpolated edges are excluded)."""
    diff = np.abs(img.astype(int) - np.array(COLOURS[cls])).sum(2)
    return np.nonzero(diff < 40)


def assert_boxes_on_objects(sample: A.Labelled, tol: float = 1.5, max_cut: int = 0) -> int:
    """Each class's coloured pixels lie inside its boxes, and each box fits its pixels tightly.

    An object cut by the image border to under 10% of its area loses its box (as intended); up to
    `max_cut` of its pixels may then stay unlabelled.
    """
    img, boxes, cls = sample
    for c in range(len(COLOURS)):
        ys, xs = object_pixels(img, c)
        mine = boxes[cls == c]
        covered = np.zeros(len(xs), bool)
        for x1, y1, x2, y2 in mine:
            inside = (xs >= x1 - tol) & (xs + 1 <= x2 + tol) & (ys >= y1 - tol) & (ys + 1 <= y2 + tol)
            covered |= inside
            if x2 - x1 >= 6 and y2 - y1 >= 6:  # big enough to hold pure-colour pixels: must be tight
                assert inside.any(), f"class {c}: box {(x1, y1, x2, y2)} holds no object pixels"
                bx, by = xs[inside], ys[inside]
                assert bx.min() <= x1 + 2 * tol and bx.max() + 1 >= x2 - 2 * tol, (c, bx.min(), bx.max(), x1, x2)
                assert by.min() <= y1 + 2 * tol and by.max() + 1 >= y2 - 2 * tol, (c, by.min(), by.max(), y1, y2)
        if not covered.all():  # allowed only for an object cut by the border to a small sliver
            ux, uy = xs[~covered], ys[~covered]
            h, w = img.shape[:2]
            at_border = ux.min() <= 1 or uy.min() <= 1 or ux.max() >= w - 2 or uy.max() >= h - 2
            assert at_border and len(ux) < max_cut, f"class {c}: {len(ux)} object pixels outside boxes {mine}"
    return len(boxes)


def test_hflip_moves_boxes_with_pixels() -> None:
    assert assert_boxes_on_objects(A.hflip(one_object(1))) == 1


def test_letterbox_shifts_boxes() -> None:
    img, boxes, cls = one_object(2)
    img, boxes = A.resize_long_side(img, boxes, 160)
    img, boxes = A.letterbox(img, boxes, 160)
    assert img.shape == (160, 160, 3)
    assert assert_boxes_on_objects((img, boxes, cls)) == 1


@pytest.mark.parametrize("seed", range(6))
def test_random_affine_keeps_boxes_on_objects(seed: int) -> None:
    rng = np.random.default_rng(seed)
    img, boxes, cls = one_object(0)
    img, boxes = A.letterbox(img, boxes, 128)[0], A.letterbox(img, boxes, 128)[1]
    out = A.random_affine((img, boxes, cls), 128, AugmentConfig(scale=0.5, translate=0.2), rng)
    assert out[0].shape == (128, 128, 3)
    assert assert_boxes_on_objects(out) == len(out[2])


@pytest.mark.parametrize("seed", range(8))
def test_mosaic_then_affine_keeps_every_box_on_its_object(seed: int) -> None:
    rng = np.random.default_rng(seed)
    parts = [A.resize_long_side(*one_object(c, rect=(10 + 5 * c, 12, 60 + 10 * c, 70))[:2], 96) for c in range(4)]
    parts = [(img, boxes, np.array([c])) for c, (img, boxes) in enumerate(parts)]
    canvas = A.mosaic4(parts, 96, rng)
    assert canvas[0].shape == (192, 192, 3)
    assert assert_boxes_on_objects(canvas) == 4
    out = A.random_affine(canvas, 96, AugmentConfig(), rng)
    assert out[0].shape == (96, 96, 3)
    assert assert_boxes_on_objects(out, max_cut=700) == len(out[2])


def test_boxes_cut_away_by_affine_are_dropped() -> None:
    img, boxes, cls = one_object(0, size=(100, 100), rect=(0, 0, 20, 20))
    cfg = AugmentConfig(scale=0.0, translate=0.0)  # identity placement: centre stays at centre
    out = A.random_affine((img, boxes, cls), 100, cfg, np.random.default_rng(0))
    assert len(out[2]) == 1
    shifted = A.transform_boxes(boxes, np.array([[1.0, 0, -30], [0, 1, 0]]), (100, 100))
    assert not A.keep_boxes(boxes, shifted, 1.0, 2.0)[0]  # only 0 px of width left


def test_mixup_keeps_both_label_sets() -> None:
    a, b = one_object(0), one_object(1, rect=(60, 40, 100, 80))
    img, boxes, cls = A.mixup(a, b, np.random.default_rng(0))
    assert img.shape == a[0].shape and cls.tolist() == [0, 1] and len(boxes) == 2


def test_hsv_changes_colour_not_geometry() -> None:
    img, _, _ = one_object(0)
    out = A.hsv(img, AugmentConfig(hsv_h=0.0, hsv_s=0.0, hsv_v=0.5), np.random.default_rng(1))
    changed = np.abs(out.astype(int) - img.astype(int)).sum(2) > 0
    assert out.shape == img.shape and changed.any()
    assert (out[img.sum(2) == 3 * GREY] == out[0, 0]).all()  # background stays uniform


def test_training_dataset_samples_keep_boxes_on_objects(tmp_path: Path) -> None:
    from edge_sdk.datasets import Sample
    from trainer.data import TrainDataset

    samples = []
    for c in range(4):
        img, boxes, cls = one_object(c, rect=(15 + 4 * c, 10, 65, 60 + 5 * c))
        path = tmp_path / f"{c}.png"
        cv2.imwrite(str(path), img)
        samples.append(Sample(c, path, img.shape[:2], boxes, cls, np.zeros(1, bool)))
    cfg = AugmentConfig(hsv_h=0, hsv_s=0, hsv_v=0)
    ds = TrainDataset(samples, 96, cfg, augment=True, seed=3)
    for epoch, mosaic in ((0, True), (1, False)):
        ds.set_epoch(epoch, mosaic)
        for i in range(len(ds)):
            chw, target = ds[i]
            bgr = chw.numpy().transpose(1, 2, 0)[:, :, ::-1]
            t = target.numpy()
            assert bgr.shape == (96, 96, 3)
            assert assert_boxes_on_objects((bgr, t[:, 1:], t[:, 0].astype(int)), max_cut=700) == len(t)
            if not mosaic:
                assert set(t[:, 0].astype(int)) <= {i}
    a, b = ds[2], ds[2]
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()  # same (seed, epoch, index) -> same sample
