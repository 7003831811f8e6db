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
here the reflections are applied one after another. The paper's initialisation: U, V ~ N(0, 0.05^2) (its code has an
SVD initialisation commented out); `HouseholderProjector.from_weight` offers it: the projector starts as the top-`rank`
singular subspaces of a trained layer's weight (Householder QR of the singular vectors gives the reflections).
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


def householder_vectors(frame: torch.Tensor) -> torch.Tensor:
    """(r, d) reflection vectors v with householder_product(v, r) = frame * (+-1 per column), for an orthonormal
    (d, r) frame (Householder QR: H(v_r) ... H(v_1) frame is diagonal with entries +-1)."""
    a = frame.detach().clone().double()
    d, r = a.shape
    out = torch.zeros(r, d, dtype=torch.float64)
    for k in range(r):
        x = a[k:, k]
        v = x.clone()
        v[0] += (1.0 if x[0] >= 0 else -1.0) * x.norm()  # x - alpha e_1, alpha = -sign(x_0) ||x||: no cancellation
        out[k, k:] = v
        a = a - (2.0 / (out[k] @ out[k])) * torch.outer(out[k], out[k] @ a)
    return out.to(frame.dtype)


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

    @classmethod
    def from_weight(cls, weight: torch.Tensor, rank: int, bias: torch.Tensor | None = None) -> "HouseholderProjector":
        """A projector whose W = U_r V_r^T spans the top-`rank` singular subspaces of `weight` (out, in)."""
        out_f, in_f = weight.shape
        proj = cls(in_f, out_f, rank, bias)
        U, _, Vh = torch.linalg.svd(weight.detach().double(), full_matrices=False)
        Ur, Vr = U[:, :rank], Vh[:rank].t()
        hu, hv = householder_vectors(Ur), householder_vectors(Vr)
        # the products reach U_r diag(a) and V_r diag(b) with signs a, b fixed by the frames; coordinate reflections
        # H(e_i) among Q(V)'s first in - rank reflections flip e_i where a_i b_i = -1, so that W = U_r V_r^T exactly
        a = torch.sign((householder_product(hu, rank) * Ur).sum(0))
        b = torch.sign((householder_product(hv, rank) * Vr).sum(0))
        flips = [i for i in range(rank) if a[i] * b[i] < 0]
        fixed = [rank + j for j in range(in_f - rank)]  # e_{rank+1} ...: reflections that fix e_1 .. e_rank
        axes = (flips + fixed)[: in_f - rank] if len(flips) <= in_f - rank else fixed
        v = torch.zeros(in_f, in_f, dtype=torch.float64)
        v[torch.arange(in_f - rank), torch.tensor(axes, dtype=torch.long)] = 1.0
        # Q(V) = H(v_1) ... H(v_in): its first rank rows are the first rank columns of H(v_in) ... H(v_1)
        v[in_f - rank:] = hv.flip(0)
        with torch.no_grad():
            proj.u.copy_(hu)
            proj.v.copy_(v)
        return proj

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
