"""Task-aligned assigner (TOOD): pick, per ground truth, the top-k anchors by score^alpha * IoU^beta."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from trainer.boxes import ciou

EPS = 1e-9


@dataclass
class Assignment:
    """Per anchor: target class scores [B, N, C], target boxes [B, N, 4] (xyxy px), foreground mask [B, N]."""

    scores: torch.Tensor
    boxes: torch.Tensor
    fg: torch.Tensor
    gt_index: torch.Tensor


def centres_in_boxes(points: torch.Tensor, gt: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """[B, M, N] mask: anchor centre n lies strictly inside ground-truth box m."""
    p = points.view(1, 1, -1, 2)
    lt = p - gt[..., None, :2]
    rb = gt[..., None, 2:] - p
    return torch.cat((lt, rb), -1).amin(-1) > eps


class TaskAlignedAssigner(nn.Module):
    """Assign ground truths to anchors by the task-aligned metric; soft targets scaled by alignment."""

    def __init__(self, topk: int = 10, num_classes: int = 80, alpha: float = 0.5, beta: float = 6.0) -> None:
        super().__init__()
        self.topk, self.nc, self.alpha, self.beta = topk, num_classes, alpha, beta

    @torch.no_grad()
    def forward(self, pd_scores: torch.Tensor, pd_boxes: torch.Tensor, points: torch.Tensor,
                gt_labels: torch.Tensor, gt_boxes: torch.Tensor, gt_mask: torch.Tensor) -> Assignment:
        """pd_scores [B,N,C] (sigmoid), pd_boxes [B,N,4] and gt_boxes [B,M,4] xyxy px, points [N,2] px,
        gt_labels [B,M] int, gt_mask [B,M] bool (padding rows False)."""
        b, n, _ = pd_scores.shape
        if gt_boxes.shape[1] == 0:
            z = pd_scores.new_zeros
            return Assignment(z(pd_scores.shape), z(b, n, 4), z(b, n, dtype=torch.bool),
                              z(b, n, dtype=torch.long))
        inside = centres_in_boxes(points, gt_boxes) & gt_mask[..., None]
        metric, overlaps = self._metric(pd_scores, pd_boxes, gt_labels, gt_boxes, inside)
        pos = self._topk_mask(metric) & inside
        pos, gt_idx, fg = self._resolve_conflicts(pos, overlaps)
        return self._targets(gt_labels, gt_boxes, gt_idx, fg, pos, metric, overlaps)

    def _metric(self, pd_scores, pd_boxes, gt_labels, gt_boxes, inside):
        """Alignment metric and IoU [B, M, N], zero outside the ground truth."""
        labels = gt_labels.long().clamp(0, self.nc - 1)
        cls_score = pd_scores.gather(2, labels[:, None, :].expand(-1, pd_scores.shape[1], -1)).transpose(1, 2)
        iou = ciou(gt_boxes[:, :, None, :], pd_boxes[:, None, :, :]).clamp(min=0)
        iou = iou * inside
        metric = cls_score.pow(self.alpha) * iou.pow(self.beta) * inside
        return metric, iou

    def _topk_mask(self, metric: torch.Tensor) -> torch.Tensor:
        k = min(self.topk, metric.shape[-1])
        idx = metric.topk(k, dim=-1).indices
        mask = torch.zeros_like(metric, dtype=torch.bool)
        return mask.scatter_(-1, idx, True)

    @staticmethod
    def _resolve_conflicts(pos: torch.Tensor, overlaps: torch.Tensor):
        """An anchor claimed by several ground truths keeps the one it overlaps most."""
        multi = pos.sum(1, keepdim=True) > 1  # [B, 1, N]
        best = overlaps.argmax(1)  # [B, N]
        best_mask = torch.zeros_like(pos).scatter_(1, best[:, None, :], True)
        pos = torch.where(multi, best_mask & pos.any(1, keepdim=True), pos)
        return pos, pos.float().argmax(1), pos.any(1)

    def _targets(self, gt_labels, gt_boxes, gt_idx, fg, pos, metric, overlaps) -> Assignment:
        b = gt_labels.shape[0]
        batch = torch.arange(b, device=gt_labels.device)[:, None]
        labels = gt_labels.long()[batch, gt_idx].clamp(0, self.nc - 1)  # [B, N]
        boxes = gt_boxes[batch, gt_idx]  # [B, N, 4]
        scores = torch.nn.functional.one_hot(labels, self.nc).to(metric.dtype) * fg[..., None]
        metric = metric * pos
        best_metric = metric.amax(-1, keepdim=True)  # per ground truth
        best_iou = (overlaps * pos).amax(-1, keepdim=True)
        norm = (metric * best_iou / (best_metric + EPS)).amax(1)  # per anchor
        return Assignment(scores * norm[..., None], boxes, fg, gt_idx)
