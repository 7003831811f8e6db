"""Exponential moving average of generator weights (Karras et al. 2018; Yazici et al. 2019).

theta_ema <- decay * theta_ema + (1 - decay) * theta for parameters; buffers (BN statistics, SN vectors) copied.
Before `start` steps, G_ema simply copies G.
"""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, decay: float, step: int, start: int = 0) -> None:
    beta = decay if step >= start else 0.0
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.lerp_(p.detach(), 1.0 - beta)  # p_ema + (1 - beta) * (p - p_ema)
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)
