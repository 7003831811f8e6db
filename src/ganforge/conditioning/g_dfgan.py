"""DF-GAN's deep text-image fusion in G: every norm layer becomes a fusion block driven by [z, e].

"DF-GAN: A Simple and Effective Baseline for Text-to-Image Synthesis" (Tao et al., CVPR 2022), Sec. 3.3 (deep
text-image fusion block, Fig. 4): a fusion block is two channel-wise affine transformations, each followed by
LeakyReLU(0.2),
    DFFusion(x, c) = LReLU(Affine_2(LReLU(Affine_1(x, c)), c)),    Affine_k(x, c) = gamma_k(c) * x + beta_k(c),
whose per-channel scale gamma_k and shift beta_k are predicted from the condition by two small MLPs (Linear(cond, C)
-> ReLU -> Linear(C, C)). DF-GAN's G has no BatchNorm, and its condition for every block is the noise joined with the
sentence vector, c = [z, e]; z alone is G's input.

Checked against the authors' code (tobran/DF-GAN, `code/models/GAN.py`: `DFBLK`, `Affine`, `NetG.forward`): two
`Affine` + LeakyReLU(0.2) per `DFBLK`; hidden width = the channel count; the last layer of the gamma MLP starts with
zero weight and bias 1 and that of the beta MLP with zero weight and bias 0 (so gamma = 1, beta = 0 at init and the
block is LReLU(LReLU(x))); cond = torch.cat((noise, c)) in that order.

How it plugs into a family: the family asks for its norm layers and gets fusion blocks instead, so this method
replaces the family's BatchNorm by DF-GAN's fusion (nothing normalises G's activations any more). The family's own
activation still follows each one (DCGAN: ReLU(DFFusion(up(x), c))), and its layout stays the family's: this is
DF-GAN's conditioning on the chosen architecture, not DF-GAN's generator (whose residual block is fusion -> conv ->
fusion -> conv with a shortcut). The MLPs live inside a `LabelNorm`, so the architecture's init scheme and spectral
norm leave them (and their identity start) alone.

`text_input: true` (not DF-GAN's: its G input is z alone) also feeds the sentence vector to G's first layer, input
[z, e], so the text can shape the initial spatial layout (where shapes go) and not only modulate channels after it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GanforgeError
from ..nn.norms import LabelNorm
from ..registries import G_CONDITIONING
from .base import GConditioning, GInput
from .text_inputs import check_text_dim, sentence_vectors

NAME = "conditioning.g 'dfgan'"
SLOPE = 0.2  # DF-GAN's LeakyReLU slope in the fusion block


def _mlp(cond_dim: int, num_features: int, last_bias: float) -> nn.Sequential:
    """Linear(cond_dim, C) -> ReLU -> Linear(C, C), its last layer zero with bias `last_bias` (DF-GAN's `Affine`)."""
    mlp = nn.Sequential(nn.Linear(cond_dim, num_features), nn.ReLU(), nn.Linear(num_features, num_features))
    nn.init.zeros_(mlp[2].weight)
    nn.init.constant_(mlp[2].bias, last_bias)
    return mlp


class ConditionalAffine(nn.Module):
    """gamma(c) * x + beta(c), per channel; gamma = 1 and beta = 0 at init (DF-GAN, Sec. 3.3)."""

    def __init__(self, num_features: int, cond_dim: int):
        super().__init__()
        self.gamma = _mlp(cond_dim, num_features, 1.0)
        self.beta = _mlp(cond_dim, num_features, 0.0)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], x.shape[1]) + (1,) * (x.dim() - 2)  # broadcast over spatial dims
        return self.gamma(c).view(shape) * x + self.beta(c).view(shape)


class DFFusion(LabelNorm):
    """DF-GAN's fusion block: LReLU(Affine_2(LReLU(Affine_1(x, c)), c)) over (B, C) or (B, C, H, W) features."""

    def __init__(self, num_features: int, cond_dim: int):
        super().__init__()
        if cond_dim < 1:
            raise GanforgeError(f"DF-GAN fusion block: needs cond_dim >= 1, got {cond_dim}")
        self.num_features, self.cond_dim = num_features, cond_dim
        self.affine1 = ConditionalAffine(num_features, cond_dim)
        self.affine2 = ConditionalAffine(num_features, cond_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None or y.dim() != 2 or tuple(y.shape) != (x.shape[0], self.cond_dim):
            got = None if y is None else tuple(y.shape)
            raise GanforgeError(f"DF-GAN fusion block: expected a condition of shape ({x.shape[0]}, "
                                f"{self.cond_dim}), got {got}")
        c = y.to(x.dtype)
        h = F.leaky_relu(self.affine1(x, c), SLOPE)  # first affine + LeakyReLU (Fig. 4)
        return F.leaky_relu(self.affine2(h, c), SLOPE)  # second affine + LeakyReLU

    def extra_repr(self) -> str:
        return f"{self.num_features}, cond_dim={self.cond_dim}"


@G_CONDITIONING.register("dfgan")
class DFGANFusion(GConditioning):
    """DF-GAN (Tao et al. 2022): fusion blocks on [z, e] in place of BatchNorm; G's input is z."""

    uses_text = True  # the condition is a sentence embedding (B, text_dim)
    uses_labels = False
    labels_in_norms = True  # the text enters only through the norm layers (the fusion blocks)

    def __init__(self, *, num_classes: int = 0, text_dim: int = 0, text_input: bool = False):
        """
        Args:
            text_input: G's first layer also reads the sentence vector (input [z, e]); DF-GAN's G reads z alone.
        """
        self.text_dim = check_text_dim(text_dim, NAME)
        if not isinstance(text_input, bool):
            raise GanforgeError(f"{NAME}: text_input must be true or false, got {text_input!r}")
        super().__init__(num_classes=num_classes)
        self.z_dim = 0
        self.text_input = text_input

    def bind(self, z_dim: int, num_blocks: int) -> None:
        super().bind(z_dim, num_blocks)
        self.z_dim = z_dim

    @property
    def cond_dim(self) -> int:
        """Width of every fusion block's condition [z, e]."""
        return self.z_dim + self.text_dim

    def in_features(self, z_dim: int) -> int:
        return z_dim + (self.text_dim if self.text_input else 0)

    def norm1d(self, num_features: int) -> nn.Module:
        return DFFusion(num_features, self.cond_dim)

    def norm2d(self, num_features: int) -> nn.Module:
        return DFFusion(num_features, self.cond_dim)

    def prepare(self, z: torch.Tensor, y: torch.Tensor | None) -> GInput:
        e = sentence_vectors(y, self.text_dim, z.shape[0], NAME)  # (B, text_dim)
        c = torch.cat([z, e.to(z.dtype)], dim=1)  # (B, z_dim + text_dim): DF-GAN's cat((noise, sentence))
        return GInput(c if self.text_input else z, [c] * self.num_blocks)  # input [z, e] with text_input

    def extra_repr(self) -> str:
        return f"text_dim={self.text_dim}, text_input={self.text_input}"
