"""Building blocks of the detector: Conv-BN-act, bottleneck, C2f, SPPF, DFL."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "hardswish": nn.Hardswish}


def make_act(name: str) -> nn.Module:
    """An activation module by name (silu, relu, hardswish)."""
    try:
        return ACTIVATIONS[name](inplace=True)
    except KeyError:
        raise ValueError(f"unknown activation '{name}' (known: {', '.join(ACTIVATIONS)})") from None


class Conv(nn.Module):
    """Conv2d (no bias) -> BatchNorm -> activation, 'same' padding for odd kernels."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, act: str = "silu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Two 3x3 convs, with a residual add when shapes allow and `shortcut` is set."""

    def __init__(self, c: int, shortcut: bool, act: str) -> None:
        super().__init__()
        self.cv1 = Conv(c, c, 3, act=act)
        self.cv2 = Conv(c, c, 3, act=act)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP block with two convs: split, n bottlenecks on one half, concat every stage, fuse."""

    def __init__(self, c_in: int, c_out: int, n: int = 1, shortcut: bool = False, act: str = "silu") -> None:
        super().__init__()
        self.c = c_out // 2
        self.cv1 = Conv(c_in, 2 * self.c, 1, act=act)
        self.cv2 = Conv((2 + n) * self.c, c_out, 1, act=act)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut, act) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(self.cv1(x).split((self.c, self.c), 1))
        for block in self.m:
            parts.append(block(parts[-1]))
        return self.cv2(torch.cat(parts, 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling (fast): three chained 5x5 max-pools, concat, fuse."""

    def __init__(self, c_in: int, c_out: int, k: int = 5, act: str = "silu") -> None:
        super().__init__()
        hidden = c_in // 2
        self.cv1 = Conv(c_in, hidden, 1, act=act)
        self.cv2 = Conv(hidden * 4, c_out, 1, act=act)
        self.pool = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.pool(y[-1]))
        return self.cv2(torch.cat(y, 1))


class DFL(nn.Module):
    """Distribution focal loss integral: expected bin index of a softmax over reg_max bins.

    Written as softmax over channels + a fixed 1x1 convolution on 4-D tensors, the form that
    every converter (pnnx/ncnn, TFLite, OpenVINO) maps to plain ops; a sum over axis 2 of a
    4-D product is mis-converted by pnnx.
    """

    def __init__(self, reg_max: int = 16) -> None:
        super().__init__()
        self.reg_max = reg_max
        self.register_buffer("bins", torch.arange(reg_max, dtype=torch.float32).view(1, reg_max, 1, 1),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 4*reg_max, N] logits -> [B, 4, N] distances in grid units."""
        b, _, n = x.shape
        prob = x.view(b, 4, self.reg_max, n).transpose(1, 2).softmax(1)  # [B, reg_max, 4, N]
        return F.conv2d(prob, self.bins.to(prob.dtype)).view(b, 4, n)
