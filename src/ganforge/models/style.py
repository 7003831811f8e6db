"""The style-based generator protocol: `mapping(z, y) -> ws`, `synthesis(ws) -> x`, w-space truncation and mixing.

Karras et al., "A Style-Based Generator Architecture for GANs", 2019 (StyleGAN) and "Analyzing and Improving the
Image Quality of StyleGAN", 2020 (StyleGAN2): a mapping network turns z (and the class) into an intermediate latent
w, broadcast to `num_ws` per-layer copies ("ws", (B, num_ws, w_dim)) that drive the synthesis network's layers.
- w_avg: a running mean of w (decay `w_avg_beta` per training-mode mapping call), the centre of truncation.
- Truncation in w (Sec. 2 of StyleGAN): w' = w_avg + psi (w - w_avg) on the first `cutoff` layers (all by default).
- Style mixing (Sec. 3.1 of StyleGAN): layers from `crossover` on take their w from a second latent.

Families implement `map(z, y) -> w` (B, w_dim) and `synthesis(ws)`; everything else here is shared, so path-length
regularization, w-space interpolation and latent-direction analyses work on any of them (`is_style_based`).
"""
from __future__ import annotations

import torch

from .base import Generator


class StyleGenerator(Generator):
    """Base class of style-based generators; subclasses set `w_dim`, `num_ws` and implement `map` and `synthesis`."""

    w_dim: int
    num_ws: int
    w_avg_beta: float = 0.995  # StyleGAN2-ADA's decay of the running mean of w

    def _init_w_avg(self) -> None:
        self.register_buffer("w_avg", torch.zeros(self.w_dim))

    def map(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The mapping network: (B, z_dim) latents (and labels) -> (B, w_dim). By default StyleGAN's: the G
        conditioning's input vector, 2nd-moment normalized, through the family's `mapping_net` (an MLP)."""
        x = self.g_cond.prepare(z, y).x
        x = x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)  # 2nd-moment normalization
        return self.mapping_net(x)  # (B, w_dim)

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        """The synthesis network: (B, num_ws, w_dim) -> samples in model space."""
        raise NotImplementedError

    def mapping(self, z: torch.Tensor, y: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, update_w_avg: bool | None = None) -> torch.Tensor:
        """ws (B, num_ws, w_dim); updates w_avg in training mode unless `update_w_avg` says otherwise."""
        w = self.map(z, y)  # (B, w_dim)
        if self.training if update_w_avg is None else update_w_avg:
            with torch.no_grad():  # w_avg <- beta * w_avg + (1 - beta) * mean(w)
                self.w_avg.copy_(w.detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            return self.truncate(ws, truncation_psi, truncation_cutoff)
        return ws

    def truncate(self, ws: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
        """w_avg + psi (ws - w_avg) on layers [0, cutoff) (all layers when cutoff is None)."""
        ws = ws.clone()
        k = self.num_ws if cutoff is None else cutoff
        ws[:, :k] = self.w_avg.to(ws.dtype).lerp(ws[:, :k], psi)
        return ws

    @staticmethod
    def mix(ws_a: torch.Tensor, ws_b: torch.Tensor, crossover: int) -> torch.Tensor:
        """Layers [0, crossover) from ws_a, layers [crossover, num_ws) from ws_b."""
        ws = ws_a.clone()
        ws[:, crossover:] = ws_b[:, crossover:]
        return ws

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None, truncation_psi: float = 1.0) -> torch.Tensor:
        return self.synthesis(self.mapping(z, y, truncation_psi))


def is_style_based(G: torch.nn.Module) -> bool:
    """Whether `G` follows the style-based protocol (mapping / synthesis / w_avg)."""
    return isinstance(G, StyleGenerator)
