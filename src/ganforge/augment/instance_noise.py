"""Instance noise (Sønderby et al., "Amortised MAP Inference for Image Super-resolution", 2016; Arjovsky & Bottou,
"Towards Principled Methods for Training Generative Adversarial Networks", ICLR 2017).

Every batch D sees (reals and fakes, D and G phases) gets Gaussian noise, so the real and fake distributions overlap
and D's gradients stay informative early in training:

    y = x + sigma_t * eps,   eps ~ N(0, I) drawn per sample and element from the trainer's `SampleRNG`,
    sigma_t = sigma + (sigma_end - sigma) * progress,   progress = step / train.steps in [0, 1] (clamped).

sigma_t is set from `stats["progress"]` in `update(stats)` every `interval` D steps and starts at `sigma` (progress
0), so it anneals linearly from `sigma` to `sigma_end` (default 0: the clean GAN objective at the end). It is a float64
buffer (checkpointed with the module's state_dict) and logged as `noise_sigma`. At sigma_t = 0 the input is returned
as it is. Unlike the image augmentations, any batch is noised: images (B, C, H, W) and 2-D points (B, 2) alike.
The papers' exact sigma values and annealing schedules are not confirmed (METHODS.md §3); the default sigma = 0.1
(a tenth of the [-1, 1] image range) is this library's choice, not a paper value.
"""
from __future__ import annotations

import torch

from ..errors import GanforgeError
from ..registries import AUGMENTATIONS
from ..training.rng import SampleRNG
from .base import Augment


def _nonnegative(key: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise GanforgeError(f"augment.{key}: expected a number >= 0, got {value!r}")
    return float(value)


@AUGMENTATIONS.register("instance-noise")
class InstanceNoise(Augment):
    """Instance noise (Sønderby 2016, Arjovsky & Bottou 2017): x + sigma_t * N(0, I), sigma_t annealed linearly.

    Args:
        sigma: noise standard deviation at the start of training (progress 0).
        sigma_end: standard deviation at the end of training (progress 1); 0 by default. sigma_end = sigma keeps
            the noise constant.
        interval: D steps between sigma_t updates (the statistics window; progress is read from it).
    """

    applies_to_points = True  # unlike ADA / DiffAugment, 2-D point batches are noised too

    def __init__(self, sigma: float = 0.1, sigma_end: float = 0.0, interval: int = 1):
        super().__init__()
        self.sigma = _nonnegative("sigma", sigma)
        self.sigma_end = _nonnegative("sigma_end", sigma_end)
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise GanforgeError(f"augment.interval: expected a whole number of D steps >= 1, got {interval!r}")
        self.update_every = interval
        self.register_buffer("sigma_t", torch.tensor(self.sigma, dtype=torch.float64))
        self._sigma_t = self.sigma  # python copy of the buffer: forward needs no device sync

    def sigma_at(self, progress: float) -> float:
        """sigma + (sigma_end - sigma) * progress, with progress clamped to [0, 1]."""
        progress = min(max(float(progress), 0.0), 1.0)
        return self.sigma + (self.sigma_end - self.sigma) * progress

    def update(self, stats: dict[str, float]) -> None:
        """Set sigma_t from the window's training progress."""
        value = self.sigma_at(stats["progress"])
        self.sigma_t.fill_(value)
        self._sigma_t = value

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._sigma_t = float(self.sigma_t)

    def log_values(self) -> dict[str, float]:
        return {"noise_sigma": self._sigma_t}

    def forward(self, x: torch.Tensor, rng: SampleRNG | None = None) -> torch.Tensor:
        if self._sigma_t == 0.0 or x.dim() < 1:
            return x
        rng = rng or SampleRNG()
        eps = rng.randn(x.shape[0], *x.shape[1:], device=x.device, dtype=x.dtype)
        return x + self._sigma_t * eps

    def extra_repr(self) -> str:
        return f"sigma_t={self._sigma_t:.6g}, sigma={self.sigma}, sigma_end={self.sigma_end}, interval={self.update_every}"
