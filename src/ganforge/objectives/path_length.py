"""Path-length regularization for style-based generators.

Karras et al., "Analyzing and Improving the Image Quality of StyleGAN", 2020 (Sec. 3.2, Eq. 4):
    L_pl = E_{w, y ~ N(0, I)} (||J_w^T y||_2 - a)^2,
with J_w = dG(w)/dw the Jacobian of the synthesis network at w and `a` a running mean of the lengths. As in the
authors' code (stylegan2-ada `training/loss.py`):
- y ~ N(0, I) / sqrt(H W), one draw per sample (H W: pixels of an image (C, H, W); the number of coordinates of a
  point / vector sample, which has no spatial axes);
- the gradient J_w^T y = grad_ws sum(G(ws) * y) is taken w.r.t. the broadcast ws (B, num_ws, w_dim), and the length
  of a sample is l = sqrt(mean over the num_ws layers of sum over w_dim of (J^T y)^2);
- a <- a + decay (mean_batch l - a), decay 0.01, starting from a = 0 (updated first, then the penalty uses it);
- penalty weight * mean_batch (l - a)^2 with weight 2, on a batch shrunk by `batch_shrink` = 2 (the first B / 2 rows
  of each micro-batch);
- lazy: every 4 G steps (the trainer multiplies the term by `every` and rescales Adam).
Mapping runs without updating G's running w_avg (the main G phase keeps that).

Under data parallelism and gradient accumulation the lengths of the whole (shrunk) global batch move the stored `a`
once per phase (recorded as `pl_length`, handed back through `update`); within a phase, the penalty's "updated
first" `a` uses the micro-batch's own mean, which is StyleGAN2's exact rule on one process without accumulation (the
authors' code keeps a per-process `a`).

Only style-based generators (`models/style.py`, e.g. `model.name=style-mlp`) have a w to differentiate against; any
other G is refused with a one-line error naming this regularizer when its first phase runs (the build context carries
no G, so it cannot be refused earlier).

State (checkpointed): {"pl_mean"}; logged as `pl_mean`.
"""
from __future__ import annotations

import math

import torch

from ..errors import GanforgeError
from ..models.style import is_style_based
from ..registries import REGULARIZERS
from .base import Context, ObjectiveTerm
from .gradients import check_every, check_nonnegative


def pixels_per_sample(x: torch.Tensor) -> int:
    """H * W for images (B, C, H, W); the number of coordinates of anything else (B, ...)."""
    return math.prod(x.shape[2:]) if x.dim() == 4 else math.prod(x.shape[1:])


@REGULARIZERS.register("path-length")
class PathLengthRegularizer(ObjectiveTerm):
    """Path length (StyleGAN2 2020, Eq. 4): weight * (||J_w^T y|| - a)^2, y ~ N(0, I)/sqrt(HW), a an EMA of lengths.

    Args:
        weight: pl_weight (2 in StyleGAN2; 0 switches the term's value off, as its CIFAR config does).
        decay: EMA rate of `a`: a <- a + decay (mean length - a) (0.01).
        batch_shrink: the penalty runs on B // batch_shrink samples of each micro-batch (at least 1) (2).
        every: apply every `every` G steps (lazy regularization; the trainer scales the term by `every`) (4).
    """

    name = "path-length"
    update_every = 1  # `a` moves after every run of the term's phase

    needs_style_generator = True  # checked against the architecture's `style_based` declaration at config time

    def __init__(self, weight: float = 2.0, decay: float = 0.01, batch_shrink: int = 2, every: int = 4):
        self.weight = check_nonnegative(weight, f"{self.name}.weight")
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 < decay <= 1.0:
            raise GanforgeError(f"{self.name}.decay: expected a number in (0, 1], got {decay!r}")
        if isinstance(batch_shrink, bool) or not isinstance(batch_shrink, int) or batch_shrink < 1:
            raise GanforgeError(f"{self.name}.batch_shrink: expected an integer >= 1, got {batch_shrink!r}")
        self.decay, self.batch_shrink = float(decay), batch_shrink
        self.every = check_every(every, self.name)
        self.pl_mean = 0.0  # a

    # ------------------------------------------------------------------------------------------------- the math
    @staticmethod
    def path_lengths(x: torch.Tensor, ws: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """l_i = sqrt(mean_L sum_C (J_i^T y_i)^2) per sample (B,), for x = synthesis(ws) and y = noise / sqrt(pixels).

        J_i = d x_i / d ws_i; differentiable (create_graph) w.r.t. G's parameters. `noise` has the shape of `x`.
        """
        if noise.shape != x.shape:
            raise GanforgeError(f"path-length: noise of shape {tuple(noise.shape)} for samples of shape "
                                f"{tuple(x.shape)}")
        y = noise.to(x.device, torch.float32) / math.sqrt(pixels_per_sample(x))
        (jty,) = torch.autograd.grad((x.float() * y).sum(), ws, create_graph=True)  # (B, L, C): row i is J_i^T y_i
        with torch.autocast(device_type=jty.device.type, enabled=False):
            return jty.float().square().sum(dim=2).mean(dim=1).sqrt()

    def ema_with(self, lengths: torch.Tensor) -> float:
        """a + decay (mean(lengths) - a): the running mean after a batch of lengths."""
        return self.pl_mean + self.decay * (float(lengths.detach().float().mean()) - self.pl_mean)

    def penalty(self, lengths: torch.Tensor) -> torch.Tensor:
        """weight * mean (l_i - a')^2 with a' the running mean updated with these lengths (StyleGAN2's order)."""
        a = self.ema_with(lengths)
        return self.weight * (lengths.float() - a).square().mean()

    # -------------------------------------------------------------------------------------------------- the term
    def g_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        G = ctx.G
        if not is_style_based(G):
            raise GanforgeError(f"regularizer {self.name!r} needs a style-based generator (mapping + synthesis, e.g. "
                                f"model.name=style-mlp); {type(G).__name__} is not one")
        b = ctx.z.shape[0]
        n = max(1, b // self.batch_shrink)
        y = None if ctx.y_fake is None else ctx.y_fake[:n]
        ws = G.mapping(ctx.z[:n], y, update_w_avg=False)  # (n, num_ws, w_dim)
        if not ws.requires_grad:  # e.g. a frozen mapping network: still differentiate w.r.t. ws
            ws = ws.detach().requires_grad_(True)
        x = G.synthesis(ws)
        noise = ctx.sample_rng().randn(b, *x.shape[1:], device=x.device)[:n]  # per-sample streams of the micro-batch
        lengths = self.path_lengths(x, ws, noise)
        ctx.record("pl_length", lengths)
        return {"pl": self.penalty(lengths)}

    # ------------------------------------------------------------------------------------------------- the state
    def update(self, stats: dict) -> None:
        """a <- a + decay (global mean length of the phase - a); phases that recorded no lengths leave `a` alone."""
        mean = stats.get("pl_length")
        if mean is None or not math.isfinite(mean):
            return
        self.pl_mean += self.decay * (float(mean) - self.pl_mean)

    def log_values(self) -> dict[str, float]:
        return {"pl_mean": self.pl_mean}

    def state_dict(self) -> dict[str, float]:
        """The running mean `a`, for checkpoints."""
        return {"pl_mean": self.pl_mean}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict()` returned."""
        if "pl_mean" not in state:
            raise GanforgeError("path-length state: missing key pl_mean")
        self.pl_mean = float(state["pl_mean"])

    def __repr__(self) -> str:
        return (f"PathLengthRegularizer(weight={self.weight}, decay={self.decay}, batch_shrink={self.batch_shrink}, "
                f"every={self.every})")
