"""ADA: adaptive discriminator augmentation (Karras et al., "Training Generative Adversarial Networks with Limited
Data", NeurIPS 2020).

Every image D sees (reals and fakes, D and G phases) goes through the 'bgc' pipeline of `ada_ops`: each of its 13
ops is applied per sample with probability p, the geometric ones as one affine warp (of a 2x sym6 upsampling, as in
the paper, unless `antialias` is off), the color ones as one 4x4 matrix. All draws come from the trainer's
`SampleRNG` (two calls: B x 21 uniforms, B x 7 normals), so a sample is transformed the same by one process, N ranks
or any accumulation round, and reals and fakes (separate calls, or rows of one concatenated batch) get independent
parameters. At p = 0 the input is returned as it is.

p follows `schedule`:
- "adaptive" (the paper's rule, `training_loop.py` of its code): every `interval` D steps,
  r_t = E[sign D(x_real)] over the window's reals (the trainer's `d_real_sign`) and
  p <- clip(p + sign(r_t - target) * N_window / (ada_kimg * 1000), 0, 1), N_window = batch_size * interval real
  images. With B = 64, interval 4, ada_kimg 500: |dp| = 256 / 500000 = 5.12e-4 per adjustment.
- "fixed": p stays at `p`.
- "linear": p = p + (p_end - p) * progress, set every `interval` D steps (progress = step / train.steps).
p is a float64 buffer (checkpointed with the module's state_dict) and logged as `aug_p`; the last r_t as `aug_rt`.
Non-image batches (2-D points) pass through unchanged, as with DiffAugment.
"""
from __future__ import annotations

from typing import Literal

import torch

from ..errors import GanforgeError
from ..registries import AUGMENTATIONS
from ..training.rng import SampleRNG
from . import ada_ops
from .adaptive import ScheduledP


def _pipe_ops(pipe: str) -> set[str]:
    """'bgc' -> the op names of blit, geometric and color groups; unknown or repeated letters are errors."""
    if not pipe or any(ch not in ada_ops.PIPES for ch in pipe) or len(set(pipe)) != len(pipe):
        raise GanforgeError(f"augment.pipe: expected distinct letters from 'bgc' (b = xflip/rotate90/integer "
                            f"translation, g = scale/rotation/anisotropy/fractional translation, c = color), "
                            f"got {pipe!r}")
    return {op for ch in pipe for op in ada_ops.PIPES[ch]}


@AUGMENTATIONS.register("ada")
class ADA(ScheduledP):
    """ADA (Karras 2020): the 'bgc' augmentations with a probability p adapted to D's overfitting (r_t).

    Args:
        p: initial (adaptive), constant (fixed) or starting (linear) probability of each op; the paper starts at 0.
        target: r_t the adaptive rule steers toward (0.6 in the paper), in [-1, 1].
        ada_kimg: thousands of real images over which p can move by 1 (500; the paper uses 100 when resuming).
        interval: D steps per adjustment (the statistics window; 4 in the paper).
        schedule: "adaptive", "fixed" or "linear" (from p to p_end over training).
        p_end: final probability of the linear schedule (only with schedule "linear").
        pipe: op groups to use: any of b (blit), g (geometric), c (color); "bgc" is the paper's default pipe.
        interpolation: resampling of the geometric warp, "bilinear" or "bicubic".
        antialias: warp a 2x sym6 upsampling and downsample after, as the paper does (True); False resamples the
            image once (cheaper, but rotations and scalings alias).
    """

    def __init__(self, p: float = 0.0, target: float = 0.6, ada_kimg: float = 500.0, interval: int = 4,
                 schedule: Literal["adaptive", "fixed", "linear"] = "adaptive", p_end: float | None = None,
                 pipe: str = "bgc", interpolation: Literal["bilinear", "bicubic"] = "bilinear",
                 antialias: bool = True, img_shape: tuple | None = None):
        super().__init__()
        self.init_schedule(p, target, ada_kimg, "ada_kimg", interval, schedule, p_end)
        if interpolation not in ("bilinear", "bicubic"):
            raise GanforgeError(f"augment.interpolation: expected 'bilinear' or 'bicubic', got {interpolation!r}")
        if not isinstance(antialias, bool):
            raise GanforgeError(f"augment.antialias: expected bool, got {antialias!r}")
        self.ops = _pipe_ops(pipe)
        if img_shape is not None and len(img_shape) == 3 and img_shape[0] not in (1, 3) and "c" in pipe:
            raise GanforgeError(f"augment.pipe: ADA's color ops need 1- or 3-channel images, the data has "
                                f"{img_shape[0]}; leave 'c' out of the pipe")
        self.pipe, self.interpolation, self.antialias = pipe, interpolation, antialias

    @property
    def ada_kimg(self) -> float:
        """The `ada_kimg` option: thousands of real images over which p can move by 1."""
        return self.kimg

    def log_values(self) -> dict[str, float]:
        return self.p_values("aug")

    # ----------------------------------------------------------------------------------------------- the transform
    def forward(self, x: torch.Tensor, rng: SampleRNG | None = None) -> torch.Tensor:
        if x.dim() != 4 or self._p == 0.0:  # only image batches (B, C, H, W); p = 0 is the identity
            return x
        rng = rng or SampleRNG()
        b, _, h, w = x.shape
        u = rng.rand(b, ada_ops.N_UNIFORM)
        n = rng.randn(b, ada_ops.N_NORMAL)
        prm = ada_ops.sample_params(u, n, self._p, self.ops, h, w)
        with torch.autocast(device_type=x.device.type, enabled=False):  # grids and color matrices in full precision
            out = ada_ops.warp(x, ada_ops.geometric_matrix(prm), self.interpolation, antialias=self.antialias)
            return ada_ops.recolor(out, ada_ops.color_matrix(prm))

    def extra_repr(self) -> str:
        return (f"p={self._p:.6g}, schedule={self.schedule!r}, target={self.target}, ada_kimg={self.kimg}, "
                f"interval={self.update_every}, pipe={self.pipe!r}, interpolation={self.interpolation!r}, "
                f"antialias={self.antialias}")
