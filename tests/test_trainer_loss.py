"""Loss pieces: CIoU, DFL, the task-aligned assigner, target packing, and a short overfit."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="the trainer needs torch (pip install 'edgebench[train]')")

from trainer.assigner import TaskAlignedAssigner, centres_in_boxes  # noqa: E402
from trainer.boxes import box_iou, ciou  # noqa: E402
from trainer.head import make_anchors  # noqa: E402
from trainer.loss import DetectionLoss, dfl_loss, pack_targets  # noqa: E402
from trainer.model import build_model  # noqa: E402

T = torch.tensor


def test_ciou_is_iou_for_same_centre_same_aspect_boxes() -> None:
    a, b = T([10.0, 10.0, 30.0, 30.0]), T([15.0, 15.0, 25.0, 25.0])  # centre (20, 20), squares
    assert math.isclose(float(ciou(a, b)), 100 / 400, rel_tol=1e-5)
    assert math.isclose(float(1 - ciou(a, b)), 1 - float(box_iou(a, b)), rel_tol=1e-5)
    assert math.isclose(float(ciou(a, a)), 1.0, rel_tol=1e-5)


def test_ciou_penalises_centre_distance_and_aspect() -> None:
    a = T([0.0, 0.0, 10.0, 10.0])
    apart = T([20.0, 0.0, 30.0, 10.0])  # no overlap: IoU 0, centre term (20^2)/(30^2+10^2)
    assert math.isclose(float(ciou(a, apart)), -400 / 1000, rel_tol=1e-4)
    same_centre_wide = T([-5.0, 2.5, 15.0, 7.5])  # same centre, different aspect
    assert float(ciou(a, same_centre_wide)) < float(box_iou(a, same_centre_wide))


def test_dfl_loss_is_lowest_at_the_target_bins() -> None:
    target = T([[2.25, 0.0, 7.5, 14.0]])
    logits = torch.zeros(1, 4, 16, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=5.0)
    for _ in range(200):
        opt.zero_grad()
        dfl_loss(logits, target).sum().backward()
        opt.step()
    expected = (logits.softmax(-1) * torch.arange(16.0)).sum(-1)
    assert torch.allclose(expected, target, atol=0.05)


def _two_bin_logits(target: float, bins: torch.Tensor) -> torch.Tensor:
    """Logits of the distribution on the two bins around `target` whose expectation over `bins` is `target`."""
    left = int(torch.searchsorted(bins, torch.tensor(target), right=True)) - 1
    p = torch.full((16,), 1e-9)
    w = float((bins[left + 1] - target) / (bins[left + 1] - bins[left]))
    p[left], p[left + 1] = max(w, 1e-6), max(1 - w, 1e-6)
    return p.log().view(1, 1, 16).expand(1, 4, 16)


def test_dfl_loss_on_uneven_bins_prefers_the_distribution_that_decodes_to_the_target() -> None:
    """QAT's int8 DFL: bins on the 15/127 weight grid (1 -> 0.945, 2 -> 2.008, ...). On those bins the loss is
    lowest for the distribution whose expectation over them is the target; on 0, 1, 2, ... for the usual one."""
    grid, ints = torch.round(torch.arange(16.0) * 127 / 15) * 15 / 127, torch.arange(16.0)
    for value in (1.0, 3.0, 7.3, 12.97):
        target = torch.full((1, 4), value)
        on_grid, on_ints = _two_bin_logits(value, grid), _two_bin_logits(value, ints)
        assert float((on_grid.softmax(-1) * grid).sum(-1)[0, 0]) == pytest.approx(value, abs=1e-4)
        assert float(dfl_loss(on_grid, target, grid)) < float(dfl_loss(on_ints, target, grid)), value
        assert float(dfl_loss(on_ints, target)) < float(dfl_loss(on_grid, target)), value


def test_dfl_loss_with_the_integer_bins_is_the_default() -> None:
    logits, target = torch.randn(5, 4, 16), torch.rand(5, 4) * 14.9
    assert torch.allclose(dfl_loss(logits, target, torch.arange(16.0)), dfl_loss(logits, target), atol=1e-6)


def test_the_loss_refuses_bins_that_do_not_increase() -> None:
    loss = DetectionLoss(2)
    with pytest.raises(ValueError, match="increasing"):
        loss.set_bins(torch.zeros(16))
    loss.set_bins(torch.arange(16.0) * 1.01)
    assert not loss.exact_bins
    loss.set_bins(torch.arange(16.0))
    assert loss.exact_bins


def test_pack_targets_pads_per_image() -> None:
    rows = T([[1, 2, 0, 0, 5, 5], [0, 1, 1, 1, 2, 2], [1, 0, 3, 3, 4, 4]], dtype=torch.float32)
    labels, boxes, mask = pack_targets(rows, 3)
    assert labels.tolist() == [[1, 0], [2, 0], [0, 0]]
    assert mask.tolist() == [[True, False], [True, True], [False, False]]
    assert boxes[1, 1].tolist() == [3, 3, 4, 4]


def _grid(size: int = 64) -> torch.Tensor:
    points, strides = make_anchors([(size // 8, size // 8)], (8,), torch.float32, torch.device("cpu"))
    return points * strides


def test_assigner_picks_top_anchors_inside_the_gt() -> None:
    points = _grid()  # 8x8 cells of 8 px, centres at 4, 12, ..., 60
    gt = T([[[10.0, 10.0, 42.0, 34.0]]])
    n = len(points)
    pd_boxes = gt[0, 0].expand(1, n, 4).clone()  # every prediction equals the GT...
    pd_boxes[0, :, :2] += (points - points.mean(0)).abs() / 4  # ...shifted more the further out
    scores = torch.full((1, n, 2), 0.5)
    assigner = TaskAlignedAssigner(topk=5, num_classes=2)
    a = assigner(scores, pd_boxes, points, T([[1]]), gt, T([[True]]))
    inside = centres_in_boxes(points, gt)[0, 0]
    assert int(inside.sum()) == 4 * 3  # x centres 12..36, y centres 12..28
    assert int(a.fg.sum()) == 5 and bool((a.fg[0] <= inside).all())
    assert bool((a.scores[0, a.fg[0], 0] == 0).all()) and float(a.scores[0, a.fg[0], 1].max()) > 0
    assert torch.allclose(a.boxes[0, a.fg[0]], gt[0, 0].expand(5, 4))


def test_assigner_gives_a_shared_anchor_to_the_better_overlapping_gt() -> None:
    points = _grid()
    gts = T([[[0.0, 0.0, 64.0, 64.0], [8.0, 8.0, 24.0, 24.0]]])
    pd_boxes = T([8.0, 8.0, 24.0, 24.0]).expand(1, len(points), 4)
    a = TaskAlignedAssigner(topk=10, num_classes=2)(torch.full((1, len(points), 2), 0.5), pd_boxes, points,
                                                   T([[0, 1]]), gts, T([[True, True]]))
    small = centres_in_boxes(points, gts[:, 1:])[0, 0]
    assert bool((a.gt_index[0, small & a.fg[0]] == 1).all()) and bool((small & a.fg[0]).any())


def test_assigner_without_gt_assigns_nothing() -> None:
    points = _grid()
    a = TaskAlignedAssigner(num_classes=2)(torch.rand(2, len(points), 2), torch.rand(2, len(points), 4),
                                          points, torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0, 4),
                                          torch.zeros(2, 0, dtype=torch.bool))
    assert not bool(a.fg.any()) and float(a.scores.sum()) == 0


def test_loss_falls_when_overfitting_two_images() -> None:
    torch.manual_seed(0)
    model, loss_fn = build_model("n", 2).train(), DetectionLoss(2)
    images = torch.rand(2, 3, 64, 64)
    targets = T([[0, 0, 8, 8, 40, 30], [1, 1, 20, 16, 60, 60], [1, 0, 2, 30, 20, 62]])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    history = []
    for _ in range(30):
        opt.zero_grad()
        loss, parts = loss_fn(model(images), targets)
        loss.backward()
        opt.step()
        history.append(parts)
    first, last = history[0], torch.stack(history[-3:]).mean(0)
    assert float(last.sum()) < 0.5 * float(first.sum())
    assert bool((last < first).all()), (first, last)  # box, cls and dfl each fall


def test_loss_without_targets_only_has_classification() -> None:
    model, loss_fn = build_model("n", 2).train(), DetectionLoss(2)
    loss, parts = loss_fn(model(torch.rand(1, 3, 64, 64)), torch.zeros(0, 6))
    loss.backward()
    assert float(parts[0]) == 0 and float(parts[2]) == 0 and float(parts[1]) > 0
