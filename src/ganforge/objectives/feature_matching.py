"""Feature matching: G matches the batch mean of D's penultimate features on reals.

Salimans et al., "Improved Techniques for Training GANs", 2016 (Sec. 3.1): with f(x) the activations of an
intermediate layer of D, G minimises ||E_{x ~ p_data} f(x) - E_z f(G(z))||_2^2. StudioGAN (used by its MH-GAN
configs) adds it to G's loss with a weight, f being D's penultimate features — here `h`, the backbone features the D
head sees (every `Discriminator` returns them in `DOutput.extras["h"]`):
    L_G += weight * || mean_batch h(x_r) - mean_batch h(G(z)) ||_2^2          (distance "squared_l2", default),
    L_G += weight * mean_k | mean_batch h(x_r)_k - mean_batch h(G(z))_k |     (distance "l1": StudioGAN's
                                                                               `feature_matching_loss`),
weight 1 by default (StudioGAN's lambda). Salimans et al. state the squared L2; StudioGAN's code uses the L1 mean.
Real features are detached (a target for G); D is not trained by this term: both D calls run with D's parameters
out of the graph, so only G receives its gradient. The D calls are the context's cached ones (`ctx.d_real` /
`ctx.d_fake`, through the run's augmentation), shared with the adversarial loss.

A squared norm of batch means is not the mean of per-part values, so the term is not decomposable: gradient
accumulation (`train.accumulate > 1`) is refused. Under data parallelism the means are taken over the global batch
(features gathered from every rank).
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..conditioning.base import DOutput
from ..errors import GanforgeError
from ..registries import REGULARIZERS
from .base import Context, ObjectiveTerm
from .gradients import check_nonnegative


@contextlib.contextmanager
def frozen(module: nn.Module):
    """Parameters of `module` leave the autograd graph while inside (restored after); a no-op when already frozen."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def penultimate(out: DOutput) -> torch.Tensor:
    """D's penultimate features `h` (B, F) from a D output, flattened, float32 (every `Discriminator` returns them)."""
    h = out.get("h")
    if h is None:
        raise GanforgeError("feature-matching: this D returns no penultimate features (DOutput h); use a "
                            "Discriminator (backbone + head), which always does")
    return h.float().flatten(1)


DISTANCES = ("squared_l2", "l1")


@REGULARIZERS.register("feature-matching")
class FeatureMatching(ObjectiveTerm):
    """Feature matching (Salimans 2016): weight * ||mean h(x_r) - mean h(G(z))||^2 on D's penultimate features h.

    Args:
        weight: the term's weight (1).
        distance: "squared_l2" (Salimans 2016: sum of squared gaps) or "l1" (StudioGAN: mean absolute gap).
    """

    name = "feature-matching"
    decomposable = False  # a squared norm of batch means

    def __init__(self, weight: float = 1.0, distance: str = "squared_l2"):
        self.weight = check_nonnegative(weight, f"{self.name}.weight")
        if distance not in DISTANCES:
            raise GanforgeError(f"{self.name}.distance: expected one of {', '.join(DISTANCES)}, got {distance!r}")
        self.distance = distance

    def g_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        with frozen(ctx.D):
            h_real = penultimate(ctx.d_real).detach()  # (B, F): the target
            h_fake = penultimate(ctx.d_fake)  # (B, F): carries G's gradient
        h_real, h_fake = ctx.all_gather(h_real), ctx.all_gather(h_fake)
        if h_real.shape[1:] != h_fake.shape[1:]:
            raise GanforgeError(f"{self.name}: real and fake features differ in shape ({tuple(h_real.shape[1:])} vs "
                                f"{tuple(h_fake.shape[1:])})")
        gap = h_real.mean(dim=0) - h_fake.mean(dim=0)  # (F,)
        value = gap.square().sum() if self.distance == "squared_l2" else gap.abs().mean()
        return {"fm": self.weight * value}

    def __repr__(self) -> str:
        return f"FeatureMatching(weight={self.weight}, distance={self.distance!r})"
