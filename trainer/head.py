"""Decoupled anchor-free detection head with DFL box regression, and grid helpers."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from trainer.blocks import DFL, Conv


def make_anchors(shapes: Sequence[tuple[int, int]], strides: Sequence[int], dtype: torch.dtype,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres [N, 2] (x, y in grid units, +0.5) and each cell's stride [N, 1], levels in order."""
    points, stride_col = [], []
    for (h, w), s in zip(shapes, strides, strict=False):
        sy = torch.arange(h, dtype=dtype, device=device) + 0.5
        sx = torch.arange(w, dtype=dtype, device=device) + 0.5
        gy, gx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((gx, gy), -1).view(-1, 2))
        stride_col.append(torch.full((h * w, 1), float(s), dtype=dtype, device=device))
    return torch.cat(points), torch.cat(stride_col)


def dist_to_box(dist: torch.Tensor, points: torch.Tensor, xywh: bool, dim: int = -1) -> torch.Tensor:
    """(left, top, right, bottom) distances from points -> xyxy or (cx, cy, w, h) boxes."""
    lt, rb = dist.chunk(2, dim)
    x1y1, x2y2 = points - lt, points + rb
    if xywh:
        return torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), dim)
    return torch.cat((x1y1, x2y2), dim)


class DetectHead(nn.Module):
    """Per level: a box branch (4*reg_max logits) and a class branch (nc logits)."""

    def __init__(self, nc: int, channels: Sequence[int], strides: Sequence[int] = (8, 16, 32),
                 reg_max: int = 16, act: str = "silu") -> None:
        super().__init__()
        self.nc, self.reg_max, self.strides = nc, reg_max, tuple(strides)
        self.no = nc + 4 * reg_max
        c_box = max(16, channels[0] // 4, 4 * reg_max)
        c_cls = max(channels[0], min(nc, 100))
        self.box = nn.ModuleList(self._branch(c, c_box, 4 * reg_max, act) for c in channels)
        self.cls = nn.ModuleList(self._branch(c, c_cls, nc, act) for c in channels)
        self.dfl = DFL(reg_max)
        self.export_mode = False

    @staticmethod
    def _branch(c_in: int, hidden: int, c_out: int, act: str) -> nn.Sequential:
        return nn.Sequential(Conv(c_in, hidden, 3, act=act), Conv(hidden, hidden, 3, act=act),
                             nn.Conv2d(hidden, c_out, 1))

    def init_bias(self, imgsz: int = 640) -> None:
        """Prior biases: box logits at 1, class logits for ~5 objects per image at 640."""
        for box, cls, s in zip(self.box, self.cls, self.strides, strict=False):
            nn.init.constant_(box[-1].bias, 1.0)
            nn.init.constant_(cls[-1].bias, math.log(5 / self.nc / (imgsz / s) ** 2))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor] | torch.Tensor:
        """Training: per-level raw maps [B, 4*reg_max+nc, H, W]; eval: [B, 4+nc, N] decoded."""
        maps = [torch.cat((b(x), c(x)), 1) for x, b, c in zip(feats, self.box, self.cls, strict=False)]
        if self.training:
            return maps
        return self.decode(maps)

    def decode(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Raw maps -> [B, 4+nc, N]: cx, cy, w, h in input pixels, then sigmoid class scores."""
        b = maps[0].shape[0]
        flat = torch.cat([m.view(b, self.no, -1) for m in maps], 2)
        box_logits, cls_logits = flat.split((4 * self.reg_max, self.nc), 1)
        shapes = [(int(m.shape[2]), int(m.shape[3])) for m in maps]
        points, stride = make_anchors(shapes, self.strides, flat.dtype, flat.device)
        boxes = dist_to_box(self.dfl(box_logits), points.transpose(0, 1).unsqueeze(0), xywh=True, dim=1)
        return torch.cat((boxes * stride.transpose(0, 1).unsqueeze(0), cls_logits.sigmoid()), 1)
