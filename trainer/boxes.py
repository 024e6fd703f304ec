"""Box geometry in torch: pairwise/elementwise IoU and Complete-IoU, box <-> distance transforms."""
from __future__ import annotations

import math

import torch

EPS = 1e-7


def ciou(a: torch.Tensor, b: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Complete IoU of xyxy boxes a and b (broadcast over leading dims): IoU - centre term - aspect term."""
    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = a.unbind(-1), b.unbind(-1)
    aw, ah = ax2 - ax1, (ay2 - ay1).clamp(min=eps)
    bw, bh = bx2 - bx1, (by2 - by1).clamp(min=eps)
    inter = ((torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(min=0)
             * (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp(min=0))
    union = aw * ah + bw * bh - inter + eps
    iou = inter / union
    cw = torch.maximum(ax2, bx2) - torch.minimum(ax1, bx1)  # enclosing box
    ch = torch.maximum(ay2, by2) - torch.minimum(ay1, by1)
    diag2 = cw**2 + ch**2 + eps
    centre2 = ((bx1 + bx2 - ax1 - ax2) ** 2 + (by1 + by2 - ay1 - ay2) ** 2) / 4
    v = (4 / math.pi**2) * (torch.atan(bw / bh) - torch.atan(aw / ah)) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (centre2 / diag2 + v * alpha)


def box_iou(a: torch.Tensor, b: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Plain IoU of xyxy boxes a and b (broadcast over leading dims)."""
    inter = ((torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
             * (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0))
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area_a + area_b - inter + eps)


def box_to_dist(points: torch.Tensor, xyxy: torch.Tensor, max_dist: float) -> torch.Tensor:
    """Distances (left, top, right, bottom) from points to box sides, clamped to [0, max_dist)."""
    lt = points - xyxy[..., :2]
    rb = xyxy[..., 2:] - points
    return torch.cat((lt, rb), -1).clamp(0, max_dist - 0.01)
