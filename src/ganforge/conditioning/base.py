"""Conditioning interfaces.

G side: a `GConditioning` module that architectures ask for their norm layers and input transform, so any family
accepts any method. `prepare(z, y)` returns a `GInput`: G's input vector and one conditioning value per block, which
the block hands to its norm layers as `norm(x, c)` (for cBN, c is the label; for BigGAN-style conditioning, the
shared class embedding joined with the block's chunk of a hierarchical z). Being an `nn.Module`, a G conditioning
may own parameters (a shared class embedding); they belong to G, train with G and are exported with it.
D side: a `DHead` maps backbone features `(h, y)` to a `DOutput`.

Capabilities are declared, never inferred from names: `uses_labels` (the method needs class labels) on both sides,
and `provides` on D heads (the named extras its `DOutput` carries, which terms can `require`).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch
from torch import nn


class DOutput:
    """What D says about a batch: `adv` (B,) adversarial logits plus any named extras.

    Extras are keyword arguments (`cls_logits`, `embed`, `proxy`, `q_logits`, per-level logits, ...) read back as
    attributes or with `get`. The `Discriminator` also sets `h`, the backbone features the head saw (B, F), and,
    when asked, `features`: {tap name: intermediate feature map}.
    """

    def __init__(self, adv: torch.Tensor, **extras: Any):
        self.adv = adv
        self.extras: dict[str, Any] = dict(extras)

    def __getattr__(self, name: str) -> Any:
        extras = self.__dict__.get("extras", {})
        if name in extras:
            return extras[name]
        raise AttributeError(f"D output has no {name!r} (it has: adv, {', '.join(sorted(extras)) or 'no extras'}); "
                             f"choose a D head that provides it")

    def get(self, name: str, default: Any = None) -> Any:
        return self.extras.get(name, default)

    def __contains__(self, name: str) -> bool:
        return name in self.extras

    def __repr__(self) -> str:
        return f"DOutput(adv={tuple(self.adv.shape)}, extras={sorted(self.extras)})"


class GInput(NamedTuple):
    """What G's conditioning makes of (z, y): G's input vector and each block's conditioning value."""

    x: torch.Tensor  # (B, in_features): what G's first layer sees
    blocks: Sequence[Any]  # one entry per block (labels, vectors or None), passed to that block's norm layers


class GConditioning(nn.Module):
    """How labels enter G. Subclasses override what they change.

    Protocol: the architecture calls `bind(z_dim, num_blocks)` before building its layers, asks `in_features(z_dim)`
    for the width of its first layer and `norm1d` / `norm2d` for its norm layers, and in `forward` calls
    `prepare(z, y)` and gives `blocks[i]` to block i's norm layers. `Generator.sample_z` passes its N(0, I) draw
    through `sample_codes`. A method may bring loss terms with `terms(**build_context)` (see training/build.py).
    """

    uses_labels: bool = False  # whether the method needs class labels (the run is then class-conditional)
    # True when labels reach G only through the norm layers (cBN): families without norms must then add them.
    labels_in_norms: bool = False

    def __init__(self, *, num_classes: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.num_blocks = 1

    def bind(self, z_dim: int, num_blocks: int) -> None:
        """Learn the shape of the generator this object serves (before it builds layers)."""
        self.num_blocks = num_blocks

    def norm1d(self, num_features: int) -> nn.Module:
        """A norm layer over (B, F) features, called as `norm(x, c)`."""
        raise NotImplementedError

    def norm2d(self, num_features: int) -> nn.Module:
        """A norm layer over (B, C, H, W) features, called as `norm(x, c)`."""
        raise NotImplementedError

    def in_features(self, z_dim: int) -> int:
        """Width of G's input after `prepare`."""
        return z_dim

    def prepare(self, z: torch.Tensor, y: torch.Tensor | None) -> GInput:
        """G's input vector and per-block conditioning from z and labels (default: z, and y for every block)."""
        return GInput(z, [y] * self.num_blocks)

    def sample_codes(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Latents `G.sample_z` drew as N(0, I) (after truncation) -> the latents G takes (default: unchanged).

        A method whose latent holds structured codes (InfoGAN's one-hot and uniform codes) writes them here, drawing
        from `generator` so seeded sampling stays reproducible. Methods without codes must not draw from it.
        """
        return z


class DHead(nn.Module):
    """Maps D backbone features (B, F) and labels (B,) to a `DOutput`."""

    uses_labels: bool = False  # whether the head needs class labels
    provides: frozenset[str] = frozenset()  # names of the extras its DOutput carries

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        raise NotImplementedError
