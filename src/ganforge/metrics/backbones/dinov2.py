"""DINOv2 ViT-S/14 and ViT-B/14 feature backbones in the official state-dict layout.

Network: Oquab et al., "DINOv2: Learning Robust Visual Features without Supervision" (2023), a ViT (Dosovitskiy et al.,
"An Image is Worth 16x16 Words", 2021) with LayerScale (Touvron et al., "Going deeper with Image Transformers", 2021).
Proposed for generative-model evaluation by Stein et al., "Exposing flaws of generative model evaluation metrics and
their unfair treatment of diffusion models" (2023). Layout: cls_token, pos_embed (1, 1 + 37*37, D) for 518px training,
mask_token, patch_embed.proj, blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma},
norm. Input: 224x224 (bicubic, antialias), ImageNet normalization; the position embedding is interpolated to the
16x16 patch grid bicubically with DINOv2's scale factor (grid + 0.1) / 37. Output `pool`: the final-norm CLS token.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import GanforgeError
from ...registries import BACKBONES
from .base import Backbone, seeded_init

PATCH = 14
# variant -> (embedding dim, depth, heads, standard weights)
VARIANTS: dict[str, tuple[int, int, int, str]] = {
    "vits14": (384, 12, 6, "dinov2-vits14"),
    "vitb14": (768, 12, 12, "dinov2-vitb14"),
}


class PatchEmbed(nn.Module):
    """Non-overlapping 14x14 patches -> D-dim tokens."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)


class LayerScale(nn.Module):
    """Per-channel scaling of a residual branch (Eq. 1 of Touvron et al. 2021)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    """Multi-head self-attention softmax(QK^T / sqrt(d)) V with a fused qkv projection."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # (B, h, N, d/h)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 with hidden width 4D."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoViT(nn.Module):
    """DINOv2 vision transformer trunk; `forward` returns the final-norm CLS token (B, D)."""

    def __init__(self, dim: int, depth: int, heads: int, pos_grid: int = 37):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + pos_grid * pos_grid, dim) * 0.02)
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # used only in DINOv2 training (masked tokens)
        self.patch_embed = PatchEmbed(dim)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def interpolate_pos_embed(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Position embedding for a grid_h x grid_w patch grid (bicubic, DINOv2's +0.1 scale offset)."""
        pos = self.pos_embed.float()
        side = math.isqrt(pos.shape[1] - 1)
        if (grid_h, grid_w) == (side, side):
            return pos
        patch_pos = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)  # (1, D, side, side)
        scale = ((grid_h + 0.1) / side, (grid_w + 0.1) / side)  # offset avoids floating-point rounding of the size
        patch_pos = F.interpolate(patch_pos, scale_factor=scale, mode="bicubic", align_corners=False)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)  # (1, N, D)
        return torch.cat([pos[:, :1], patch_pos], 1)

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        grid_h, grid_w = x.shape[-2] // PATCH, x.shape[-1] // PATCH
        tokens = self.patch_embed(x)  # (B, N, D)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], 1)  # (B, 1 + N, D)
        tokens = tokens + self.interpolate_pos_embed(grid_h, grid_w).to(tokens.dtype)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)[:, 0]  # (B, D) CLS token after the final norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool_features(x)


@BACKBONES.register("dinov2")
class DinoV2Backbone(Backbone, DinoViT):
    """DINOv2 ViT-S/14 or ViT-B/14: final-norm CLS token features at 224px."""

    name = "dinov2"
    outputs = ("pool",)

    def __init__(self, *, weights: str | None = None, device: str = "cpu", variant: str = "vits14",
                 resize: str = "torch-bicubic-aa"):
        """
        Args:
            weights: a state dict in the official DINOv2 layout; None fetches the official file for `variant`
                (no published sha256: its own sha256 keys caches); "random": seeded init.
            device: where the network runs.
            variant: "vits14" (dim 384, depth 12, 6 heads) or "vitb14" (dim 768, depth 12, 12 heads).
            resize: resize protocol to 224x224 ("torch-bicubic-aa" by default, or "clean").
        """
        if variant not in VARIANTS:
            raise GanforgeError(f"backbone dinov2.variant: unknown variant {variant!r}; "
                                f"choose one of: {', '.join(VARIANTS)}")
        dim, depth, heads, known = VARIANTS[variant]
        with seeded_init(0):
            super().__init__(dim, depth, heads)
        self.variant = variant
        self.feature_dim = dim
        self._init_protocol(device=device, resize_mode=resize, input_size=224, normalization="imagenet")
        self._load_standard(known, weights, self, layout=f"DINOv2 {variant}")
        self._finish()

    def _init_random(self) -> None:
        """weights="random": the default init, but with full-strength residual branches (LayerScale 1, not 1e-5) so
        the CLS token depends on the image."""
        for name, p in self.named_parameters():
            if name.endswith(("ls1.gamma", "ls2.gamma")):
                nn.init.ones_(p)

    def _adapt_state(self, state: dict[str, torch.Tensor], path: object) -> dict[str, torch.Tensor]:
        pos = state.get("pos_embed")
        dim = self.cls_token.shape[-1]
        if pos is not None and pos.dim() == 3 and pos.shape[-1] == dim:
            if math.isqrt(pos.shape[1] - 1) ** 2 != pos.shape[1] - 1:
                raise GanforgeError(f"{path}: pos_embed has {pos.shape[1]} tokens, expected 1 + a square grid")
            self.pos_embed = nn.Parameter(torch.empty_like(pos, dtype=torch.float32))  # any training grid
        return state

    def extract(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pool": self.pool_features(x)}

    def protocol_extras(self) -> tuple[str, ...]:
        return (self.variant,)
