"""YOLOv8-style detector: CSP backbone with C2f + SPPF, PAN neck, decoupled DFL head."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from trainer.blocks import SPPF, C2f, Conv
from trainer.head import DetectHead

#: scale -> (depth multiple, width multiple, max channels)
SCALES = {"n": (0.33, 0.25, 1024), "s": (0.33, 0.50, 1024), "m": (0.67, 0.75, 768)}
STRIDES = (8, 16, 32)


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network (stored in checkpoints)."""

    scale: str = "n"
    nc: int = 80
    act: str = "silu"
    reg_max: int = 16

    def to_dict(self) -> dict:
        return asdict(self)


def _ch(c: int, width: float, max_ch: int) -> int:
    return int(math.ceil(min(c, max_ch) * width / 8) * 8)


def _depth(n: int, depth: float) -> int:
    return max(round(n * depth), 1)


class Backbone(nn.Module):
    """Stem and four stages; returns the stride 8, 16 and 32 features."""

    def __init__(self, w: list[int], d: float, act: str) -> None:
        super().__init__()
        self.stem = Conv(3, w[0], 3, 2, act)
        self.stage2 = nn.Sequential(Conv(w[0], w[1], 3, 2, act), C2f(w[1], w[1], _depth(3, d), True, act))
        self.stage3 = nn.Sequential(Conv(w[1], w[2], 3, 2, act), C2f(w[2], w[2], _depth(6, d), True, act))
        self.stage4 = nn.Sequential(Conv(w[2], w[3], 3, 2, act), C2f(w[3], w[3], _depth(6, d), True, act))
        self.stage5 = nn.Sequential(Conv(w[3], w[4], 3, 2, act), C2f(w[4], w[4], _depth(3, d), True, act),
                                    SPPF(w[4], w[4], 5, act))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p3 = self.stage3(self.stage2(self.stem(x)))
        p4 = self.stage4(p3)
        return [p3, p4, self.stage5(p4)]


class PANNeck(nn.Module):
    """Top-down (nearest 2x upsample + concat) then bottom-up (stride-2 conv + concat) fusion."""

    def __init__(self, w: list[int], d: float, act: str) -> None:
        super().__init__()
        n = _depth(3, d)
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.td4 = C2f(w[4] + w[3], w[3], n, False, act)
        self.td3 = C2f(w[3] + w[2], w[2], n, False, act)
        self.down3 = Conv(w[2], w[2], 3, 2, act)
        self.bu4 = C2f(w[2] + w[3], w[3], n, False, act)
        self.down4 = Conv(w[3], w[3], 3, 2, act)
        self.bu5 = C2f(w[3] + w[4], w[4], n, False, act)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        p3, p4, p5 = feats
        t4 = self.td4(torch.cat((self.up(p5), p4), 1))
        n3 = self.td3(torch.cat((self.up(t4), p3), 1))
        n4 = self.bu4(torch.cat((self.down3(n3), t4), 1))
        n5 = self.bu5(torch.cat((self.down4(n4), p5), 1))
        return [n3, n4, n5]


class YoloDetector(nn.Module):
    """The full detector. Train mode returns per-level raw maps; eval mode returns [B, 4+nc, N]."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.scale not in SCALES:
            raise ValueError(f"unknown model scale '{config.scale}' (known: {', '.join(SCALES)})")
        self.config = config
        d, wm, max_ch = SCALES[config.scale]
        w = [_ch(c, wm, max_ch) for c in (64, 128, 256, 512, 1024)]
        self.backbone = Backbone(w, d, config.act)
        self.neck = PANNeck(w, d, config.act)
        self.head = DetectHead(config.nc, (w[2], w[3], w[4]), STRIDES, config.reg_max, config.act)
        self.head.init_bias()

    @property
    def stride(self) -> int:
        return max(STRIDES)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        return self.head(self.neck(self.backbone(x)))


def build_model(scale: str = "n", nc: int = 80, act: str = "silu", reg_max: int = 16) -> YoloDetector:
    """A freshly initialised detector of the given scale and class count."""
    return YoloDetector(ModelConfig(scale=scale, nc=nc, act=act, reg_max=reg_max))
