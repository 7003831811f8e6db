"""Text-conditional BatchNorm in G: a projected sentence embedding drives every norm layer.

The condition is a caption's sentence embedding e (B, text_dim) from the run's text encoder, not a class label.
A learned linear map projects it to `dim` (p = W_p e + b_p; "Generative Adversarial Text to Image Synthesis", Reed
et al., ICML 2016, compress the text embedding with a fully connected layer to 128 before joining it to z, and
Text2FaceGAN, Nasir et al., 2019, feeds a fixed pretrained sentence embedding into a conditional DCGAN the same way:
both from memory, not re-checked against the papers), and p takes the place of
BigGAN-deep's shared class embedding ("Large Scale GAN Training for High Fidelity Natural Image Synthesis", Brock et
al., ICLR 2019, Sec. 3 and App. B): G's input is [z, p] and every norm layer is the vector-conditional BatchNorm
x_hat * (1 + W_g c) + W_b c on c = [p, z] (`with_z: true`, BigGAN-deep) or c = p (`with_z: false`).

The projection is an ordinary layer of G: it trains, averages (G_ema) and is exported with G, and the architecture's
init scheme (and G's spectral norm, where a family has one) reaches it. The norm layers' W_g, W_b start at zero, so
at init every norm is plain BatchNorm and the text first reaches G through its input.
"""
from __future__ import annotations

import torch
from torch import nn

from ..checks import check_int
from ..errors import GanforgeError
from ..nn.norms import VectorConditionalBatchNorm1d, VectorConditionalBatchNorm2d
from ..registries import G_CONDITIONING
from .base import GConditioning, GInput
from .text_inputs import check_text_dim, sentence_vectors

NAME = "conditioning.g 'text-cbn'"


@G_CONDITIONING.register("text-cbn")
class TextConditionalBN(GConditioning):
    """Sentence embedding -> linear projection p; G input [z, p], vector-conditional BatchNorm on [p, z] everywhere.

    Args:
        dim: width of the projected sentence embedding p (BigGAN's shared-embedding width, 128).
        with_z: the norms' condition is [p, z] (BigGAN-deep); false gives them p alone.
        eps: BatchNorm epsilon (BigGAN / StudioGAN: 1e-4).
        momentum: BatchNorm running-statistics momentum.
        sn: spectral norm on the norm layers' gain / bias maps (BigGAN's SN in G).
    """

    uses_text = True  # the condition is a sentence embedding (B, text_dim)
    uses_labels = False
    labels_in_norms = True  # the norms are the method: families without norm layers must add them

    def __init__(self, *, num_classes: int = 0, text_dim: int = 0, dim: int = 128, with_z: bool = True,
                 eps: float = 1e-4, momentum: float = 0.1, sn: bool = False):
        self.text_dim = check_text_dim(text_dim, NAME)
        dim = check_int(dim, f"{NAME}: dim", minimum=1)
        if not eps > 0:
            raise GanforgeError(f"{NAME}: eps must be > 0, got {eps}")
        super().__init__(num_classes=num_classes)
        self.dim, self.with_z, self.eps, self.momentum, self.sn = dim, with_z, eps, momentum, sn
        self.proj = nn.Linear(text_dim, dim)  # p = W_p e + b_p
        self.z_dim = 0

    def bind(self, z_dim: int, num_blocks: int) -> None:
        super().bind(z_dim, num_blocks)
        self.z_dim = z_dim

    @property
    def cond_dim(self) -> int:
        """Width of every block's conditioning vector: [p, z] (with_z) or p."""
        return self.dim + (self.z_dim if self.with_z else 0)

    def in_features(self, z_dim: int) -> int:
        return z_dim + self.dim  # [z, p]

    def norm1d(self, num_features: int) -> nn.Module:
        return VectorConditionalBatchNorm1d(num_features, self.cond_dim, self.eps, self.momentum, self.sn)

    def norm2d(self, num_features: int) -> nn.Module:
        return VectorConditionalBatchNorm2d(num_features, self.cond_dim, self.eps, self.momentum, self.sn)

    def prepare(self, z: torch.Tensor, y: torch.Tensor | None) -> GInput:
        e = sentence_vectors(y, self.text_dim, z.shape[0], NAME)  # (B, text_dim)
        p = self.proj(e.to(z.dtype))  # (B, dim)
        c = torch.cat([p, z], dim=1) if self.with_z else p  # (B, cond_dim), the same for every block
        return GInput(torch.cat([z, p], dim=1), [c] * self.num_blocks)  # G's input: (B, z_dim + dim)

    def extra_repr(self) -> str:
        return f"text_dim={self.text_dim}, dim={self.dim}, with_z={self.with_z}"
