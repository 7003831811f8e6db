"""Vision-transformer layers for ViTGAN (Lee et al., "ViTGAN: Training GANs with Vision Transformers", ICLR 2022).

- `SelfModulatedLayerNorm` (Sec. 3.2, "self-modulated LayerNorm"): SLN(h, w) = gamma(w) * LN(h) + beta(w), LN
  without affine. gamma is parametrized as 1 + (linear map of w), as the authors' PyTorch reproduction
  (mlpc-ucsd/ViTGAN `vit_generator.py`: LN eps 1e-3, `out * (1 + gamma) + beta`); it is the paper's formula with
  gamma's bias offset by 1, so a zero map is the identity modulation (SLN = LN).
- `ImprovedSpectralNorm` (Sec. 3.1, Eq. 4): W_ISN = sigma(W_init) * W / sigma_hat(W). sigma(W_init) is the top
  singular value of the initial weight (SVD, then a fixed buffer); sigma_hat is spectral norm's power-iteration
  estimate u^T W v (Miyato et al. 2018), one step per training forward when stand-alone and one per update under
  the trainer, exactly like `nn/spectral_norm.SpectralNorm`, which it extends (so the trainer steps it the same way).
- `L2Attention` (Sec. 3.1, Eq. 3, after Kim et al., "The Lipschitz Constant of Self-Attention", ICML 2021):
  softmax(-||x_i W_q - x_j W_k||^2 / sqrt(d_h)) x_j W_v with tied W_q = W_k (one matrix): dot-product attention is
  not Lipschitz, L2 attention with tied projections is. The minus sign is Kim et al.'s (closer keys get more
  weight); the reproduction's `l2_attn` branch omits it and uses a mean instead of a sum (METHODS.md) - not copied.
- `OverlappingPatchEmbed` (Sec. 3.1, "overlapping image patches"): D's tokens are linear maps of (P + 2o)^2 windows
  taken at stride P (zero padding o), so neighbouring tokens share pixels and the grid stays (H / P) x (W / P).
- `PatchINR` (Sec. 3.2, "implicit neural representation for patch generation", Eq. 6 x^i = f_theta(E_fou, y^i)):
  one MLP, shared by every patch, maps a Fourier encoding E_fou of the pixel coordinates inside a patch to the
  patch's pixels, its layers modulated (StyleGAN2 weight (de)modulation, as the reproduction's CIPS layers) by the
  patch's token embedding y^i.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from .init import weight_layers
from .spectral_norm import SpectralNorm


# ----------------------------------------------------------------------------------------------------------- norms
class SelfModulatedLayerNorm(nn.Module):
    """SLN(h, w) = LN(h) * (1 + gamma(w)) + beta(w): LN without affine (eps 1e-3), gamma and beta linear maps of w."""

    def __init__(self, dim: int, w_dim: int, eps: float = 1e-3):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.gamma = nn.Linear(w_dim, dim)
        self.beta = nn.Linear(w_dim, dim)
        for layer in (self.gamma, self.beta):
            nn.init.zeros_(layer.bias)

    def forward(self, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """h (B, N, dim) tokens, w (B, w_dim) -> (B, N, dim); every token of a sample gets that sample's modulation."""
        out = F.layer_norm(h, (self.dim,), eps=self.eps)
        return out * (1 + self.gamma(w)).unsqueeze(1) + self.beta(w).unsqueeze(1)


# ------------------------------------------------------------------------------------------------------------ ISN
class ImprovedSpectralNorm(SpectralNorm):
    """Parametrization W -> sigma(W_init) * W / sigma_hat(W) (ViTGAN Eq. 4); `sigma_init` is a fixed buffer."""

    def __init__(self, weight: torch.Tensor, n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12):
        super().__init__(weight, n_power_iterations, dim, eps)
        sigma = torch.linalg.matrix_norm(self._matrix(weight.detach()), ord=2) if weight.ndim > 1 else weight.norm()
        self.register_buffer("sigma_init", sigma.detach().clone())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return super().forward(weight) * self.sigma_init.to(weight.dtype)


def apply_isn(module: nn.Module, enabled: bool = True) -> nn.Module:
    """Put improved spectral norm on every weight layer in `module` (their current weights are W_init)."""
    if not enabled:
        return module
    for layer in weight_layers(module):
        if not parametrize.is_parametrized(layer, "weight"):
            parametrize.register_parametrization(layer, "weight", ImprovedSpectralNorm(layer.weight))
    return module


# ------------------------------------------------------------------------------------------------------ attention
def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, heads * d) -> (B, heads, N, d)."""
    b, n, _ = x.shape
    return x.view(b, n, heads, -1).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, d) -> (B, N, heads * d)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class DotAttention(nn.Module):
    """Multi-head scaled dot-product self-attention (Vaswani et al. 2017), as in ViT; used by ViTGAN's generator."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Attention weights (B, heads, N, N): softmax over keys of q_i . k_j / sqrt(d_h)."""
        q, k = _split_heads(self.q(x), self.heads), _split_heads(self.k(x), self.heads)
        return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = _split_heads(self.v(x), self.heads)
        return self.out(_merge_heads(self.weights(x) @ v))


class L2Attention(nn.Module):
    """Multi-head L2 self-attention with tied query/key projection (Kim et al. 2021; ViTGAN Eq. 3)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qk = nn.Linear(dim, dim, bias=False)  # W_q = W_k: one matrix
        self.v = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Attention weights (B, heads, N, N): softmax over j of -||q_i - q_j||^2 / sqrt(d_h), q = x W_q."""
        q = _split_heads(self.qk(x), self.heads)  # keys are the same vectors
        sq = q.pow(2).sum(-1)  # (B, heads, N)
        dist = sq.unsqueeze(-1) + sq.unsqueeze(-2) - 2 * (q @ q.transpose(-1, -2))  # ||q_i - q_j||^2
        return torch.softmax(-dist / math.sqrt(self.head_dim), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = _split_heads(self.v(x), self.heads)
        return self.out(_merge_heads(self.weights(x) @ v))


class FeedForward(nn.Sequential):
    """The transformer MLP: Linear -> GELU -> Linear (ViT)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


# --------------------------------------------------------------------------------------------------------- blocks
class ViTBlock(nn.Module):
    """Pre-norm transformer block of ViTGAN's discriminator: h += L2Attn(LN(h)); h += MLP(LN(h))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = L2Attention(dim, heads)
        self.mlp = FeedForward(dim, dim * mlp_ratio)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attn(self.norm1(h))
        return h + self.mlp(self.norm2(h))


class SLNBlock(nn.Module):
    """Generator block (ViTGAN Eq. 5): h' = MSA(SLN(h, w)) + h; h'' = MLP(SLN(h', w)) + h'."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, w_dim: int):
        super().__init__()
        self.norm1, self.norm2 = SelfModulatedLayerNorm(dim, w_dim), SelfModulatedLayerNorm(dim, w_dim)
        self.attn = DotAttention(dim, heads)
        self.mlp = FeedForward(dim, dim * mlp_ratio)

    def forward(self, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        h = h + self.attn(self.norm1(h, w))
        return h + self.mlp(self.norm2(h, w))


# ----------------------------------------------------------------------------------------------- patch embedding
class OverlappingPatchEmbed(nn.Module):
    """(B, C, H, W) -> (B, (H/P)(W/P), dim): a linear map of each (P + 2o)^2 window at stride P, zero padding o."""

    def __init__(self, channels: int, dim: int, patch: int, overlap: int):
        super().__init__()
        self.patch, self.overlap = patch, overlap
        self.proj = nn.Conv2d(channels, dim, kernel_size=patch + 2 * overlap, stride=patch, padding=overlap)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # row-major token order


# -------------------------------------------------------------------------------------------------------- the INR
def patch_coordinates(ph: int, pw: int) -> torch.Tensor:
    """(ph * pw, 2) pixel-centre coordinates (y, x) inside a patch, in (-1, 1), row-major."""
    ys = (2 * torch.arange(ph, dtype=torch.float32) + 1) / ph - 1
    xs = (2 * torch.arange(pw, dtype=torch.float32) + 1) / pw - 1
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)  # (ph, pw, 2)
    return grid.reshape(-1, 2)


def fourier_features(coords: torch.Tensor, num_freqs: int) -> torch.Tensor:
    """(N, 2) coordinates -> (N, 4 * num_freqs): [sin(pi 2^k c), cos(pi 2^k c)] for k < num_freqs, per axis.

    Distinct pixel centres in (-1, 1) stay distinct (the k = 0 pair has period 2)."""
    freqs = math.pi * 2.0 ** torch.arange(num_freqs, dtype=coords.dtype)  # (K,)
    angles = (coords.unsqueeze(-1) * freqs).flatten(1)  # (N, 2K): axis-major
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class TokenModulatedLinear(nn.Module):
    """StyleGAN2's modulated FC per token: out = x (W diag(s))^T, rows demodulated; s = A(y) from the token y."""

    def __init__(self, in_features: int, out_features: int, token_dim: int, demodulate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / math.sqrt(in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.affine = nn.Linear(token_dim, in_features)
        nn.init.normal_(self.affine.weight, std=1 / math.sqrt(token_dim))
        nn.init.ones_(self.affine.bias)  # styles around 1 (StyleGAN2)
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x (T, P, in) pixels of T tokens, y (T, token_dim) -> (T, P, out)."""
        s = self.affine(y)  # (T, in)
        out = (x * s.unsqueeze(1)) @ self.weight.t()
        if self.demodulate:  # 1 / sqrt(sum_i (s_i w_oi)^2) per token and output
            out = out * torch.rsqrt(s.pow(2) @ self.weight.pow(2).t() + 1e-8).unsqueeze(1)
        return out + self.bias


class PatchINR(nn.Module):
    """x^i = f(E_fou, y^i): a modulated MLP on Fourier features of in-patch coordinates -> (C, ph, pw) per token."""

    def __init__(self, token_dim: int, channels: int, patch: tuple[int, int], hidden: int, layers: int,
                 num_freqs: int):
        super().__init__()
        self.channels, self.patch = channels, patch
        self.register_buffer("e_fou", fourier_features(patch_coordinates(*patch), num_freqs), persistent=False)
        widths = [4 * num_freqs] + [hidden] * layers
        self.layers = nn.ModuleList(TokenModulatedLinear(a, b, token_dim) for a, b in zip(widths[:-1], widths[1:]))
        self.to_pixels = TokenModulatedLinear(widths[-1], channels, token_dim, demodulate=False)

    def patches(self, y: torch.Tensor) -> torch.Tensor:
        """Token embeddings y (T, token_dim) -> patches (T, C, ph, pw); the same weights for every token."""
        x = self.e_fou.to(y.dtype).expand(y.shape[0], -1, -1)  # (T, ph * pw, 4K)
        for layer in self.layers:
            x = F.leaky_relu(layer(x, y), 0.2)
        x = self.to_pixels(x, y)  # (T, ph * pw, C)
        return x.transpose(1, 2).reshape(y.shape[0], self.channels, *self.patch)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, gh * gw, token_dim) row-major tokens -> (B, C, gh * ph, gw * pw) images (the patches tiled).

        The module's output is the whole image, so every module output in G stays per-sample (hooks that read G's
        layers, e.g. dissection, never see a (B * tokens, ...) tensor)."""
        return patches_to_image(self.patches(tokens.reshape(-1, tokens.shape[-1])), grid)


def patches_to_image(patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B * gh * gw, C, ph, pw) row-major patches -> (B, C, gh * ph, gw * pw) images."""
    gh, gw = grid
    n, c, ph, pw = patches.shape
    x = patches.view(n // (gh * gw), gh, gw, c, ph, pw)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(-1, c, gh * ph, gw * pw)
