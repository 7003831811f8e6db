"""BigGAN conditioning in G: a shared class embedding and a hierarchical latent feed every norm layer.

"Large Scale GAN Training for High Fidelity Natural Image Synthesis" (Brock et al., 2019, Sec. 3, App. B): every
conditional BatchNorm of G reads one class embedding e(y) shared by all layers (instead of per-layer class tables),
through linear maps to its gain and bias: x_hat * (1 + W_g c) + W_b c. With a hierarchical latent (`hier: true`, BigGAN)
z is split into num_blocks + 1 equal chunks: chunk 0 is G's input, block i's norms get c = [e(y), chunk i+1] (ImageNet
128px: z_dim 120 -> 6 x 20, c of width 148). Without (`hier: false`, BigGAN-deep) G's input and every block's c are
[z, e(y)].

The embedding belongs to this module, so it trains, averages (G_ema) and is exported with G. It is initialized
orthogonally (BigGAN's G init) whatever the architecture's scheme, and never spectrally normalized (BigGAN leaves it
plain), which is why it is a bare parameter rather than an `nn.Embedding` the architecture's init / SN would reach.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GanforgeError
from ..nn.norms import VectorConditionalBatchNorm1d, VectorConditionalBatchNorm2d
from ..registries import G_CONDITIONING
from .base import GConditioning, GInput


@G_CONDITIONING.register("shared")
class SharedEmbedding(GConditioning):
    """BigGAN: shared class embedding (+ hierarchical z chunks) into vector-conditional BatchNorm (Brock et al. 2019).

    Args:
        dim: width of the shared class embedding (BigGAN: 128).
        hier: split z into num_blocks + 1 chunks (BigGAN); false gives every block [z, e(y)] (BigGAN-deep).
        eps: BatchNorm epsilon (StudioGAN: 1e-4).
        momentum: BatchNorm running-statistics momentum.
        sn: spectral norm on the norm layers' gain / bias maps (BigGAN's SN in G).
    """

    uses_labels = True
    labels_in_norms = True  # every block's norms read e(y): families without norms must add them

    def __init__(self, *, num_classes: int, dim: int = 128, hier: bool = True, eps: float = 1e-4,
                 momentum: float = 0.1, sn: bool = False):
        if num_classes < 1:
            raise GanforgeError("conditioning.g 'shared': needs a labelled dataset (num_classes >= 1), "
                                f"got num_classes={num_classes}; use 'none' for unlabelled data")
        if dim < 1:
            raise GanforgeError(f"conditioning.g 'shared': dim must be >= 1, got {dim}")
        if not eps > 0:
            raise GanforgeError(f"conditioning.g 'shared': eps must be > 0, got {eps}")
        super().__init__(num_classes=num_classes)
        self.dim, self.hier, self.eps, self.momentum, self.sn = dim, hier, eps, momentum, sn
        self.embed = nn.Parameter(torch.empty(num_classes, dim))  # e(y) = embed[y]
        nn.init.orthogonal_(self.embed)
        self.z_dim = 0

    def _chunk(self, z_dim: int) -> int:
        """Width of one hierarchical chunk of z (hier) or of the whole z (not hier)."""
        return z_dim // (self.num_blocks + 1) if self.hier else z_dim

    def bind(self, z_dim: int, num_blocks: int) -> None:
        super().bind(z_dim, num_blocks)
        chunks = num_blocks + 1
        if self.hier and z_dim % chunks:
            fit = chunks * max(1, round(z_dim / chunks))
            raise GanforgeError(f"conditioning.g 'shared': hierarchical z splits model.z_dim={z_dim} into "
                                f"num_blocks+1={chunks} equal chunks, but {z_dim} is not divisible by {chunks}; set "
                                f"model.z_dim to a multiple of {chunks} (e.g. {fit}), or use conditioning g=shared "
                                f"with hier: false")
        self.z_dim = z_dim

    @property
    def cond_dim(self) -> int:
        """Width of each block's conditioning vector: e(y) plus a chunk of z (hier) or all of z."""
        return self.dim + self._chunk(self.z_dim)

    def in_features(self, z_dim: int) -> int:
        return self._chunk(z_dim) if self.hier else z_dim + self.dim

    def norm1d(self, num_features: int) -> nn.Module:
        return VectorConditionalBatchNorm1d(num_features, self.cond_dim, self.eps, self.momentum, self.sn)

    def norm2d(self, num_features: int) -> nn.Module:
        return VectorConditionalBatchNorm2d(num_features, self.cond_dim, self.eps, self.momentum, self.sn)

    def prepare(self, z: torch.Tensor, y: torch.Tensor | None) -> GInput:
        if y is None:
            raise GanforgeError("conditioning.g 'shared': needs class labels y, got None")
        e = F.embedding(y, self.embed).to(z.dtype)  # (B, dim), shared by every block
        if not self.hier:  # BigGAN-deep: the whole z with e(y), to the input and to every block
            zy = torch.cat([z, e], dim=1)  # (B, z_dim + dim)
            return GInput(zy, [zy] * self.num_blocks)
        chunks = z.split(self._chunk(z.shape[1]), dim=1)  # num_blocks + 1 chunks of (B, z_dim / (num_blocks + 1))
        return GInput(chunks[0], [torch.cat([e, c], dim=1) for c in chunks[1:]])  # block i: [e(y), chunk i+1]

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, dim={self.dim}, hier={self.hier}"
