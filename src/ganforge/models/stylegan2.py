"""StyleGAN2: style-based skip generator and residual discriminator, equalized learning rate, FIR resampling.

Karras et al., "Analyzing and Improving the Image Quality of StyleGAN", CVPR 2020, with the details of
stylegan2-ada-pytorch ("Training Generative Adversarial Networks with Limited Data", Karras et al., NeurIPS 2020):
- mapping: z -> 2nd-moment normalization -> `mapping_layers` equalized FC + lrelu at lr multiplier 0.01 -> w; labels
  enter through the conditioning's extra input columns (`concat`'s one-hot), embedded by an FC and normalized on
  their own (StyleGAN2-ADA's conditional mapping = StudioGAN's cAdaIN); w_avg tracks the mean w (decay 0.995);
- synthesis: learned constant at the base grid (4x4, or e.g. 4x8 for non-square images, `models/layout.py`), per
  resolution an up-conv (not at the base) and a conv, each modulated/demodulated (Eq. 1-3) with its own w, noise
  (strength 0 at init) and lrelu x sqrt(2); skip architecture: every resolution's ToRGB is added to the FIR-upsampled
  image so far (Fig. 7b). num_ws = 2 * doublings + 2; the output is linear (not tanh), as the reference's;
- style mixing regularization (Sec. 3.1 of StyleGAN): in training-mode forwards, with probability `mixing_prob` a
  second latent's w takes over from a cutoff ~ U{1..num_ws-1} on (one draw per batch, torch's global RNG);
- D: per resolution fromRGB (first only), conv, down-conv, residual 1x1 down skip, gains sqrt(0.5) (Fig. 7c; 'orig'
  drops the skip, as the reference's `cifar` config); at the base grid minibatch std (group `mbstd_group`),
  conv, FC -> features; the head (conditioning.d, e.g. linear, projection) makes the logits.
Widths follow the reference's rule: channels at resolution r = min(channel_base // r, cap), with r the smaller side
and cap = `g_ch` (G) / `d_ch` (D), the reference's channel_max.

Noise: `noise_mode` random draws fresh noise in training mode and uses each layer's fixed noise buffer in eval mode
(so sampling, exports and analyses are deterministic, as stylegan2-ada's gen_images.py default); const uses the
buffers always, none switches noise off. `synthesis(ws, noise_mode=...)` / `G(z, y, noise_mode=...)` override it.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..conditioning.base import GConditioning
from ..errors import GanforgeError
from ..registries import ARCHITECTURES
from .base import ArchPair, DBackbone
from .layout import Grid, check_positive, conv_grid
from .style import StyleGenerator
from .stylegan2_layers import NOISE_MODES, DBlock, DEpilogue, MappingNetwork, SynthesisBlock

ARCH = "stylegan2"


def channels_at(side: int, channel_base: int, cap: int) -> int:
    """The reference's width rule: min(channel_base // resolution, channel_max), at least 1."""
    return max(1, min(channel_base // side, cap))


class StyleGAN2Generator(StyleGenerator):
    """Mapping network -> ws -> skip synthesis network (const, modulated convs, noise, ToRGB per resolution)."""

    channels_last = True
    bounded_output = False  # linear output as the reference (set when tanh: true)

    def __init__(self, img_shape: tuple[int, int, int], num_classes: int, g_cond: GConditioning, grid: Grid, *,
                 z_dim: int, w_dim: int, mapping_layers: int, mapping_lr_mul: float, channel_base: int, g_ch: int,
                 mixing_prob: float, noise_mode: str, conv_clamp: float | None, w_avg_beta: float, tanh: bool):
        super().__init__()
        self.z_dim, self.num_classes, self.img_shape = z_dim, num_classes, tuple(img_shape)
        self.w_dim, self.w_avg_beta = w_dim, w_avg_beta
        self.mixing_prob, self.noise_mode, self.tanh = mixing_prob, noise_mode, tanh
        self.bounded_output = tanh
        self.g_cond = g_cond
        g_cond.bind(z_dim, num_blocks=1)  # labels act through the mapping input only
        in_features = g_cond.in_features(z_dim)
        self.z_in = min(z_dim, in_features)  # prepare's first columns are z; the rest (one-hot labels) is embedded
        self.mapping_net = MappingNetwork(self.z_in, in_features - self.z_in, w_dim, mapping_layers, mapping_lr_mul)
        sizes = [(grid.base[0] << i, grid.base[1] << i) for i in range(grid.steps + 1)]
        widths = [channels_at(min(s), channel_base, g_ch) for s in sizes]
        self.blocks = nn.ModuleList(
            SynthesisBlock(widths[i - 1] if i else 0, widths[i], w_dim, sizes[i], img_shape[0], conv_clamp)
            for i in range(len(sizes)))
        self.num_ws = sum(block.num_conv for block in self.blocks) + 1  # the last ToRGB reads one more w
        self._init_w_avg()

    def map(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        x = self.g_cond.prepare(z, y).x  # (B, in_features): [z, condition columns]
        c = x[:, self.z_in:] if x.shape[1] > self.z_in else None
        return self.mapping_net(x[:, :self.z_in], c)  # (B, w_dim)

    def resolve_noise_mode(self, noise_mode: str | None) -> str:
        """The noise this call uses: the override, else the model's mode ('random' is 'const' in eval mode)."""
        if noise_mode is None:
            return "const" if self.noise_mode == "random" and not self.training else self.noise_mode
        if noise_mode not in NOISE_MODES:
            raise GanforgeError(f"noise_mode: expected one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")
        return noise_mode

    def synthesis(self, ws: torch.Tensor, noise_mode: str | None = None) -> torch.Tensor:
        """(B, num_ws, w_dim) -> images (B, C, H, W); block i reads ws[idx : idx + num_conv + 1]."""
        mode = self.resolve_noise_mode(noise_mode)
        x = img = None
        idx = 0
        for block in self.blocks:
            x, img = block(x, img, ws[:, idx:idx + block.num_conv + 1], mode)
            idx += block.num_conv
        return torch.tanh(img) if self.tanh else img

    def mix_randomly(self, ws: torch.Tensor, z: torch.Tensor, y: torch.Tensor | None,
                     truncation_psi: float = 1.0) -> torch.Tensor:
        """With prob. mixing_prob, layers from a cutoff ~ U{1..num_ws-1} on take a second latent's w (global RNG;
        both numbers are drawn every call so the RNG stream does not depend on the outcome)."""
        cutoff = int(torch.randint(1, self.num_ws, ()))
        if float(torch.rand(())) >= self.mixing_prob:
            return ws
        z2 = self.sample_z(z.shape[0], device=z.device).to(z.dtype)
        return self.mix(ws, self.mapping(z2, y, truncation_psi, update_w_avg=False), cutoff)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None, truncation_psi: float = 1.0,
                noise_mode: str | None = None) -> torch.Tensor:
        ws = self.mapping(z, y, truncation_psi)
        if self.training and self.mixing_prob > 0:
            ws = self.mix_randomly(ws, z, y, truncation_psi)
        return self.synthesis(ws, noise_mode)


class StyleGAN2Discriminator(DBackbone):
    """D blocks from the image resolution down to the base grid, then mbstd + conv + FC -> features."""

    channels_last = True

    def __init__(self, img_shape: tuple[int, int, int], grid: Grid, *, channel_base: int, d_ch: int,
                 mbstd_group: int, architecture: str, conv_clamp: float | None):
        super().__init__()
        sizes = [(img_shape[1] >> i, img_shape[2] >> i) for i in range(grid.steps + 1)]  # image ... base grid
        widths = [channels_at(min(s), channel_base, d_ch) for s in sizes]
        self.blocks = nn.ModuleList(
            DBlock(widths[i] if i else 0, widths[i], widths[i + 1], img_shape[0], architecture, conv_clamp)
            for i in range(grid.steps))
        self.epilogue = DEpilogue(widths[-1], sizes[-1], mbstd_group, conv_clamp)
        self.feature_dim = widths[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)  # resolution / 2
        return self.epilogue(x)  # (B, feature_dim)

    def taps(self) -> dict[str, nn.Module]:
        return {f"block{i}": block for i, block in enumerate(self.blocks)}  # each block's output map

    def block_list(self) -> list[nn.Module]:
        return [*self.blocks, self.epilogue]


def _check_options(num_classes: int, g_cond: GConditioning, **opts) -> None:
    """One-line errors for options outside their range, and for conditionings that need norm layers."""
    check_positive(ARCH, **{k: opts[k] for k in ("z_dim", "w_dim", "mapping_layers", "channel_base", "g_ch", "d_ch",
                                                 "mbstd_group")})
    if not opts["mapping_lr_mul"] > 0:
        raise GanforgeError(f"architecture {ARCH!r}: option mapping_lr_mul must be > 0, got {opts['mapping_lr_mul']}")
    if not 0.0 <= opts["mixing_prob"] <= 1.0:
        raise GanforgeError(f"architecture {ARCH!r}: option mixing_prob must be in [0, 1], got {opts['mixing_prob']}")
    if not 0.0 <= opts["w_avg_beta"] <= 1.0:
        raise GanforgeError(f"architecture {ARCH!r}: option w_avg_beta must be in [0, 1], got {opts['w_avg_beta']}")
    if opts["noise_mode"] not in NOISE_MODES:
        raise GanforgeError(f"architecture {ARCH!r}: option noise_mode must be one of {', '.join(NOISE_MODES)}, got "
                            f"{opts['noise_mode']!r}")
    if opts["d_architecture"] not in ("resnet", "orig"):
        raise GanforgeError(f"architecture {ARCH!r}: option d_architecture must be resnet or orig, got "
                            f"{opts['d_architecture']!r}")
    if opts["conv_clamp"] is not None and not opts["conv_clamp"] > 0:
        raise GanforgeError(f"architecture {ARCH!r}: option conv_clamp must be > 0 or null, got {opts['conv_clamp']}")
    conditioned = num_classes > 0 or getattr(g_cond, "text_dim", 0) > 0
    if conditioned and getattr(g_cond, "labels_in_norms", False):
        raise GanforgeError(f"architecture {ARCH!r}: labels enter through the mapping input and this conditioning "
                            "needs norm layers, which style-based synthesis has none of; use conditioning g=concat")


@ARCHITECTURES.register(ARCH)
def stylegan2(*, img_shape: tuple, num_classes: int, g_cond: GConditioning, z_dim: int = 512, w_dim: int = 512,
              mapping_layers: int = 8, mapping_lr_mul: float = 0.01, channel_base: int = 32768, g_ch: int = 512,
              d_ch: int = 512, mixing_prob: float = 0.9, noise_mode: Literal["random", "const", "none"] = "random",
              conv_clamp: float | None = None, mbstd_group: int = 4,
              d_architecture: Literal["resnet", "orig"] = "resnet", w_avg_beta: float = 0.995,
              tanh: bool = False) -> ArchPair:
    """StyleGAN2 (Karras et al. 2020, stylegan2-ada-pytorch): mapping + modulated skip G, residual D; any conv size.

    Args:
        z_dim: latent size (512).
        w_dim: intermediate latent (w) size (512).
        mapping_layers: FC layers of the mapping network (8; 2 in the reference's cifar config).
        mapping_lr_mul: learning-rate multiplier of the mapping network (0.01).
        channel_base: width rule numerator: channels at resolution r = min(channel_base // r, cap) (32768).
        g_ch: G's channel cap (the reference's channel_max, 512).
        d_ch: D's channel cap (512).
        mixing_prob: style-mixing probability in training-mode forwards (0.9; 0 in the cifar config).
        noise_mode: random (fresh noise in training, the fixed buffers in eval), const (the buffers), none (off).
        conv_clamp: clamp every conv layer's output to +-conv_clamp (the reference uses 256 with fp16); null: off.
        mbstd_group: minibatch-std group size (4; 32 in the cifar config).
        d_architecture: resnet (residual D blocks) or orig (no skip path, the reference's cifar config).
        w_avg_beta: decay of the running mean of w used by truncation (0.995; StudioGAN 0.998).
        tanh: tanh on G's output (false: linear, as the reference; metrics clamp to [-1, 1] when quantizing).
    """
    opts = dict(z_dim=z_dim, w_dim=w_dim, mapping_layers=mapping_layers, mapping_lr_mul=mapping_lr_mul,
                channel_base=channel_base, g_ch=g_ch, d_ch=d_ch, mixing_prob=mixing_prob, noise_mode=noise_mode,
                conv_clamp=conv_clamp, mbstd_group=mbstd_group, d_architecture=d_architecture, w_avg_beta=w_avg_beta)
    _check_options(num_classes, g_cond, **opts)
    grid = conv_grid(tuple(img_shape), ARCH)
    G = StyleGAN2Generator(tuple(img_shape), num_classes, g_cond, grid, z_dim=z_dim, w_dim=w_dim,
                           mapping_layers=mapping_layers, mapping_lr_mul=mapping_lr_mul, channel_base=channel_base,
                           g_ch=g_ch, mixing_prob=mixing_prob, noise_mode=noise_mode, conv_clamp=conv_clamp,
                           w_avg_beta=w_avg_beta, tanh=tanh)
    D = StyleGAN2Discriminator(tuple(img_shape), grid, channel_base=channel_base, d_ch=d_ch, mbstd_group=mbstd_group,
                               architecture=d_architecture, conv_clamp=conv_clamp)
    D.spectral_norm = False  # equalized lr, no spectral norm (heads follow this by default)
    return ArchPair(G, D)


stylegan2.style_based = True  # mapping + synthesis (models/style.py): path length and w-space analyses apply
