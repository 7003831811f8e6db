"""InfoGAN: latent codes in z that G must keep recoverable, through a Q head on D's features.

"InfoGAN: Interpretable Representation Learning by Information Maximizing Generative Adversarial Nets" (Chen et al.,
2016): the latent is (noise, c); G and a recognition network Q maximize the variational lower bound of I(c; G(z, c)),
Eq. 4-5: L_I = E[log Q(c | G(z, c))] + H(c), i.e. minimize the negative log-likelihood of the codes under Q.
Codes (as in StudioGAN): one one-hot code per entry of `discrete` (uniform categorical), and `continuous` codes
~ U(-1, 1). They are the LAST sum(discrete) + continuous coordinates of z (`model.z_dim` counts them), written by
`sample_codes` when G samples its latents. Injection (StudioGAN's two options): `concat` feeds all of z to G's input;
`cbn` feeds the noise part to the input and the codes to every block's norm layers (vector-conditional BatchNorm).

The Q head (`InfoQ`) reads D's penultimate features h of the fakes: discrete loss = sum over code blocks of
CE(logits, code index); continuous loss = factored-Gaussian NLL, mean over the batch of
sum_k [0.5 log(2 pi var_k + 1e-6) + (c_k - mu_k)^2 / (2 var_k + 1e-6)], var = exp(linear(h)). Its parameters train
with G (`trains_with = "G"`) and are frozen in D steps; D's own weights are frozen in G steps, so the info loss trains
G and Q only (Chen et al. 2016, Sec. 5; StudioGAN).

Unsupervised (`uses_labels` False). When the run is class-conditional anyway (another component uses labels), the
one-hot label joins the codes: appended to G's input (concat) or to the norm layers' vector (cbn).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GanforgeError
from ..nn.norms import (UncondBatchNorm1d, UncondBatchNorm2d, VectorConditionalBatchNorm1d,
                        VectorConditionalBatchNorm2d)
from ..objectives.base import Context, ObjectiveTerm
from ..registries import G_CONDITIONING
from .base import GConditioning, GInput

INJECT = ("concat", "cbn")


@G_CONDITIONING.register("infogan")
class InfoGAN(GConditioning):
    """InfoGAN latent codes (Chen et al. 2016): one-hot and U(-1, 1) codes at the end of z, recovered by a Q head.

    Args:
        discrete: category count of each one-hot code (one code per entry; [] for none).
        continuous: number of continuous codes ~ U(-1, 1).
        inject: "concat" (all of z into G's input) or "cbn" (noise to the input, codes to every norm layer).
        discrete_weight: weight of the discrete codes' cross-entropy (StudioGAN: 1).
        continuous_weight: weight of the continuous codes' Gaussian NLL.
        eps: BatchNorm epsilon of the norm layers (inject: cbn).
        momentum: BatchNorm running-statistics momentum (inject: cbn).
    """

    uses_labels = False  # unsupervised: the codes need no labels

    def __init__(self, *, num_classes: int = 0, discrete: tuple[int, ...] = (10,), continuous: int = 2,
                 inject: str = "concat", discrete_weight: float = 1.0, continuous_weight: float = 1.0,
                 eps: float = 1e-4, momentum: float = 0.1):
        where = "conditioning.g 'infogan'"
        bad = [k for k in discrete if k < 2]
        if bad:
            raise GanforgeError(f"{where}: discrete: every code needs >= 2 categories, got {list(discrete)}")
        if continuous < 0:
            raise GanforgeError(f"{where}: continuous must be >= 0, got {continuous}")
        if not discrete and continuous == 0:
            raise GanforgeError(f"{where}: no codes (discrete: [] and continuous: 0); add codes or use 'none'")
        if inject not in INJECT:
            raise GanforgeError(f"{where}: inject must be one of {', '.join(INJECT)}, got {inject!r}")
        for key, value in (("discrete_weight", discrete_weight), ("continuous_weight", continuous_weight)):
            if not value >= 0:
                raise GanforgeError(f"{where}: {key} must be >= 0, got {value}")
        super().__init__(num_classes=num_classes)
        self.discrete, self.continuous = tuple(int(k) for k in discrete), int(continuous)
        self.code_dim = sum(self.discrete) + self.continuous
        self.inject = inject
        self.codes_in_norms = inject == "cbn"
        self.labels_in_norms = self.codes_in_norms  # with labels, cbn carries them through the norms only
        self.discrete_weight, self.continuous_weight = discrete_weight, continuous_weight
        self.eps, self.momentum = eps, momentum
        self.z_dim = 0
        self._norms_built = 0

    # --------------------------------------------------------------------------------------------------- latents
    @property
    def noise_dim(self) -> int:
        """Width of z's noise part (its first coordinates)."""
        return self.z_dim - self.code_dim

    def bind(self, z_dim: int, num_blocks: int) -> None:
        super().bind(z_dim, num_blocks)
        if z_dim <= self.code_dim:
            raise GanforgeError(f"conditioning.g 'infogan': model.z_dim={z_dim} must be larger than the code size "
                                f"{self.code_dim} (discrete {list(self.discrete)} + continuous {self.continuous}), "
                                f"which takes z's last {self.code_dim} coordinates; set model.z_dim >= "
                                f"{self.code_dim + 1} or use fewer codes")
        self.z_dim = z_dim

    def sample_codes(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """z's last code_dim coordinates replaced by one-hot codes (uniform categories) and U(-1, 1) codes."""
        n = z.shape[0]
        codes = [F.one_hot(torch.randint(0, k, (n,), generator=generator), k).to(z.dtype) for k in self.discrete]
        codes.append(torch.rand(n, self.continuous, generator=generator, dtype=z.dtype) * 2 - 1)
        return torch.cat([z[:, :z.shape[1] - self.code_dim], *codes], dim=1)  # (n, z_dim)

    # ------------------------------------------------------------------------------------------------ G's layers
    def _label_dim(self) -> int:
        """Width of the one-hot labels that join the codes (0 in an unconditional run)."""
        return max(self.num_classes, 0)

    def in_features(self, z_dim: int) -> int:
        if self.codes_in_norms:
            return z_dim - self.code_dim  # the noise part only
        return z_dim + self._label_dim()  # noise, codes [and one-hot labels]

    def _norm(self, vector_cls: type, plain_cls: type, num_features: int) -> nn.Module:
        if not self.codes_in_norms:
            return plain_cls(num_features)
        self._norms_built += 1
        return vector_cls(num_features, self.code_dim + self._label_dim(), self.eps, self.momentum)

    def norm1d(self, num_features: int) -> nn.Module:
        return self._norm(VectorConditionalBatchNorm1d, UncondBatchNorm1d, num_features)

    def norm2d(self, num_features: int) -> nn.Module:
        return self._norm(VectorConditionalBatchNorm2d, UncondBatchNorm2d, num_features)

    def prepare(self, z: torch.Tensor, y: torch.Tensor | None) -> GInput:
        labels = []
        if self.num_classes > 0:
            if y is None:
                raise GanforgeError("conditioning.g 'infogan': this run is class-conditional; pass class labels y, "
                                    "got None")
            labels = [F.one_hot(y, self.num_classes).to(z.dtype)]
        if not self.codes_in_norms:  # concat: noise, codes (and labels) into G's input
            return GInput(torch.cat([z, *labels], dim=1), [None] * self.num_blocks)
        if self._norms_built == 0:
            raise GanforgeError("conditioning.g 'infogan': inject: cbn feeds the codes through G's norm layers, but "
                                "this architecture built none (e.g. mlp with g_norm: false, style-mlp); use inject: "
                                "concat, or turn G's norm layers on (model.g_norm: true for mlp)")
        split = z.shape[1] - self.code_dim
        c = torch.cat([z[:, split:], *labels], dim=1)  # (B, code_dim [+ K])
        return GInput(z[:, :split], [c] * self.num_blocks)

    # -------------------------------------------------------------------------------------------------- its term
    def terms(self, *, feature_dim: int) -> list[ObjectiveTerm]:
        """The Q head and its information loss, sized to D's penultimate features."""
        return [InfoQ(feature_dim=feature_dim, discrete=self.discrete, continuous=self.continuous,
                      discrete_weight=self.discrete_weight, continuous_weight=self.continuous_weight)]

    def extra_repr(self) -> str:
        return f"discrete={list(self.discrete)}, continuous={self.continuous}, inject={self.inject}"


def gaussian_nll(c: torch.Tensor, mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Factored-Gaussian NLL, summed over codes, mean over the batch (with StudioGAN's 1e-6 guards)."""
    nll = 0.5 * torch.log(2 * math.pi * var + 1e-6) + (c - mu).pow(2) / (2 * var + 1e-6)  # (B, K)
    return nll.sum(dim=1).mean()


class InfoQ(ObjectiveTerm, nn.Module):
    """InfoGAN's Q head on D's features of the fakes: CE per discrete code, Gaussian NLL of the continuous codes."""

    trains_with = "G"  # Q trains with G's optimizer and is frozen in D steps (Chen et al. 2016; StudioGAN)

    def __init__(self, *, feature_dim: int, discrete: tuple[int, ...], continuous: int, discrete_weight: float = 1.0,
                 continuous_weight: float = 1.0):
        nn.Module.__init__(self)
        self.discrete, self.continuous = tuple(discrete), continuous
        self.code_dim = sum(self.discrete) + continuous
        self.discrete_weight, self.continuous_weight = discrete_weight, continuous_weight
        self.logits = nn.Linear(feature_dim, sum(self.discrete)) if self.discrete else None
        self.mu = nn.Linear(feature_dim, continuous) if continuous else None
        self.log_var = nn.Linear(feature_dim, continuous) if continuous else None

    def losses(self, h: torch.Tensor, codes: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unweighted info losses from D features h (B, F) and the codes (B, code_dim) G was given."""
        out: dict[str, torch.Tensor] = {}
        if self.logits is not None:
            logits = self.logits(h).float().split(self.discrete, dim=1)
            targets = codes[:, :sum(self.discrete)].split(self.discrete, dim=1)
            # -E[log Q(c_d | x)]: CE of each categorical code (Chen et al. 2016, Eq. 5)
            out["info_discrete"] = sum(F.cross_entropy(lg, t.argmax(dim=1)) for lg, t in zip(logits, targets))
        if self.mu is not None:
            c = codes[:, sum(self.discrete):]
            out["info_continuous"] = gaussian_nll(c, self.mu(h).float(), torch.exp(self.log_var(h).float()))
        return out

    def g_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        h = ctx.d_fake.h.float()  # (B, feature_dim): D's penultimate features of G(z)
        codes = ctx.z[:, ctx.z.shape[1] - self.code_dim:].float()
        weights = {"info_discrete": self.discrete_weight, "info_continuous": self.continuous_weight}
        return {k: weights[k] * v for k, v in self.losses(h, codes).items()}
