"""Differentiable multi-scale feature maps of an evaluation backbone (what Projected GAN's D looks through).

An evaluation backbone computes its outputs under `no_grad` from uint8 images. A projected discriminator (Sauer et
al., "Projected GANs Converge Faster", 2021) needs the opposite: intermediate maps of the same frozen network, taken
from model-space images with gradients flowing back to G. A backbone class opts in by naming its stages in
`pyramid_layers` (input side first); `feature_pyramid` runs the backbone's own `extract` with forward hooks on those
modules and stops the forward pass right after the last one (nothing after it is computed, so the network's head
never sees a size it was not built for). The input protocol is the backbone's normalization, after a differentiable
resize (area or bilinear with antialiasing when shrinking, bilinear when enlarging) to `input_size`. A backbone
that runs each image channel as its own row (stacked-digits-classifier) gets its rows folded back into channels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import GanforgeError
from .base import NORMALIZATIONS, Backbone


class _Stop(Exception):
    """Raised by the hook on the last pyramid layer: the rest of the network is not needed."""


def pyramid_backbones(names) -> list[str]:
    """The registered backbone names whose class names `pyramid_layers`."""
    from ...registries import BACKBONES

    return [n for n in names if getattr(BACKBONES.get(n).obj, "pyramid_layers", ())]


def check_pyramid(backbone, where: str, name: str | None = None) -> tuple[str, ...]:
    """The pyramid layer names of a backbone (instance or class; `name`: its registry name), or a one-line error
    naming the backbones that have them."""
    layers = tuple(getattr(backbone, "pyramid_layers", ()))
    if not layers:
        from ...registries import BACKBONES

        raise GanforgeError(f"{where}: backbone {name or backbone.name!r} exposes no multi-scale feature maps "
                            f"(pyramid_layers); choose one of: {', '.join(pyramid_backbones(BACKBONES.names()))}")
    return layers


def differentiable_resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, *size) with autograd (and double backward): area averaging for the "area" protocol when
    shrinking, else bilinear with half-pixel centres, antialiased when shrinking except under the "torch-bilinear"
    protocol (plain F.interpolate, as Projected GAN's own code resizes for EfficientNet-lite0)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] <= x.shape[-2] and size[1] <= x.shape[-1]
    if mode == "area" and shrink:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                         antialias=shrink and mode != "torch-bilinear")


def to_backbone_input(backbone: Backbone, x: torch.Tensor, input_size: tuple[int, int] | None) -> torch.Tensor:
    """Model-space images in [-1, 1] (B, 1|3, H, W) -> the backbone's network input (resized, normalized, 3 ch)."""
    x = (x + 1.0) * 127.5  # the 0..255 range the backbone's normalization expects
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    size = input_size or backbone.input_size
    if size is not None:
        x = differentiable_resize(x, tuple(size), backbone.resize_mode)
    return NORMALIZATIONS[backbone.normalization](x)


def feature_pyramid(backbone: Backbone, x: torch.Tensor, input_size: tuple[int, int] | None = None
                    ) -> list[torch.Tensor]:
    """The outputs of `backbone.pyramid_layers` (input side first) on model-space images `x`, differentiable in x."""
    layers = check_pyramid(backbone, "feature_pyramid")
    modules = dict(backbone.named_modules())
    maps: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def fn(_module, _inputs, out):
            maps[name] = out
            if len(maps) == len(layers):
                raise _Stop
        return fn

    hooks = [modules[name].register_forward_hook(hook(name)) for name in layers]
    try:
        backbone.extract(to_backbone_input(backbone, x, input_size))
    except _Stop:
        pass
    finally:
        for h in hooks:
            h.remove()
    b = x.shape[0]  # a backbone that batches images' channels (stacked-digits: B * 3 rows) folds them into channels
    return [m if m.shape[0] == b else m.reshape(b, -1, *m.shape[2:]) for m in (maps[name] for name in layers)]
