"""A component module from outside the package, loaded the way a user's would be (`plugins: [ganforge_testplugin]`).

It exercises the interfaces a third-party method needs, each through the public protocol only:
- `test-aux` D head: an extra output (`aux_logits`) beside `adv`;
- `test-aux-loss` regularizer: `requires` that extra; `test-aux-with-loss` head: brings that term itself;
- `test-latent-q` regularizer: an `nn.Module` term with its own parameters that trains with G (InfoGAN's Q head in
  miniature: regress z's first coordinate from D's last intermediate feature map), sized from the build context;
- `test-adaptive-noise` augmentation: ADA-style adaptive noise whose strength follows sign(D(real)) statistics
  (checkpointed buffer, logged value);
- `test-recorder` augmentation: the identity, recording every statistics window it is handed;
- `test-silent` regularizer: a lazy term that never contributes (its phase must be skipped cleanly);
- `test-batchwise` regularizer: a batch-level (non-decomposable) term using `all_gather`;
- `test-labelled` G conditioning: declares that it uses labels while ignoring them (the run is then conditional).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.augment.base import Augment
from ganforge.conditioning.base import DHead, DOutput
from ganforge.conditioning.g_none import Unconditional
from ganforge.objectives.base import Context, ObjectiveTerm
from ganforge.registries import AUGMENTATIONS, D_HEADS, G_CONDITIONING, REGULARIZERS


@D_HEADS.register("test-aux")
class AuxHead(DHead):
    """Test head: adv = psi(h), plus two auxiliary logits."""

    provides = frozenset({"aux_logits"})

    def __init__(self, *, in_features: int, num_classes: int = 0, d_sn: bool = False):
        super().__init__()
        self.psi = nn.Linear(in_features, 1)
        self.aux = nn.Linear(in_features, 2)

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        return DOutput(self.psi(h).squeeze(1), aux_logits=self.aux(h))


@REGULARIZERS.register("test-aux-loss")
class AuxLoss(ObjectiveTerm):
    """Test term: cross-entropy of the aux logits toward class 0 on reals."""

    requires = frozenset({"aux_logits"})

    def __init__(self, weight: float = 0.1):
        self.weight = weight

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        logits = ctx.d_real.aux_logits.float()
        return {"aux": self.weight * F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long))}


@D_HEADS.register("test-aux-with-loss")
class AuxHeadWithLoss(AuxHead):
    """Test head that brings its own loss term (as an auxiliary-classifier head brings its classification loss)."""

    def __init__(self, *, in_features: int, num_classes: int = 0, d_sn: bool = False, aux_weight: float = 0.1):
        super().__init__(in_features=in_features, num_classes=num_classes, d_sn=d_sn)
        self.aux_weight = aux_weight

    def terms(self) -> list[ObjectiveTerm]:
        return [AuxLoss(self.aux_weight)]


@REGULARIZERS.register("test-latent-q")
class LatentQ(ObjectiveTerm, nn.Module):
    """Test term with parameters trained with G: predict z[:, 0] from D's last tapped feature map on fakes."""

    trains_with = "G"
    needs_features = True

    def __init__(self, weight: float = 1.0, *, tap_shapes: dict, feature_dim: int, total_steps: int):
        nn.Module.__init__(self)
        last = list(tap_shapes.values())[-1]
        self.q = nn.Linear(last[0], 1)
        self.weight, self.feature_dim, self.total_steps = weight, feature_dim, total_steps

    def g_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        feats = list(ctx.d_fake.features.values())[-1].float()
        pooled = feats.flatten(2).mean(2) if feats.dim() > 2 else feats  # (B, C)
        return {"q": self.weight * F.mse_loss(self.q(pooled).squeeze(1), ctx.z[:, 0].float())}


@AUGMENTATIONS.register("test-adaptive-noise")
class AdaptiveNoise(Augment):
    """Test augmentation: x + p * N(0, 1), p moved by +-0.05 toward E[sign D(real)] = target, every 2 D steps."""

    update_every = 2

    def __init__(self, target: float = 0.0):
        super().__init__()
        self.target = target
        self.register_buffer("p", torch.zeros(()))

    def forward(self, x, rng=None):
        from ganforge.training.rng import SampleRNG

        rng = rng or SampleRNG()
        return x + self.p.to(x.dtype) * rng.randn(x.shape[0], *x.shape[1:], device=x.device, dtype=x.dtype)

    def update(self, stats):
        step = 0.05 if stats["d_real_sign"] > self.target else -0.05
        self.p.copy_((self.p + step).clamp(0.0, 1.0))

    def log_values(self):
        return {"noise_p": float(self.p)}


@AUGMENTATIONS.register("test-recorder")
class Recorder(Augment):
    """Test augmentation: the identity, keeping every statistics window it receives."""

    def __init__(self, every: int = 2):
        super().__init__()
        self.update_every = every
        self.received: list[dict] = []

    def update(self, stats):
        self.received.append(dict(stats))


@REGULARIZERS.register("test-silent")
class Silent(ObjectiveTerm):
    """Test term: a lazy D term that returns nothing."""

    def __init__(self, every: int = 2):
        self.every = every

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        return {}


@REGULARIZERS.register("test-batchwise")
class Batchwise(ObjectiveTerm):
    """Test term: weight * variance of D(real) over the *global* batch (not a mean over samples)."""

    decomposable = False

    def __init__(self, weight: float = 0.01):
        self.weight = weight
        self.seen_batch = 0

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        logits = ctx.all_gather(ctx.d_real.adv.float())
        self.seen_batch = logits.shape[0]
        return {"batch_var": self.weight * logits.var()}


@G_CONDITIONING.register("test-labelled")
class Labelled(Unconditional):
    """Test G conditioning: declares that it uses labels (it ignores them)."""

    uses_labels = True
