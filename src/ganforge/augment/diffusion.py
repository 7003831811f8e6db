"""Diffusion-GAN (Wang et al., "Diffusion-GAN: Training GANs with Diffusion", ICLR 2023): forward-diffusion noise on
D's inputs, with the number of diffusion steps T adapted to D's overfitting.

Every image D sees (reals and fakes, D and G phases) is replaced by a sample of the forward diffusion chain:

    y = sqrt(alpha_bar_t) * x + sqrt(1 - alpha_bar_t) * sigma * eps,   eps ~ N(0, I),   sigma = noise_sd = 0.05,
    beta_s = linspace(beta_start, beta_end, T)[s - 1] (1e-4 .. 2e-2),   alpha_bar_t = prod_{s<=t} (1 - beta_s),
    alpha_bar_0 = 1 (t = 0 is the clean image), so the beta schedule is recomputed whenever T changes.

t is drawn per sample from the trainer's `SampleRNG` (three calls: B uniforms, B uniforms, B x C x H x W normals):
with probability `clean` (0.5) t = 0, otherwise t in {1..T} by `sampling`:
- "priority" (the paper's default, Eq. 11; its code): P(t) proportional to t - 1, so t = 1 never occurs;
- "uniform": P(t) = 1 / T.
The paper's code builds, after each T update, a pool of 32 zeros plus 32 such t's and lets each image pick from it;
drawing each sample's t independently gives the same marginal (half clean, half from the scheme) without a pool to
checkpoint, but t's of one batch are not tied to one shared pool.

T follows `schedule`:
- "adaptive" (the paper's rule, as ADA's p): every `interval` D steps, r_d = E[sign D(x_real)] over the window
  (the trainer's `d_real_sign`),
      p <- clip(p + sign(r_d - target) * N_window / (ada_kimg * 1000), 0, 1),   N_window = batch_size * interval,
      T = clip(t_min + round(p * (t_max - t_min)), t_min, t_max)   (Python round: halves to even),
  i.e. T (unrounded) moves by C = (t_max - t_min) * N_window / (ada_kimg * 1000) per window: with B = 64,
  interval 4, ada_kimg 100, t_min 10, t_max 1000, C = 990 * 256 / 100000 = 2.5344. p = 0.5 gives T = 505.
- "fixed": p (hence T) stays where `p` puts it.
p (float64) and T (int64) are buffers (checkpointed with the module's state_dict); T is logged as `diffusion_T`,
p as `diffusion_p`, the last r_d as `diffusion_rd`. Defaults: target 0.6, interval 4, ada_kimg 100, t_min 10,
t_max 1000 (the paper code's train.py / CLI defaults); p starts at 0, so T starts at t_min.

Not in scope: the paper's "full version" also feeds t to D (concatenated to the class input of D's mapping
network); here D sees only the noised images (the paper's README notes this plain-augmentation use works similarly).
Non-image batches (2-D points) pass through unchanged, as with ADA and DiffAugment.
"""
from __future__ import annotations

import math
from typing import Literal

import torch

from ..errors import GanforgeError
from ..registries import AUGMENTATIONS
from ..training.rng import SampleRNG
from .adaptive import overfitting_step
from .base import Augment


def alpha_bars(T: int, beta_start: float = 1e-4, beta_end: float = 2e-2) -> torch.Tensor:
    """float64 (T + 1,): alpha_bar_0 = 1, alpha_bar_t = prod_{s=1..t} (1 - beta_s), beta linear over T steps."""
    betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1.0 - betas, dim=0)])


def _number(key: str, value: float, low: float, high: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise GanforgeError(f"augment.{key}: expected {what}, got {value!r}")
    return float(value)


def _whole(key: str, value: int, low: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise GanforgeError(f"augment.{key}: expected {what}, got {value!r}")
    return value


@AUGMENTATIONS.register("diffusion")
class DiffusionNoise(Augment):
    """Diffusion-GAN (Wang 2023): forward-diffusion noise on D's inputs, with T adapted to D's overfitting (r_d).

    Args:
        p: initial (adaptive) or constant (fixed) position of T between t_min (0) and t_max (1).
        target: r_d the adaptive rule steers toward (0.6 in the paper), in [-1, 1].
        ada_kimg: thousands of real images over which p can move by 1 (100 in the paper's code).
        interval: D steps per adjustment (the statistics window; 4 in the paper's code).
        schedule: "adaptive" or "fixed".
        t_min, t_max: bounds of T (10 and 1000).
        sampling: how t in {1..T} is drawn: "priority" (P(t) proportional to t - 1, the paper's default) or "uniform".
        clean: probability that a sample gets t = 0 (stays clean); 0.5 matches the paper's 32-of-64 zero pool.
        beta_start, beta_end: the linear beta schedule's first and last value (1e-4, 2e-2).
        noise_sd: sigma, the standard deviation of the diffusion noise (0.05).
    """

    def __init__(self, p: float = 0.0, target: float = 0.6, ada_kimg: float = 100.0, interval: int = 4,
                 schedule: Literal["adaptive", "fixed"] = "adaptive", t_min: int = 10, t_max: int = 1000,
                 sampling: Literal["priority", "uniform"] = "priority", clean: float = 0.5,
                 beta_start: float = 1e-4, beta_end: float = 2e-2, noise_sd: float = 0.05):
        super().__init__()
        p = _number("p", p, 0.0, 1.0, "a value in [0, 1]")
        self.target = _number("target", target, -1.0, 1.0, "a value of E[sign D(real)] in [-1, 1]")
        if isinstance(ada_kimg, bool) or not isinstance(ada_kimg, (int, float)) or not ada_kimg > 0:
            raise GanforgeError(f"augment.ada_kimg: expected a positive number of kimg, got {ada_kimg!r}")
        self.ada_kimg = float(ada_kimg)
        self.update_every = _whole("interval", interval, 1, "a whole number of D steps >= 1")
        if schedule not in ("adaptive", "fixed"):
            raise GanforgeError(f"augment.schedule: expected 'adaptive' or 'fixed', got {schedule!r}")
        if sampling not in ("priority", "uniform"):
            raise GanforgeError(f"augment.sampling: expected 'priority' or 'uniform', got {sampling!r}")
        low = 2 if sampling == "priority" else 1  # priority gives t = 1 weight 0: T = 1 would leave nothing to draw
        self.t_min = _whole("t_min", t_min, low, f"a whole number of diffusion steps >= {low} (sampling {sampling!r})")
        self.t_max = _whole("t_max", t_max, self.t_min, f"a whole number of diffusion steps >= t_min = {self.t_min}")
        self.clean = _number("clean", clean, 0.0, 1.0, "a probability in [0, 1]")
        self.beta_start = _number("beta_start", beta_start, 0.0, 1.0, "a beta in (0, 1)")
        self.beta_end = _number("beta_end", beta_end, 0.0, 1.0, "a beta in (0, 1)")
        if not 0.0 < self.beta_start <= self.beta_end < 1.0:
            raise GanforgeError(f"augment.beta_end: expected 0 < beta_start <= beta_end < 1, got beta_start = "
                                f"{beta_start!r}, beta_end = {beta_end!r}")
        self.noise_sd = _number("noise_sd", noise_sd, 0.0, math.inf, "a number >= 0")
        self.schedule, self.sampling = schedule, sampling
        self.register_buffer("p", torch.tensor(p, dtype=torch.float64))
        self.register_buffer("T", torch.tensor(self.T_of(p), dtype=torch.int64))
        self.register_buffer("rd", torch.tensor(float("nan"), dtype=torch.float64))  # last r_d (NaN: none yet)
        self._sync()

    # -------------------------------------------------------------------------------------------------- the T rule
    def T_of(self, p: float) -> int:
        """clip(t_min + round(p * (t_max - t_min)), t_min, t_max)."""
        return min(max(self.t_min + round(p * (self.t_max - self.t_min)), self.t_min), self.t_max)

    def update(self, stats: dict[str, float]) -> None:
        """Move p, hence T, by the adaptive rule (module docstring) from one statistics window."""
        if self.schedule == "fixed":
            return
        moved = overfitting_step(self._p, stats, self.target, self.ada_kimg, "diffusion's adaptive T")
        if moved is None:
            return
        p, rd = moved
        self.rd.fill_(rd)
        self.p.fill_(p)
        self.T.fill_(self.T_of(p))
        self._sync()

    def _sync(self) -> None:
        """Python copies of the buffers and the alpha_bar table of the current T (forward needs no device sync)."""
        self._p, self._T = float(self.p), int(self.T)
        self._alpha_bar = alpha_bars(self._T, self.beta_start, self.beta_end)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._sync()

    def log_values(self) -> dict[str, float]:
        rd = float(self.rd)
        return {"diffusion_T": float(self._T), "diffusion_p": self._p, **({"diffusion_rd": rd} if math.isfinite(rd) else {})}

    # ----------------------------------------------------------------------------------------------- the transform
    def timesteps(self, b: int, rng: SampleRNG) -> torch.Tensor:
        """int64 (b,): t = 0 with probability `clean`, else t in {1..T} by `sampling` (two SampleRNG calls)."""
        u_clean = rng.rand(b).double()
        u_t = rng.rand(b).double()
        T = self._T
        if self.sampling == "priority":
            weights = torch.arange(T, dtype=torch.float64)  # t - 1 for t = 1..T
            cdf = torch.cumsum(weights, 0) / weights.sum()
            t = 1 + torch.searchsorted(cdf, u_t, right=True)  # cdf[0] = 0, so t >= 2
        else:
            t = 1 + torch.floor(u_t * T).long()
        t = t.clamp(1, T)
        return torch.where(u_clean < self.clean, torch.zeros_like(t), t)

    def forward(self, x: torch.Tensor, rng: SampleRNG | None = None) -> torch.Tensor:
        if x.dim() != 4:  # only image batches (B, C, H, W); points and vectors pass through
            return x
        rng = rng or SampleRNG()
        b = x.shape[0]
        a = self._alpha_bar[self.timesteps(b, rng)].view(b, 1, 1, 1)
        eps = rng.randn(b, *x.shape[1:], device=x.device, dtype=x.dtype)
        scale = a.sqrt().to(device=x.device, dtype=x.dtype)
        noise = ((1.0 - a).sqrt() * self.noise_sd).to(device=x.device, dtype=x.dtype)
        return scale * x + noise * eps

    def extra_repr(self) -> str:
        return (f"T={self._T}, p={self._p:.6g}, schedule={self.schedule!r}, target={self.target}, "
                f"ada_kimg={self.ada_kimg}, interval={self.update_every}, t_min={self.t_min}, t_max={self.t_max}, "
                f"sampling={self.sampling!r}, clean={self.clean}, noise_sd={self.noise_sd}")
