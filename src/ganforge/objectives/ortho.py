"""BigGAN's orthogonal regularization of G's weights (off-diagonal form).

Brock et al., "Large Scale GAN Training for High Fidelity Natural Image Synthesis", ICLR 2019 (Sec. 3.1): instead of
pushing W^T W to the identity, only the off-diagonal entries are penalised, so filters become mutually orthogonal
while their norms stay free:

    R_beta(W) = beta * ||W^T W ⊙ (1 - I)||_F^2,   beta = 1e-4,  summed over G's weight matrices.

Each parameter with >= 2 dims is read as a matrix W of shape (out, in * kh * kw) — BigGAN-PyTorch's `utils.ortho`
does the same — whose *rows* are the filters, so the Gram matrix taken is W W^T (out x out); the paper's W^T W
is that Gram when W's columns are the filters. Embedding tables (G's shared class embedding, blacklisted in BigGAN)
and 1-D parameters (biases, gains) are left out.

This term is an ordinary G loss (it trains with G, in the G phase). BigGAN-PyTorch instead adds a gradient to
`param.grad` after backward: 2 * s * ((W W^T) ⊙ (1 - I)) W with s = `--G_ortho` (default 0.0; the code's comment
calls 1e-4 BigGAN's default). The gradient of the loss here is exactly twice that. With B = (W W^T) ⊙ (1 - I):
d||B||_F^2 = 2 <B, d(W W^T)> (because (1 - I) ⊙ (1 - I) = 1 - I) = 2 <B, dW W^T + W dW^T> = 4 <B W, dW>
(B is symmetric), so grad_W beta ||B||_F^2 = 4 beta B W = 2 x BigGAN's 2 beta B W. Setting weight = s / 2 therefore
reproduces BigGAN-PyTorch's update exactly (same gradient, added before the optimizer step, for Adam as for SGD);
weight = s follows the paper's equation and doubles it.
"""
from __future__ import annotations

import torch
from torch import nn

from ..registries import REGULARIZERS
from .base import Context, ObjectiveTerm
from .gradients import check_nonnegative


def ortho_weights(G: nn.Module) -> list[torch.Tensor]:
    """G's parameters with >= 2 dims, outside embedding tables, each as an (out, fan_in) matrix."""
    out = []
    for module in G.modules():
        if isinstance(module, nn.Embedding):
            continue
        for p in module.parameters(recurse=False):
            if p.dim() >= 2:
                out.append(p.reshape(p.shape[0], -1))
    return out


def off_diagonal_gram_sq(W: torch.Tensor) -> torch.Tensor:
    """||(W W^T) ⊙ (1 - I)||_F^2 for W (out, fan_in), in float32."""
    W = W.float()
    gram = W @ W.t()  # (out, out)
    off = 1 - torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype)  # (1 - I)
    return (gram * off).pow(2).sum()


@REGULARIZERS.register("ortho")
class OrthogonalRegularizer(ObjectiveTerm):
    """BigGAN ortho reg (Brock 2019): weight * sum_W ||W W^T ⊙ (1 - I)||_F^2 over G's weights, a G loss.

    Args:
        weight: beta (1e-4 in the paper); use s / 2 to reproduce BigGAN-PyTorch's `--G_ortho s` gradient exactly.
    """

    trains_with = "G"  # a G-phase term (it owns no parameters of its own)

    def __init__(self, weight: float = 1e-4):
        self.weight = check_nonnegative(weight, "ortho.weight")

    def g_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        weights = ortho_weights(ctx.G)
        if not weights:
            return {}
        with torch.autocast(device_type=weights[0].device.type, enabled=False):  # float32 Gram matrices
            total = sum(off_diagonal_gram_sq(W) for W in weights)
        return {"ortho": self.weight * total}

    def __repr__(self) -> str:
        return f"OrthogonalRegularizer(weight={self.weight})"
