"""A small style-based MLP generator (with the MLP discriminator), for 2-D points and small flattened images.

The StyleGAN2 generator's ideas at MLP scale (Karras et al., "Analyzing and Improving the Image Quality of StyleGAN",
2020): a mapping network (2nd-moment normalization of its input, `mapping_layers` x (Linear -> LeakyReLU(0.2)))
makes w; synthesis starts from a learned constant and runs `layers` modulated/demodulated fully connected layers
(Eq. 1-3 of StyleGAN2 with 1x1 "kernels": w'_ij = s_i w_ij, w''_ij = w'_ij / sqrt(sum_i w'_ij^2 + eps)), each with
its own copy of w, then a modulated output layer without demodulation (StyleGAN2's toRGB). num_ws = layers + 1.
It is the compact member of the style-based protocol (`models/style.py`): truncation, mixing and w-space analyses
run on it in seconds. Labels enter through the mapping input (`g_cond.prepare`, e.g. `concat`, as StyleGAN2's
conditional mapping); conditionings that need norm layers (`cbn`) are refused, since style-based synthesis has none.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..conditioning.base import GConditioning
from ..errors import GanforgeError
from ..nn.spectral_norm import maybe_sn
from ..registries import ARCHITECTURES
from .base import ArchPair
from .layout import check_positive
from .mlp import MLPDiscriminator
from .style import StyleGenerator


class ModulatedLinear(nn.Module):
    """y = (W diag(s)) x, rows of W diag(s) rescaled to unit norm when `demodulate` (StyleGAN2 Eq. 1-3)."""

    def __init__(self, in_features: int, out_features: int, w_dim: int, demodulate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / math.sqrt(in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.affine = nn.Linear(w_dim, in_features)  # w -> per-input-feature style s
        nn.init.normal_(self.affine.weight, std=1 / math.sqrt(w_dim))  # StyleGAN2: unit-variance styles around 1
        nn.init.ones_(self.affine.bias)
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s = self.affine(w)  # (B, in)
        out = (x * s) @ self.weight.t()  # (B, out): (W diag(s)) x, per sample
        if self.demodulate:  # Eq. 3: sigma_j = sqrt(sum_i (s_i w_ij)^2)
            out = out * torch.rsqrt(s.pow(2) @ self.weight.pow(2).t() + 1e-8)
        return out + self.bias


class StyleMLPGenerator(StyleGenerator):
    """Mapping MLP -> w; constant -> `layers` modulated layers -> modulated output layer."""

    def __init__(self, img_shape: tuple[int, ...], num_classes: int, g_cond: GConditioning, z_dim: int, w_dim: int,
                 hidden: int, layers: int, mapping_layers: int, tanh: bool):
        super().__init__()
        self.z_dim, self.num_classes, self.img_shape = z_dim, num_classes, tuple(img_shape)
        self.w_dim, self.num_ws = w_dim, layers + 1
        self.g_cond = g_cond
        g_cond.bind(z_dim, num_blocks=1)  # labels act through the mapping input only
        widths = [g_cond.in_features(z_dim)] + [w_dim] * mapping_layers
        self.mapping_net = nn.Sequential(*[m for a, b in zip(widths[:-1], widths[1:])
                                           for m in (nn.Linear(a, b), nn.LeakyReLU(0.2))])
        self.const = nn.Parameter(torch.randn(hidden))
        self.layers = nn.ModuleList(ModulatedLinear(hidden, hidden, w_dim) for _ in range(layers))
        self.out = ModulatedLinear(hidden, math.prod(self.img_shape), w_dim, demodulate=False)
        self.tanh = tanh
        self._init_w_avg()

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        x = self.const.expand(ws.shape[0], -1)  # (B, hidden)
        for i, layer in enumerate(self.layers):
            x = torch.nn.functional.leaky_relu(layer(x, ws[:, i]), 0.2)  # layer i takes w_i
        x = self.out(x, ws[:, -1])
        if self.tanh:
            x = torch.tanh(x)
        return x.view(x.shape[0], *self.img_shape)


@ARCHITECTURES.register("style-mlp")
def style_mlp(*, img_shape: tuple, num_classes: int, g_cond: GConditioning, z_dim: int = 16, w_dim: int = 64,
              hidden: int = 128, layers: int = 3, mapping_layers: int = 4, d_hidden: int = 128, d_layers: int = 3,
              d_sn: bool = False, tanh: bool | None = None) -> ArchPair:
    """Style-based MLP G (mapping + modulated layers, StyleGAN2 2020 at MLP scale) with an MLP D; points or images.

    Args:
        z_dim: latent size.
        w_dim: intermediate latent (w) size.
        hidden: width of the synthesis layers.
        layers: number of modulated synthesis layers (num_ws = layers + 1).
        mapping_layers: depth of the mapping network.
        d_hidden: width of D's hidden layers.
        d_layers: number of D's hidden layers.
        d_sn: spectral norm on D's layers.
        tanh: tanh on G's output; None means tanh for images, a linear output for points.
    """
    check_positive("style-mlp", z_dim=z_dim, w_dim=w_dim, hidden=hidden, layers=layers,
                   mapping_layers=mapping_layers, d_hidden=d_hidden, d_layers=d_layers)
    img_shape = tuple(img_shape)
    conditioned = num_classes > 0 or getattr(g_cond, "text_dim", 0) > 0  # class labels or sentence embeddings
    if conditioned and getattr(g_cond, "labels_in_norms", False):
        raise GanforgeError("architecture 'style-mlp': labels enter through the mapping input and this conditioning "
                            "needs norm layers, which style-based synthesis has none of; use conditioning g=concat")
    use_tanh = len(img_shape) == 3 if tanh is None else tanh
    G = StyleMLPGenerator(img_shape, num_classes, g_cond, z_dim, w_dim, hidden, layers, mapping_layers, use_tanh)
    D = MLPDiscriminator(img_shape, d_hidden, d_layers)  # PyTorch's default init, as `mlp` with init=default
    maybe_sn(D, d_sn)
    D.spectral_norm = d_sn
    return ArchPair(G, D)


style_mlp.style_based = True  # its G has mapping + synthesis (models/style.py): style-only terms may use it
