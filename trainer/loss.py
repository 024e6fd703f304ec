"""Detection loss: task-aligned assignment, BCE classification, CIoU box and DFL losses."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainer.assigner import TaskAlignedAssigner
from trainer.boxes import box_to_dist, ciou
from trainer.head import dist_to_box, make_anchors


@dataclass(frozen=True)
class LossGains:
    """Weights of the three loss terms."""

    box: float = 7.5
    cls: float = 0.5
    dfl: float = 1.5


def dfl_loss(logits: torch.Tensor, target: torch.Tensor, bins: torch.Tensor | None = None) -> torch.Tensor:
    """Distribution focal loss: cross-entropy to the two bins around each continuous target, weighted so that
    their expectation is the target.

    logits [K, 4, reg_max], target [K, 4] in [0, reg_max - 1) -> [K] (mean over the 4 sides). `bins`: the
    bins' values when they are not 0, 1, ..., reg_max - 1 (increasing; QAT's int8 DFL weights).
    """
    if bins is None:
        left = target.long()
        w_left = left + 1 - target
    else:
        left = (torch.searchsorted(bins.contiguous(), target.contiguous(), right=True) - 1).clamp(0, len(bins) - 2)
        lo, hi = bins[left], bins[left + 1]
        w_left = ((hi - target) / (hi - lo)).clamp(0.0, 1.0)

    def ce(idx: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.flatten(0, 1), idx.flatten(), reduction="none").view(target.shape)

    return (ce(left) * w_left + ce(left + 1) * (1 - w_left)).mean(-1)


def pack_targets(targets: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows (image_index, class, x1, y1, x2, y2) -> padded labels [B, M], boxes [B, M, 4], mask [B, M]."""
    device, targets = targets.device, targets.float()
    if targets.shape[0] == 0:
        return (torch.zeros(batch_size, 0, dtype=torch.long, device=device),
                torch.zeros(batch_size, 0, 4, device=device),
                torch.zeros(batch_size, 0, dtype=torch.bool, device=device))
    img = targets[:, 0].long()
    counts = torch.bincount(img, minlength=batch_size)
    m = int(counts.max())
    labels = torch.zeros(batch_size, m, dtype=torch.long, device=device)
    boxes = torch.zeros(batch_size, m, 4, device=device)
    mask = torch.zeros(batch_size, m, dtype=torch.bool, device=device)
    order = torch.argsort(img, stable=True)
    img, rows = img[order], targets[order]
    slot = torch.arange(len(img), device=device) - (torch.cumsum(counts, 0) - counts)[img]
    labels[img, slot] = rows[:, 1].long()
    boxes[img, slot] = rows[:, 2:6]
    mask[img, slot] = True
    return labels, boxes, mask


class DetectionLoss(nn.Module):
    """Loss of a YoloDetector's training output against targets in input pixels."""

    def __init__(self, nc: int, strides: tuple[int, ...] = (8, 16, 32), reg_max: int = 16,
                 gains: LossGains = LossGains(), topk: int = 10, alpha: float = 0.5, beta: float = 6.0) -> None:
        super().__init__()
        self.nc, self.strides, self.reg_max, self.gains = nc, strides, reg_max, gains
        self.assigner = TaskAlignedAssigner(topk, nc, alpha, beta)
        self.register_buffer("bins", torch.arange(reg_max, dtype=torch.float32), persistent=False)
        self.exact_bins = True  # False when QAT sets `bins` to the int8 DFL weights (set_bins)

    def set_bins(self, values: torch.Tensor) -> None:
        """Decode and fit the DFL with these bin values (the DFL weights as the int8 target computes them), so
        that training sees the distances the deployed model will output."""
        values = values.detach().reshape(-1).to(self.bins)
        if values.numel() != self.reg_max or bool((values[1:] <= values[:-1]).any()):
            raise ValueError(f"DFL bins must be {self.reg_max} increasing values, got {values.tolist()}")
        self.bins.copy_(values)
        self.exact_bins = bool(torch.equal(values, torch.arange(self.reg_max).to(values)))

    def forward(self, maps: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Total loss (scaled by batch size, for the backward pass) and the detached [box, cls, dfl].

        Always computed in float32, also under mixed-precision autocast.
        """
        with torch.autocast(maps[0].device.type, enabled=False):
            return self._loss([m.float() for m in maps], targets.float())

    def _loss(self, maps: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = maps[0].shape[0]
        flat = torch.cat([m.flatten(2) for m in maps], 2).transpose(1, 2)  # [B, N, no]
        box_logits, cls_logits = flat.split((4 * self.reg_max, self.nc), -1)
        shapes = [(int(m.shape[2]), int(m.shape[3])) for m in maps]
        points, stride = make_anchors(shapes, self.strides, flat.dtype, flat.device)
        dist = box_logits.view(b, -1, 4, self.reg_max).softmax(-1) @ self.bins.to(flat.dtype)
        pd_boxes = dist_to_box(dist, points, xywh=False)  # grid units
        labels, gt_boxes, gt_mask = pack_targets(targets, b)
        a = self.assigner(cls_logits.detach().sigmoid(), (pd_boxes.detach() * stride).to(gt_boxes.dtype),
                          points * stride, labels, gt_boxes, gt_mask)
        norm = a.scores.sum().clamp(min=1)
        loss_cls = F.binary_cross_entropy_with_logits(cls_logits, a.scores.to(cls_logits.dtype), reduction="sum") / norm
        loss_box, loss_dfl = self._box_losses(box_logits, pd_boxes, points, stride, a, norm)
        parts = torch.stack((loss_box * self.gains.box, loss_cls * self.gains.cls, loss_dfl * self.gains.dfl))
        return parts.sum() * b, parts.detach()

    def _box_losses(self, box_logits, pd_boxes, points, stride, a, norm):
        fg = a.fg
        if not fg.any():
            zero = box_logits.sum() * 0.0
            return zero, zero
        weight = a.scores.sum(-1)[fg]
        target = a.boxes / stride  # grid units
        iou = ciou(pd_boxes[fg], target[fg])
        loss_box = ((1.0 - iou) * weight).sum() / norm
        t_dist = box_to_dist(points.expand(fg.shape[0], -1, -1)[fg], target[fg], self.reg_max - 1)
        logits = box_logits[fg].view(-1, 4, self.reg_max)
        loss_dfl = (dfl_loss(logits, t_dist, None if self.exact_bins else self.bins) * weight).sum() / norm
        return loss_box, loss_dfl
