"""ViTGAN: a vision-transformer generator and discriminator (Lee et al., "ViTGAN: Training GANs with Vision
Transformers", ICLR 2022). Layers in `nn/vit.py`.

- G (Sec. 3.2, Eq. 5-6): w = MLP(z) (labels join z through the conditioning's `prepare`, 2nd-moment normalized as
  StyleGAN's mapping input); the input tokens are learned positional embeddings E_pos, one per P x P patch; L blocks
  h' = MSA(SLN(h, w)) + h, h = MLP(SLN(h', w)) + h' (standard dot-product attention); y = SLN(h_L, w); every token
  y^i becomes its patch through one shared implicit neural representation (Fourier features of the in-patch pixel
  coordinates -> an MLP modulated by y^i), tanh. w enters only through the SLNs.
  It follows the style-based protocol (`models/style.py`): `map` is the mapping MLP, `synthesis(ws)` reads ws[:, l]
  in block l's two SLNs and ws[:, L] in the final SLN (num_ws = g_depth + 1), so w-space truncation, style mixing,
  path length and w-space analyses apply to it as to StyleGAN2.
- D (Sec. 3.1): overlapping patches (windows of P + 2 overlap at stride P) linearly embedded, a CLS token and learned
  positional embeddings, L pre-norm blocks with L2 attention (tied W_q = W_k), LayerNorm, the CLS token -> features
  h (B, d_dim) for the D head; improved spectral normalization (Eq. 4) on every linear map (`d_isn`, the
  patch-embedding window included). The head follows plain SN when d_isn is on (`D.spectral_norm`).
Any image whose sides are multiples of `patch` is supported, non-square ones as a non-square token grid.
UNCONFIRMED (the paper's text could not be re-read here): the overlap default 2 and D's sizes at CIFAR-10 (the
authors' PyTorch reproduction has no ViT D); G's 4 x 384 x 6-head size is the reproduction's (`vit_generator.py`).
"""
from __future__ import annotations

import torch
from torch import nn

from ..conditioning.base import GConditioning
from ..errors import GanforgeError
from ..nn.vit import OverlappingPatchEmbed, PatchINR, SelfModulatedLayerNorm, SLNBlock, ViTBlock, apply_isn
from ..registries import ARCHITECTURES
from .base import ArchPair, DBackbone
from .layout import check_positive
from .style import StyleGenerator

ARCH = "vitgan"


def _trunc_normal_(t: torch.Tensor) -> torch.Tensor:
    """ViT's initialization of embeddings and tokens: N(0, 0.02^2) truncated at +-2 std."""
    return nn.init.trunc_normal_(t, std=0.02, a=-0.04, b=0.04)


class ViTGANGenerator(StyleGenerator):
    """Mapping MLP -> w; positional-embedding tokens -> SLN transformer blocks -> SLN -> per-patch INR -> tanh."""

    def __init__(self, img_shape: tuple[int, int, int], num_classes: int, g_cond: GConditioning, *, z_dim: int,
                 w_dim: int, mapping_layers: int, dim: int, depth: int, heads: int, mlp_ratio: int, patch: int,
                 inr_hidden: int, inr_layers: int, num_freqs: int, w_avg_beta: float):
        super().__init__()
        self.z_dim, self.num_classes, self.img_shape = z_dim, num_classes, tuple(img_shape)
        self.w_dim, self.num_ws, self.w_avg_beta = w_dim, depth + 1, w_avg_beta
        self.g_cond = g_cond
        g_cond.bind(z_dim, num_blocks=1)  # labels act through the mapping input only
        widths = [g_cond.in_features(z_dim)] + [w_dim] * mapping_layers
        self.mapping_net = nn.Sequential(*[m for a, b in zip(widths[:-1], widths[1:])
                                           for m in (nn.Linear(a, b), nn.LeakyReLU(0.2))])
        self.grid = (img_shape[1] // patch, img_shape[2] // patch)
        self.pos = nn.Parameter(_trunc_normal_(torch.empty(1, self.grid[0] * self.grid[1], dim)))  # E_pos
        self.blocks = nn.ModuleList(SLNBlock(dim, heads, mlp_ratio, w_dim) for _ in range(depth))
        self.norm = SelfModulatedLayerNorm(dim, w_dim)
        self.inr = PatchINR(dim, img_shape[0], (patch, patch), inr_hidden, inr_layers, num_freqs)
        self._init_w_avg()

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        """(B, num_ws, w_dim) -> images (B, C, H, W)."""
        h = self.pos.expand(ws.shape[0], -1, -1)  # (B, N, dim): the tokens start as E_pos
        for i, block in enumerate(self.blocks):
            h = block(h, ws[:, i])
        h = self.norm(h, ws[:, -1])  # y = SLN(h_L, w)
        return torch.tanh(self.inr(h, self.grid))  # each token's patch, tiled


class TokenGrid(nn.Module):
    """Patch tokens (B, 1 + gh * gw, d) -> a (B, d, gh, gw) map (CLS dropped): what D's taps report per block."""

    def __init__(self, grid: tuple[int, int]):
        super().__init__()
        self.grid = grid

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h[:, 1:].transpose(1, 2).reshape(h.shape[0], h.shape[2], *self.grid)


class TokenEmbed(nn.Module):
    """Overlapping patch embedding, then [CLS; tokens] + positional embeddings: (B, C, H, W) -> (B, 1 + N, d)."""

    def __init__(self, channels: int, dim: int, patch: int, overlap: int, num_tokens: int):
        super().__init__()
        self.patches = OverlappingPatchEmbed(channels, dim, patch, overlap)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(_trunc_normal_(torch.empty(1, 1 + num_tokens, dim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patches(x)
        return torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.pos


class ViTGANDiscriminator(DBackbone):
    """Token embedding, L2-attention ViT blocks, LayerNorm, CLS token -> features (B, d_dim)."""

    def __init__(self, img_shape: tuple[int, int, int], *, dim: int, depth: int, heads: int, mlp_ratio: int,
                 patch: int, overlap: int):
        super().__init__()
        grid = (img_shape[1] // patch, img_shape[2] // patch)
        self.embed = TokenEmbed(img_shape[0], dim, patch, overlap, grid[0] * grid[1])
        self.blocks = nn.ModuleList(ViTBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.maps = nn.ModuleList(TokenGrid(grid) for _ in range(depth))  # parameter-free views for taps()
        self.norm = nn.LayerNorm(dim, bias=False)  # a bias would only shift the head's logits, never grad_x D
        self.feature_dim = dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for block, grid_map in zip(self.blocks, self.maps):
            h = block(h)
            grid_map(h)  # a view; its output is only seen by tap hooks
        return self.norm(h)[:, 0]  # the CLS token

    def taps(self) -> dict[str, nn.Module]:
        return {f"block{i}": m for i, m in enumerate(self.maps)}  # each block's patch tokens as a (d, gh, gw) map

    def block_list(self) -> list[nn.Module]:
        return [self.embed, *self.blocks]  # the final LayerNorm is the epilogue


def _check_options(img_shape: tuple, num_classes: int, g_cond: GConditioning, **opts) -> None:
    """One-line errors for bad options, shapes and conditionings that need norm layers."""
    check_positive(ARCH, **{k: opts[k] for k in ("z_dim", "w_dim", "mapping_layers", "g_dim", "d_dim", "g_depth",
                                                 "d_depth", "heads", "mlp_ratio", "patch", "inr_hidden",
                                                 "inr_layers", "num_freqs")})
    if opts["overlap"] < 0:
        raise GanforgeError(f"architecture {ARCH!r}: option overlap must be >= 0, got {opts['overlap']}")
    if not 0.0 <= opts["w_avg_beta"] <= 1.0:
        raise GanforgeError(f"architecture {ARCH!r}: option w_avg_beta must be in [0, 1], got {opts['w_avg_beta']}")
    for key in ("g_dim", "d_dim"):
        if opts[key] % opts["heads"]:
            raise GanforgeError(f"architecture {ARCH!r}: option {key}={opts[key]} must be divisible by heads="
                                f"{opts['heads']}")
    if len(img_shape) != 3:
        raise GanforgeError(f"architecture {ARCH!r}: needs an image shape (C, H, W), got {tuple(img_shape)}; use "
                            "'mlp' for points")
    _, height, width = img_shape
    patch = opts["patch"]
    if height % patch or width % patch:
        raise GanforgeError(f"architecture {ARCH!r}: option patch={patch} must divide the image size {height}x{width}")
    conditioned = num_classes > 0 or getattr(g_cond, "text_dim", 0) > 0
    codes_in_norms = getattr(g_cond, "codes_in_norms", False)  # InfoGAN inject=cbn: codes only in the norms
    if (conditioned and getattr(g_cond, "labels_in_norms", False)) or codes_in_norms:
        raise GanforgeError(f"architecture {ARCH!r}: labels enter through the mapping input and this conditioning "
                            "needs norm layers of its own; use conditioning g=concat")


@ARCHITECTURES.register(ARCH)
def vitgan(*, img_shape: tuple, num_classes: int, g_cond: GConditioning, z_dim: int = 384, w_dim: int = 384,
           mapping_layers: int = 8, g_dim: int = 384, d_dim: int = 384, g_depth: int = 4, d_depth: int = 4,
           heads: int = 6, mlp_ratio: int = 4, patch: int = 4, overlap: int = 2, inr_hidden: int = 512,
           inr_layers: int = 2, num_freqs: int = 4, d_isn: bool = True, w_avg_beta: float = 0.995) -> ArchPair:
    """ViTGAN (Lee et al. 2022): ViT G with self-modulated LayerNorm and a patch INR, ViT D with L2 attention + ISN.

    Args:
        z_dim: latent size (384, the reproduction's).
        w_dim: intermediate latent (w) size; SLN's gamma/beta read w (384).
        mapping_layers: depth of the mapping MLP z -> w (8, the reproduction's).
        g_dim: G's token width (384).
        d_dim: D's token width = the features the D head reads (384).
        g_depth: G's transformer blocks (4); num_ws = g_depth + 1.
        d_depth: D's transformer blocks (4).
        heads: attention heads in G and D (6); g_dim and d_dim must be divisible by it.
        mlp_ratio: transformer MLP width / token width (4).
        patch: patch side P in G and D (4); must divide both image sides.
        overlap: D's patch overlap o: windows of P + 2o pixels at stride P (2).
        inr_hidden: width of the patch INR's modulated layers (512, the reproduction's CIPS width).
        inr_layers: modulated hidden layers of the INR (2), before its modulated output layer.
        num_freqs: Fourier frequencies pi 2^k (k < num_freqs) per coordinate axis of the INR input.
        d_isn: improved spectral normalization on every D weight layer (the head then gets plain SN).
        w_avg_beta: decay of the running mean of w used by truncation.
    """
    opts = dict(z_dim=z_dim, w_dim=w_dim, mapping_layers=mapping_layers, g_dim=g_dim, d_dim=d_dim, g_depth=g_depth,
                d_depth=d_depth, heads=heads, mlp_ratio=mlp_ratio, patch=patch, overlap=overlap,
                inr_hidden=inr_hidden, inr_layers=inr_layers, num_freqs=num_freqs, w_avg_beta=w_avg_beta)
    _check_options(tuple(img_shape), num_classes, g_cond, **opts)
    G = ViTGANGenerator(tuple(img_shape), num_classes, g_cond, z_dim=z_dim, w_dim=w_dim,
                        mapping_layers=mapping_layers, dim=g_dim, depth=g_depth, heads=heads, mlp_ratio=mlp_ratio,
                        patch=patch, inr_hidden=inr_hidden, inr_layers=inr_layers, num_freqs=num_freqs,
                        w_avg_beta=w_avg_beta)
    D = ViTGANDiscriminator(tuple(img_shape), dim=d_dim, depth=d_depth, heads=heads, mlp_ratio=mlp_ratio,
                            patch=patch, overlap=overlap)
    apply_isn(D, d_isn)
    D.spectral_norm = d_isn
    return ArchPair(G, D)


vitgan.style_based = True  # mapping + synthesis (models/style.py): path length and w-space analyses apply
