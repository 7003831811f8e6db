"""LOGAN: latent optimisation of the fakes' latents before D and G see them.

Wu, Donahue, Balduzzi, Simonyan and Lillicrap, "LOGAN: Latent Optimisation for Generative Adversarial Networks",
2019, as StudioGAN implements it (`losses.py::latent_optimise`, `sample.py`, `LOGAN.yaml`). In every D and G
micro-batch, before any term computes, each latent takes `steps` natural-gradient-style ascent steps on D's score:

    g_i  = grad_{z_i} sum_j D(G(z_j))               D's adversarial logit (`.adv`) on un-augmented fakes
    dz_i = alpha * g_i / (beta + ||g_i||^2)
    z_i <- clamp(z_i + m_i * dz_i),  m_i ~ Bernoulli(rate), one draw per sample and step
    C    = mean_i ||z'_i - z_i||^2                   transport cost, the mean over all B samples

and `weight * C` is added to L_D ("logan_cost") and to L_G ("logan_cost_g"). Defaults: alpha 0.9, beta 0.1,
rate 0.8 (`lo_rate`), weight 0.1 (`lo_lambda`), as in StudioGAN's LOGAN.yaml; steps 1 (see below); no clamp.

The step is differentiable (create_graph=True). In the G phase ctx.z becomes z' itself, so G's gradient flows through
the step into G's parameters; D's parameters are held constant while it is taken. In the D phase the step is taken
with G held constant, C keeps its graph to D's parameters, and ctx.z becomes z'.detach(): D sees G(z') as a constant.
Masks come from `ctx.sample_rng()`, so a sample moves the same way on any rank and in any accumulation round. Under
autocast the step (G and D forwards included) runs in float32: the latent gradient is taken without a loss scaler.

Departures from StudioGAN's code, and why:
- `steps` updates are performed. There the `return` sits inside `for step in range(lo_steps - 1)`, so exactly one
  update happens whatever lo_steps is (its lo_steps4train = 2 and lo_steps4eval = 10 both mean 1; lo_steps = 1
  returns None). Our default, 1, is what StudioGAN's training actually does. No evaluation-time optimisation.
- No clamp by default: StudioGAN clamps to [-1, 1] because its z ~ U(-1, 1); ganforge's latents are N(0, I), where
  that clamp would distort the prior. `clamp: c` clamps to [-c, c] after each step.
- C is the displacement actually made, ||z' - z||^2, so masked-out samples (and rate 0) cost nothing; StudioGAN sums
  ||dz_i||^2 of every sample and step, masked ones included.
"""
from __future__ import annotations

import torch

from ..checks import check_int, describe
from ..errors import GanforgeError
from ..registries import REGULARIZERS
from .base import Context, ObjectiveTerm
from .feature_matching import frozen


def _number(value: object, key: str, what: str, ok) -> float:
    """`value` as a float when it is a number satisfying `ok`, else a one-line error naming `key`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
        raise GanforgeError(f"{key}: expected {what}, got {describe(value)}")
    return float(value)


def natural_step(g: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """LOGAN's natural-gradient-style latent step alpha * g / (beta + ||g||^2) for per-sample gradients g (B, z_dim)."""
    return alpha * g / (beta + g.pow(2).sum(dim=1, keepdim=True))


@REGULARIZERS.register("logan")
class LatentOptimisation(ObjectiveTerm):
    """LOGAN (Wu 2019): z' = z + m * alpha g / (beta + ||g||^2), g = grad_z D(G(z)); weight * mean ||z' - z||^2.

    Args:
        steps: latent updates per micro-batch (StudioGAN performs 1 whatever its lo_steps says).
        alpha: step size (lo_alpha, 0.9).
        beta: damping of the natural-gradient step (lo_beta, 0.1), > 0.
        rate: probability that a sample's latent is updated, per step (lo_rate, 0.8).
        weight: weight of the transport cost C in both L_D and L_G (lo_lambda, 0.1).
        clamp: None, or c > 0 to clamp the latents to [-c, c] after each step (StudioGAN: 1, for uniform z).
    """

    def __init__(self, steps: int = 1, alpha: float = 0.9, beta: float = 0.1, rate: float = 0.8,
                 weight: float = 0.1, clamp: float | None = None):
        self.steps = check_int(steps, "logan.steps", minimum=1)
        self.alpha = _number(alpha, "logan.alpha", "a number >= 0", lambda v: v >= 0)
        self.beta = _number(beta, "logan.beta", "a number > 0", lambda v: v > 0)
        self.rate = _number(rate, "logan.rate", "a probability in [0, 1]", lambda v: 0 <= v <= 1)
        self.weight = _number(weight, "logan.weight", "a number >= 0", lambda v: v >= 0)
        self.clamp = None if clamp is None else _number(clamp, "logan.clamp", "None or a number > 0",
                                                        lambda v: v > 0)
        self._pending: tuple[Context, torch.Tensor] | None = None  # (micro-batch, its C) from prepare to the terms

    # ------------------------------------------------------------------------------------------- the latent step
    def optimise(self, ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
        """z' after `steps` updates of ctx.z and the transport cost C = mean_i ||z'_i - z_i||^2 (float32)."""
        z0 = ctx.z.detach().float().requires_grad_(True)  # (B, z_dim): the step starts from a constant
        create_graph = ctx.phase == "G" or self.weight > 0  # G trains through z'; D through C
        rng = ctx.sample_rng()
        other = ctx.D if ctx.phase == "G" else ctx.G
        z = z0
        with torch.autocast(device_type=z0.device.type, enabled=False), torch.enable_grad(), frozen(other), \
                ctx.eager():  # differentiated twice: not through train.compile's graphs (nn/compiled.py)
            for _ in range(self.steps):
                adv = ctx.D_raw(ctx.G(z, ctx.y_fake), ctx.y_fake).adv.float()  # (B,)
                # D(G(z_i)) depends on z_i only, so the gradient of the sum gives every per-sample gradient at once.
                (g,) = torch.autograd.grad(adv.sum(), z, create_graph=create_graph)  # (B, z_dim)
                dz = natural_step(g, self.alpha, self.beta)
                m = rng.bernoulli(self.rate, z.shape[0], 1, device=z.device).to(z.dtype)  # (B, 1) per-sample mask
                z = z + m * dz
                if self.clamp is not None:
                    z = z.clamp(-self.clamp, self.clamp)
            cost = (z - z0).pow(2).sum(dim=1).mean()  # C over all B samples (masked ones moved 0)
        return z, cost

    def prepare(self, ctx: Context) -> None:
        """Replace ctx.z by z' (detached in the D phase) and keep C for this micro-batch's term."""
        z, cost = self.optimise(ctx)
        ctx.z = z.detach() if ctx.phase == "D" else z
        ctx.reset()
        self._pending = (ctx, cost)

    def _cost(self, ctx: Context) -> torch.Tensor:
        if self._pending is None or self._pending[0] is not ctx:  # stand-alone use: no prepare ran, step now
            self.prepare(ctx)
        _, cost = self._pending
        self._pending = None  # release the micro-batch's graph with it
        return cost

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        return {"logan_cost": self.weight * self._cost(ctx)}

    def g_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        return {"logan_cost_g": self.weight * self._cost(ctx)}

    def __repr__(self) -> str:
        return (f"LatentOptimisation(steps={self.steps}, alpha={self.alpha}, beta={self.beta}, rate={self.rate}, "
                f"weight={self.weight}, clamp={self.clamp})")
