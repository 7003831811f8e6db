"""Exponential moving average of generator weights (Karras et al. 2018; Yazici et al. 2019).

theta_ema <- decay * theta_ema + (1 - decay) * theta for parameters; buffers (BN statistics, SN vectors) copied.
Before `start` steps, G_ema simply copies G. With warm-up, the decay at step t is min(decay, (1 + t) / (10 + t)) (the
num_updates rule of TensorFlow's ExponentialMovingAverage), so short runs do not average in their random init.
"""
from __future__ import annotations

import torch
from torch import nn


def ema_beta(decay: float, step: int, start: int = 0, warmup: bool = False) -> float:
    """The averaging weight used at `step`."""
    if step < start:
        return 0.0
    t = step - start
    return min(decay, (1 + t) / (10 + t)) if warmup else decay


def halflife_decay(batch: int, ema_kimg: float, nimg: int, rampup: float = 0.0) -> float:
    """StyleGAN2-ADA's G_ema decay from a half-life of `ema_kimg` thousand images: 0.5 ** (batch / half-life), the
    half-life capped at rampup x the images shown so far when `rampup` > 0 (so early G_ema follows G closely)."""
    ema_nimg = ema_kimg * 1000
    if rampup > 0:
        ema_nimg = min(ema_nimg, nimg * rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, decay: float, step: int, start: int = 0, warmup: bool = False) -> None:
    beta = ema_beta(decay, step, start, warmup)
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.lerp_(p.detach(), 1.0 - beta)  # p_ema + (1 - beta) * (p - p_ema)
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)
