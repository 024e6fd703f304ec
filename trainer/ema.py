"""Exponential moving average of model weights, with a decay that ramps up from 0."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA(nn.Module):
    """Holds a frozen copy of the model; `update` blends the live weights into it after each step.

    decay(k) = decay * (1 - exp(-k / tau)) for update k, so early updates follow the model closely.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0) -> None:
        super().__init__()
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self.decay, self.tau = decay, tau
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def current_decay(self) -> float:
        """The blend factor the next update will use."""
        return self.decay * (1.0 - math.exp(-(int(self.updates) + 1) / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """ema = d * ema + (1 - d) * model for float tensors; integer buffers are copied."""
        d = self.current_decay()
        self.updates += 1
        live = model.state_dict()
        for name, value in self.module.state_dict().items():
            src = live[name].detach()
            if value.dtype.is_floating_point:
                value.mul_(d).add_(src.to(value.dtype), alpha=1.0 - d)
            else:
                value.copy_(src)
