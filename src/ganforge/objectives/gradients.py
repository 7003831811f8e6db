"""Input gradients of D, the common piece of every gradient penalty (WGAN-GP, R1, R2).

Gulrajani et al., "Improved Training of Wasserstein GANs", 2017, and Mescheder et al., "Which Training Methods for
GANs do actually Converge?", 2018, both penalise grad_x D(x). This module computes it once, the same way for all:
the gradient is taken w.r.t. the *pre-augmentation* input (augmentations are differentiable, so D∘augment is the
function being penalised), with `create_graph=True` so the penalty backpropagates into D's parameters, and it is
returned in float32 even when D ran under autocast (mixed precision + gradient penalty is a known source of NaNs).
"""
from __future__ import annotations

import torch

from ..errors import GanforgeError
from .base import Context


def input_gradient(ctx: Context, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """grad_x sum_i D(x)_i for a batch `x` (B, ...), flattened to (B, N) float32, differentiable w.r.t. D's params.

    Args:
        ctx: the phase context; D runs through `ctx.D_of` (augmentation included, no caching).
        x: inputs at which to take the gradient; detached here and made a leaf that requires grad.
        y: labels for D (or None).
    """
    x = x.detach().requires_grad_(True)
    with ctx.eager():  # differentiated twice: not through train.compile's graphs (nn/compiled.py)
        adv = ctx.D_of(x, y).adv  # (B,)
    # Each D(x_i) depends only on x_i, so the gradient of the sum gives every per-sample gradient at once.
    (grad,) = torch.autograd.grad(adv.float().sum(), x, create_graph=True)
    return grad.float().flatten(1)  # (B, N)


def squared_norms(grad: torch.Tensor) -> torch.Tensor:
    """Per-sample squared L2 norms (B,) of flattened gradients (B, N), computed in float32 outside autocast."""
    with torch.autocast(device_type=grad.device.type, enabled=False):
        return grad.float().pow(2).sum(dim=1)


def norms(grad: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norms (B,) of flattened gradients (B, N) in float32 (backward at a zero gradient is 0, not NaN)."""
    with torch.autocast(device_type=grad.device.type, enabled=False):
        return torch.linalg.vector_norm(grad.float(), dim=1)


def check_every(every: int, where: str) -> int:
    """Validate a lazy-regularization interval (1 = every step)."""
    if every < 1:
        raise GanforgeError(f"{where}.every: expected an integer >= 1, got {every!r}")
    return every


def check_nonnegative(value: float, where: str) -> float:
    """Validate a penalty weight."""
    if value < 0:
        raise GanforgeError(f"{where}: expected a number >= 0, got {value!r}")
    return value


def interpolates(ctx: Context) -> tuple[torch.Tensor, torch.Tensor | None]:
    """WGAN-GP's sample points x_hat = t x_r + (1 - t) x_f, t ~ U(0, 1) per sample (Gulrajani 2017, Algorithm 1).

    Reals and (detached) fakes are paired row by row (the first min(B_r, B_f) of each); `t` comes from
    `ctx.sample_rng()`, so a sample gets the same `t` in one process, on any rank and in any accumulation round.
    Returns x_hat (n, ...) and the real labels for D (or None).
    """
    real, fake = ctx.real.detach(), ctx.fake.detach()
    n = min(real.shape[0], fake.shape[0])
    real, fake = real[:n], fake[:n].to(real.dtype)
    t = ctx.sample_rng().rand(n, *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)  # (n, 1, ...)
    y = ctx.y_real[:n] if ctx.y_real is not None else None
    return t * real + (1 - t) * fake, y
