"""Optimizer construction (weight decay only on conv/linear weights) and the warm-up + cosine schedule."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

#: With fewer optimizer steps than this, "auto" picks AdamW (short schedules), else SGD.
AUTO_SGD_MIN_STEPS = 10_000


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and schedule settings (lr0=None: the chosen optimizer's default)."""

    optimizer: str = "auto"  # auto | sgd | adamw
    lr0: float | None = None
    lrf: float = 0.01  # final lr = lr0 * lrf
    momentum: float = 0.937
    weight_decay: float = 5e-4
    warmup_epochs: float = 3.0
    warmup_min_steps: int = 100
    warmup_momentum: float = 0.8
    warmup_bias_lr: float = 0.1


def resolve(cfg: OptimConfig, total_steps: int, nc: int) -> tuple[str, float]:
    """(optimizer name, base lr) after applying the 'auto' choice and the default lr."""
    name = cfg.optimizer.lower()
    if name == "auto":
        name = "adamw" if total_steps < AUTO_SGD_MIN_STEPS else "sgd"
    if name not in ("sgd", "adamw"):
        raise ValueError(f"optimizer must be auto, sgd or adamw, got '{cfg.optimizer}'")
    if cfg.lr0 is not None:
        return name, cfg.lr0
    return name, 0.01 if name == "sgd" else round(0.002 * 5 / (4 + nc), 6)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Three groups: conv/linear weights (decayed), norm weights and biases (no decay)."""
    decay, norm, bias = [], [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if name == "bias":
                bias.append(p)
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
                norm.append(p)
            else:
                decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay, "kind": "weight"},
            {"params": norm, "weight_decay": 0.0, "kind": "norm"},
            {"params": bias, "weight_decay": 0.0, "kind": "bias"}]


def build_optimizer(model: nn.Module, cfg: OptimConfig, total_steps: int, nc: int) -> torch.optim.Optimizer:
    """SGD (nesterov) or AdamW over `param_groups`; each group remembers its base lr."""
    name, lr = resolve(cfg, total_steps, nc)
    groups = param_groups(model, cfg.weight_decay)
    if name == "sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=True)
    else:
        opt = torch.optim.AdamW(groups, lr=lr, betas=(cfg.momentum, 0.999))
    for g in opt.param_groups:
        g["base_lr"] = lr
        g["warmup_start_lr"] = cfg.warmup_bias_lr if (g["kind"] == "bias" and name == "sgd") else 0.0
    return opt


def warmup_steps(cfg: OptimConfig, steps_per_epoch: int, total_steps: int) -> int:
    """max(warmup_epochs * steps/epoch, warmup_min_steps), but never more than a third of training."""
    n = max(round(cfg.warmup_epochs * steps_per_epoch), cfg.warmup_min_steps)
    return int(min(n, total_steps // 3))


def cosine_factor(step: int, total_steps: int, lrf: float) -> float:
    """lr multiplier falling from 1 to lrf along a half cosine over training."""
    x = min(step / max(total_steps, 1), 1.0)
    return lrf + (1 - lrf) * (1 + math.cos(math.pi * x)) / 2


def apply_schedule(opt: torch.optim.Optimizer, step: int, total: int, warmup: int, cfg: OptimConfig) -> float:
    """Set every group's lr (and SGD momentum / Adam beta1) for this optimizer step; returns the weight lr."""
    f = cosine_factor(step, total, cfg.lrf)
    for g in opt.param_groups:
        target = g["base_lr"] * f
        if step < warmup:
            t = step / warmup
            g["lr"] = g["warmup_start_lr"] + (target - g["warmup_start_lr"]) * t
            mom = cfg.warmup_momentum + (cfg.momentum - cfg.warmup_momentum) * t
        else:
            g["lr"], mom = target, cfg.momentum
        if "momentum" in g:
            g["momentum"] = mom
        elif "betas" in g:
            g["betas"] = (mom, g["betas"][1])
    return float(opt.param_groups[0]["lr"])
