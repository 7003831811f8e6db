"""Consistency regularization: CR, balanced CR (bCR) and latent CR (zCR).

- CR: Zhang et al., "Consistency Regularization for Generative Adversarial Networks", ICLR 2020. D should not care
  about a semantics-preserving transformation T of a real image:
      L_D += lambda * MSE(D(x_r), D(T(x_r))),   lambda = 10 (StudioGAN `BigGAN-CR.yaml`), neither branch detached.
- bCR and zCR: Zhao et al., "Improved Consistency Regularization for GANs", AAAI 2021.
      bCR: L_D += lambda_real * MSE(D(x_r), D(T x_r)) + lambda_fake * MSE(D(x_f), D(T x_f)),  both 10 (StudioGAN).
      zCR: z' = z + sigma * eps, eps ~ N(0, I);
           L_D += lambda_dis * MSE(D(G(z)), D(G(z')))     (D: outputs consistent under a small latent change)
           L_G += -lambda_gen * MSE(G(z), G(z'))          (G: the two images pushed apart, against collapse)
      StudioGAN `BigGAN-ICR.yaml` (CIFAR10): sigma = 0.05, lambda_dis = 20, lambda_gen = 0.5.
MSE is the mean over all elements (D's (B,) logits, or G's images). Fakes are detached in the D phase.

The transformation T (`transform` option) is either the built-in "flip_translate" — the CR paper's T: a random
horizontal flip (p = 0.5) and an integer translation of up to 1/8 of each side (4 px at 32x32) with reflect padding,
drawn per sample; on batches that are not images (points, vectors) it is a small Gaussian jitter
x + jitter * N(0, I) instead, since flips and shifts mean nothing there — or the name of a registered augmentation
(AUGMENTATIONS, e.g. "diffaugment" with `transform_options: {policy: "translation,cutout"}`). T must be fixed: an
augmentation that adapts to training statistics (ADA) is refused, as nothing would update it. All randomness comes
from the context's per-sample streams, so runs on N ranks and with gradient accumulation equal one process.

Both D calls of a pair go through the run's own augmentation (`ctx.d_real` / `ctx.d_fake`, the cached calls the
adversarial loss also uses, against `ctx.D_of(T(x))`), so with an augmentation chosen the pair differs by T and by
the augmentation's independent draws; without one (the default) it differs by T alone. StudioGAN's extra MSE between
class logits / embeddings for AC-type heads is not included.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..errors import GanforgeError
from ..registries import AUGMENTATIONS, REGULARIZERS
from ..training.rng import SampleRNG
from ..training.stats import is_stateful
from .base import Context, ObjectiveTerm
from .gradients import check_nonnegative

BUILTIN = "flip_translate"


def flip_translate(x: torch.Tensor, rng: SampleRNG, translation: float = 0.125) -> torch.Tensor:
    """CR's T on images (B, C, H, W): flip left-right with p = 0.5, then shift by integers |dy| <= int(H t),
    |dx| <= int(W t) with reflect padding: out[b, :, i, j] = reflect_pad(flip?(x))[b, :, i - dy_b, j - dx_b]."""
    b, _, h, w = x.shape
    flip = rng.bernoulli(0.5, b, 1, 1, 1, device=x.device)  # (B, 1, 1, 1)
    x = torch.where(flip, x.flip(3), x)
    sh, sw = int(h * translation), int(w * translation)
    if sh == 0 and sw == 0:
        return x
    dy = rng.randint(-sh, sh + 1, b, 1, 1, device=x.device)  # (B, 1, 1)
    dx = rng.randint(-sw, sw + 1, b, 1, 1, device=x.device)
    padded = F.pad(x, (sw, sw, sh, sh), mode="reflect")  # (B, C, H + 2 sh, W + 2 sw)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + sh - dy  # (B, H, 1), inside `padded`
    cols = torch.arange(w, device=x.device).view(1, 1, w) + sw - dx  # (B, 1, W)
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # gather (B, H, W, C), back to NCHW


class Transform:
    """T for CR / bCR: the built-in flip + translate (jitter off images) or a fixed registered augmentation."""

    def __init__(self, name: str, options: dict | None, translation: float, jitter: float, where: str,
                 context: dict[str, Any]):
        if not 0.0 <= translation < 0.5:
            raise GanforgeError(f"{where}.translation: expected a fraction in [0, 0.5), got {translation!r}")
        self.translation = translation
        self.jitter = check_nonnegative(jitter, f"{where}.jitter")
        self.name = name
        self.augment = None
        if name == BUILTIN:
            if options:
                raise GanforgeError(f"{where}.transform_options: the built-in {BUILTIN!r} takes none (use "
                                    f"translation / jitter), got {options!r}")
            return
        if name not in AUGMENTATIONS:
            choices = ", ".join([BUILTIN, *AUGMENTATIONS.names()])
            raise GanforgeError(f"{where}.transform: unknown transform {name!r}; choose one of: {choices}")
        self.augment = AUGMENTATIONS.build(name, options or {}, where=f"{where}.transform_options", **context)
        if is_stateful(self.augment):
            raise GanforgeError(f"{where}.transform: augmentation {name!r} adapts to training statistics; "
                                f"consistency regularization needs a fixed transformation")

    def __call__(self, x: torch.Tensor, rng: SampleRNG) -> torch.Tensor:
        if self.augment is not None:
            return self.augment(x, rng=rng)
        if x.dim() == 4:
            return flip_translate(x, rng, self.translation)
        return x + self.jitter * rng.randn(x.shape[0], *x.shape[1:], device=x.device, dtype=x.dtype)


def _mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared difference over all elements, in float32."""
    return (a.float() - b.float()).pow(2).mean()


@REGULARIZERS.register("cr")
class ConsistencyRegularizer(ObjectiveTerm):
    """CR (Zhang 2020): weight * MSE(D(x_r), D(T(x_r))) on reals, T = flip + translate (or a named augmentation).

    Args:
        weight: lambda (10 in StudioGAN's BigGAN-CR config).
        transform: "flip_translate" (built-in, the CR paper's T) or the name of a registered augmentation.
        transform_options: options of that augmentation (the built-in takes none).
        translation: built-in T's largest shift as a fraction of each side (1/8 in the paper).
        jitter: built-in T's Gaussian std on inputs that are not images (points, vectors), in model units.
    """

    name = "cr"

    def __init__(self, weight: float = 10.0, transform: str = BUILTIN, transform_options: dict | None = None,
                 translation: float = 0.125, jitter: float = 0.01, **context):
        self.weight = check_nonnegative(weight, f"{self.name}.weight")
        self.transform = Transform(transform, transform_options, translation, jitter, self.name, context)

    def consistency(self, ctx: Context, x: torch.Tensor, y: torch.Tensor | None, d_x: torch.Tensor) -> torch.Tensor:
        """MSE(D(x), D(T(x))) given D(x) = `d_x` (B,)."""
        d_tx = ctx.D_of(self.transform(x, ctx.sample_rng()), y).adv  # (B,)
        return _mse(d_x, d_tx)

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        return {self.name: self.weight * self.consistency(ctx, ctx.real, ctx.y_real, ctx.d_real.adv)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weight={self.weight}, transform={self.transform.name!r})"


@REGULARIZERS.register("bcr")
class BalancedConsistencyRegularizer(ConsistencyRegularizer):
    """bCR (Zhao 2021): real_weight * MSE(D(x_r), D(T x_r)) + fake_weight * MSE(D(x_f), D(T x_f)).

    Args:
        real_weight: lambda_real (10 in StudioGAN).
        fake_weight: lambda_fake (10 in StudioGAN); fakes are the detached G(z) of the D phase.
        transform, transform_options, translation, jitter: T, as for `cr`.
    """

    name = "bcr"

    def __init__(self, real_weight: float = 10.0, fake_weight: float = 10.0, transform: str = BUILTIN,
                 transform_options: dict | None = None, translation: float = 0.125, jitter: float = 0.01,
                 **context):
        super().__init__(real_weight, transform, transform_options, translation, jitter, **context)
        self.real_weight = self.weight
        self.fake_weight = check_nonnegative(fake_weight, f"{self.name}.fake_weight")

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        on_real = self.consistency(ctx, ctx.real, ctx.y_real, ctx.d_real.adv)
        on_fake = self.consistency(ctx, ctx.fake, ctx.y_fake, ctx.d_fake.adv)
        return {self.name: self.real_weight * on_real + self.fake_weight * on_fake}

    def __repr__(self) -> str:
        return (f"BalancedConsistencyRegularizer(real_weight={self.real_weight}, fake_weight={self.fake_weight}, "
                f"transform={self.transform.name!r})")


@REGULARIZERS.register("zcr")
class LatentConsistencyRegularizer(ObjectiveTerm):
    """zCR (Zhao 2021): D d_weight * MSE(D(G(z)), D(G(z'))), G -g_weight * MSE(G(z), G(z')), z' = z + sigma * eps.

    The D term trains D (fakes detached); the G term trains G (it makes G map nearby latents to different images).

    Args:
        sigma: std of the latent perturbation (`radius` in StudioGAN; 0.05 in its BigGAN-ICR config).
        d_weight: lambda_dis (20 in StudioGAN's BigGAN-ICR config); 0 turns the D term off.
        g_weight: lambda_gen (0.5 there); 0 turns the G term off.
    """

    def __init__(self, sigma: float = 0.05, d_weight: float = 20.0, g_weight: float = 0.5):
        self.sigma = check_nonnegative(sigma, "zcr.sigma")
        self.d_weight = check_nonnegative(d_weight, "zcr.d_weight")
        self.g_weight = check_nonnegative(g_weight, "zcr.g_weight")

    def perturbed_latents(self, ctx: Context) -> torch.Tensor:
        """z' = z + sigma * eps, eps ~ N(0, I) per sample."""
        z = ctx.z
        return z + self.sigma * ctx.sample_rng().randn(z.shape[0], *z.shape[1:], device=z.device, dtype=z.dtype)

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        if self.d_weight == 0:
            return {}
        with torch.no_grad():  # fakes are constants for D
            fake2 = ctx.G(self.perturbed_latents(ctx), ctx.y_fake).detach()
        d_fake2 = ctx.D_of(fake2, ctx.y_fake).adv  # (B,)
        return {"zcr": self.d_weight * _mse(ctx.d_fake.adv, d_fake2)}

    def g_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        if self.g_weight == 0:
            return {}
        fake2 = ctx.G(self.perturbed_latents(ctx), ctx.y_fake)  # with gradient, as ctx.fake in the G phase
        return {"zcr_g": -self.g_weight * _mse(ctx.fake, fake2)}

    def __repr__(self) -> str:
        return f"LatentConsistencyRegularizer(sigma={self.sigma}, d_weight={self.d_weight}, g_weight={self.g_weight})"
