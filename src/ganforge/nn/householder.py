"""The Householder projector (Song et al., "Householder Projector for Unsupervised Latent Semantics Discovery",
ICCV 2023): a linear layer whose weight is a low-rank orthogonal projector W = Q(U) S Q(V).

Q(V) = H(v_1) H(v_2) ... H(v_k) is a product of Householder reflections H(v) = I - 2 v v^T / ||v||^2, so it is
orthogonal whatever the parameters are; S is a fixed rectangular diagonal with `rank` ones. Hence W has exactly `rank`
singular values, all 1, its right singular vectors are the first `rank` rows of Q(V) (the directions the method reads
off), and gradient descent on U and V never leaves the set of such projectors.

Only the first `rank` columns of Q(U) reach W (S zeroes the rest), and any orthonormal `rank`-frame is the first
`rank` columns of a product of `rank` reflections (Householder QR), so U holds `rank` reflection vectors instead of
`out` of them: the same set of weights at a fraction of the cost for wide layers (a DCGAN's z -> 4x4xC linear). V keeps
the full `in` reflections, as the paper's Q(V). The paper's blocked "fasthpp" product is a speed-up of the same product;
here the reflections are applied one after another. The paper's initialisation: U, V ~ N(0, 0.05^2).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GanforgeError


def householder_product(vectors: torch.Tensor, cols: int | None = None) -> torch.Tensor:
    """The first `cols` columns (all when None) of H(v_1) H(v_2) ... H(v_k), for `vectors` (k, d) = rows v_i."""
    k, d = vectors.shape
    cols = d if cols is None else cols
    x = torch.eye(d, cols, dtype=vectors.dtype, device=vectors.device)
    for i in range(k - 1, -1, -1):  # Q x = H_1 (H_2 (... (H_k x)))
        v = vectors[i]
        x = x - (2.0 / (v @ v).clamp_min(1e-30)) * torch.outer(v, v @ x)
    return x


class HouseholderProjector(nn.Module):
    """y = x W^T + b with W = Q(U)[:, :rank] Q(V)[:rank, :] (out, in): `rank` unit singular values, the rest 0."""

    def __init__(self, in_features: int, out_features: int, rank: int = 10, bias: torch.Tensor | None = None,
                 init_std: float = 0.05, generator: torch.Generator | None = None):
        super().__init__()
        if not 1 <= rank <= min(in_features, out_features):
            raise GanforgeError(f"Householder projector: rank must be in [1, {min(in_features, out_features)}] for a "
                                f"{in_features} -> {out_features} layer, got {rank}")
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.u = nn.Parameter(torch.randn(rank, out_features, generator=generator) * init_std)
        self.v = nn.Parameter(torch.randn(in_features, in_features, generator=generator) * init_std)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone().reshape(out_features))

    def q_v(self) -> torch.Tensor:
        """Q(V) (in, in), orthogonal; its first `rank` rows are the right singular vectors of W."""
        return householder_product(self.v)

    def left(self) -> torch.Tensor:
        """Q(U)[:, :rank] (out, rank), orthonormal columns."""
        return householder_product(self.u, self.rank)

    @property
    def weight(self) -> torch.Tensor:
        return self.left() @ self.q_v()[: self.rank]

    def directions(self) -> torch.Tensor:
        """(rank, in) the projector's unit directions in its input space, rows of Q(V)."""
        return self.q_v()[: self.rank]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"
