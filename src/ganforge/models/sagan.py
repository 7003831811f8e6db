"""SAGAN: the SNGAN ResNet with self-attention blocks ("Self-Attention Generative Adversarial Networks", Zhang et al.,
ICML 2019): spectral norm in G as well as D (Sec. 4), a self-attention block (`nn/attention.py`, gamma = 0 at init)
after chosen G and D blocks, and two time-scale learning rates in its presets (G 1e-4, D 4e-4, Adam (0, 0.9)).
Placement as StudioGAN's CIFAR-10 SAGAN: after G's 2nd up block (16x16 at 32 px) and D's 1st block (16x16).
"""
from __future__ import annotations

from ..conditioning.base import GConditioning
from ..errors import GanforgeError
from ..registries import ARCHITECTURES
from .base import ArchPair
from .layout import conv_grid
from .resnet import build_resnet


def _locations(value, count: int, key: str, what: str) -> tuple[int, ...]:
    """Validated 1-based block indices after which an attention block sits."""
    values = [value] if isinstance(value, int) else list(value)
    for k in values:
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= count:
            raise GanforgeError(f"architecture 'sagan' option {key}: {what} has blocks 1..{count} at this "
                                f"resolution; got {k!r}")
    return tuple(sorted(set(values)))


@ARCHITECTURES.register("sagan")
def sagan(*, img_shape: tuple, num_classes: int, g_cond: GConditioning, z_dim: int = 128, g_ch: int = 256,
          d_ch: int = 128, g_sn: bool = True, d_sn: bool = True, init: str = "ortho", full_width_res: int = 32,
          attn_g: int | list[int] | None = None, attn_d: int | list[int] | None = None) -> ArchPair:
    """SAGAN (Zhang et al. 2019): SNGAN ResNet + self-attention, SN in G and D.

    Args:
        z_dim, g_ch, d_ch, init, full_width_res: as resnet's.
        g_sn: spectral norm in G (SAGAN: on).
        d_sn: spectral norm in D.
        attn_g: G up blocks (1-based) followed by self-attention (default: block 2, or the last when fewer).
        attn_d: D blocks (1-based, the optimized block is 1) followed by self-attention (default: 1).
    """
    steps = conv_grid(tuple(img_shape), "sagan").steps
    d_blocks = 1 + max(0, steps - 2) + 2  # optimized, down blocks, two plain blocks (as models/resnet.py)
    g_at = _locations(min(2, steps) if attn_g is None else attn_g, steps, "attn_g", "G")
    d_at = _locations(1 if attn_d is None else attn_d, d_blocks, "attn_d", "D")
    return build_resnet("sagan", img_shape, num_classes, g_cond, z_dim=z_dim, g_ch=g_ch, d_ch=d_ch, g_sn=g_sn,
                        d_sn=d_sn, init=init, full_width_res=full_width_res, attn_g=g_at, attn_d=d_at)
