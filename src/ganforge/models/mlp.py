"""Fully connected G and D, for 2-D toy mixtures (points) and small flattened images.

The multilayer perceptrons of "Generative Adversarial Networks" (Goodfellow et al., 2014), in the shape used by the
mode-coverage studies ("Unrolled Generative Adversarial Networks", Metz et al., 2017; "PacGAN", Lin et al., 2018):
G = `layers` x (Linear -> [norm] -> ReLU) -> Linear [-> tanh]; D = `layers` x (Linear -> LeakyReLU(0.2)), whose last
hidden activations are the features a D head scores.

Labels: G's input is always `g_cond.prepare(z, y)` (so `concat` works with or without norm layers). Norm layers are
`g_cond.norm1d` after each hidden Linear when `g_norm` is true, and also when the conditioning carries labels only
through norm layers (`cbn`) and the dataset is labelled, since otherwise y would have no way in.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..conditioning.base import GConditioning
from ..nn.init import init_weights
from ..nn.norms import IdentityNorm
from ..nn.spectral_norm import maybe_sn
from ..registries import ARCHITECTURES
from .base import ArchPair, DBackbone, Generator
from .layout import check_positive


class MLPGenerator(Generator):
    """z (+ labels) -> `layers` hidden ReLU layers -> flat output reshaped to `img_shape`."""

    def __init__(self, img_shape: tuple[int, ...], num_classes: int, g_cond: GConditioning, z_dim: int,
                 hidden: int, layers: int, use_norm: bool, tanh: bool):
        super().__init__()
        self.z_dim, self.num_classes, self.img_shape = z_dim, num_classes, tuple(img_shape)
        self.g_cond = g_cond
        g_cond.bind(z_dim, num_blocks=layers)  # one conditioning value per hidden layer
        widths = [g_cond.in_features(z_dim)] + [hidden] * layers
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(g_cond.norm1d(hidden) if use_norm else IdentityNorm() for _ in range(layers))
        self.out = nn.Linear(hidden, math.prod(self.img_shape))
        self.tanh = tanh

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        inp = self.g_cond.prepare(z, y)
        x = inp.x  # (B, in_features)
        for linear, norm, c in zip(self.linears, self.norms, inp.blocks):
            x = torch.relu(norm(linear(x), c))  # (B, hidden)
        x = self.out(x)
        if self.tanh:
            x = torch.tanh(x)
        return x.view(x.shape[0], *self.img_shape)


class MLPDiscriminator(DBackbone):
    """Flattened input -> `layers` x (Linear -> LeakyReLU(0.2)); features are the last hidden layer."""

    def __init__(self, img_shape: tuple[int, ...], hidden: int, layers: int):
        super().__init__()
        widths = [math.prod(img_shape)] + [hidden] * layers
        blocks: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(widths[:-1], widths[1:]):
            blocks += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*blocks)
        self.feature_dim = hidden

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, hidden)

    def taps(self) -> dict[str, nn.Module]:
        return {f"block{i}": m for i, m in enumerate(m for m in self.net if isinstance(m, nn.LeakyReLU))}

    def block_list(self) -> list[nn.Module]:
        # each hidden layer (Linear, LeakyReLU); the first also holds the input's Flatten
        return [self.net[0:3], *(self.net[i:i + 2] for i in range(3, len(self.net), 2))]


@ARCHITECTURES.register("mlp")
def mlp(*, img_shape: tuple, num_classes: int, g_cond: GConditioning, z_dim: int = 16, hidden: int = 256,
        layers: int = 3, g_norm: bool = False, d_sn: bool = False, tanh: bool | None = None,
        init: str = "default") -> ArchPair:
    """MLP G and D for 2-D points or small flattened images (z_dim 16 by default).

    Args:
        z_dim: latent size (16: 2 is the data's dimension for toy points but leaves G too little to work with).
        hidden: width of every hidden layer of G and D.
        layers: number of hidden layers in G and in D.
        g_norm: norm layers (`g_cond.norm1d`) after G's hidden layers; forced on for `cbn` with labels.
        d_sn: spectral norm on D's layers.
        tanh: tanh on G's output; None means tanh for images, a linear output for points.
        init: weight init scheme (ortho, normal, xavier, default).
    """
    check_positive("mlp", z_dim=z_dim, hidden=hidden, layers=layers)
    img_shape = tuple(img_shape)
    conditioned = num_classes > 0 or getattr(g_cond, "text_dim", 0) > 0  # class labels or sentence embeddings
    use_norm = g_norm or (conditioned and getattr(g_cond, "labels_in_norms", False))
    use_tanh = len(img_shape) == 3 if tanh is None else tanh
    G = MLPGenerator(img_shape, num_classes, g_cond, z_dim, hidden, layers, use_norm, use_tanh)
    D = MLPDiscriminator(img_shape, hidden, layers)
    for net in (G, D):
        init_weights(net, init, where="architecture 'mlp' option init")
    maybe_sn(D, d_sn)
    D.spectral_norm = d_sn
    return ArchPair(G, D)
