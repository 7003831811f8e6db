"""FastGAN's self-supervised discriminator: simple decoders reconstruct real images from D's feature maps.

Liu et al., "Towards Faster and Stabilized GAN Training for High-fidelity Few-shot Image Synthesis", ICLR 2021,
Sec. 3.2, Eq. 2:  L_recons = E_{f ~ D_encode(x), x ~ I_real} [ || G(f) - T(x) || ],
with G the decoders, f D's intermediate maps on REAL images only and T a processing of x (downsampling, cropping).
The official code decodes D's 8x8 map into the whole image (resized to 128) and a random quadrant of D's 16x16 map
into the same quadrant of the image, and adds the losses to D's hinge loss. Decoder (the code's SimpleDecoder):
adaptive avg pool to the start size, up blocks "nearest x2 -> conv3x3 (2C) -> BN -> GLU", conv3x3 -> tanh.

Here (choices, not the paper's):
- ||.|| is L1 (default) or MSE, averaged over elements, not LPIPS: no registered perceptual backbone fits yet, so
  there is no `perceptual` option. Each decoder's loss is weighted equally: L_D += weight * (L_big + L_part).
- Targets are area-downsampled (adaptive average pooling) from the image D saw: the "image" tap, i.e. the real after
  the run's augmentation, as in the code where D reconstructs its augmented input. Output sizes: the whole-image
  decoder goes from the last map's size up by doublings while it fits min(image, max_res); the part decoder from the
  quadrant's size up to min(quadrant of the image, max_res). At 16 px: 8x8 -> 16x16 and 8x8 -> 8x8 (no up block).
- The quadrant is drawn per sample (the code draws one for the batch), from `ctx.sample_rng()` (DDP-identical).
- The decoder of D's 128 px branch (`decoder_small`) is absent, as that branch is (models/fastgan.py).
The decoders are this term's parameters, sized from the build context's `tap_shapes`, trained with D's optimizer
(`trains_with = "D"`) and checkpointed with the term. Works with any D exposing the three taps (`image_tap`,
`big_tap`, `part_tap`); models/fastgan.py does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_int
from ..errors import GanforgeError
from ..registries import REGULARIZERS
from .base import Context, ObjectiveTerm
from .gradients import check_nonnegative

NAME = "fastgan-recon"
DISTANCES = {"l1": lambda a, b: (a.float() - b.float()).abs().mean(),
             "mse": lambda a, b: (a.float() - b.float()).pow(2).mean()}


def quadrant(t: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Quadrant q[b] of each map t[b] (B, C, H, W) -> (B, C, H/2, W/2); q = 2 * row + col, row/col in {0, 1}."""
    b, c, h, w = t.shape
    quads = t.reshape(b, c, 2, h // 2, 2, w // 2).permute(0, 2, 4, 1, 3, 5).reshape(b, 4, c, h // 2, w // 2)
    return quads[torch.arange(b, device=t.device), q.to(t.device)]


def out_size(start: tuple[int, int], limit: int) -> tuple[tuple[int, int], int]:
    """(start * 2^k, k) for the largest k >= 0 with min(start) * 2^k <= limit (k = 0 when even start exceeds it)."""
    k = 0
    while min(start) << (k + 1) <= limit:
        k += 1
    return (start[0] << k, start[1] << k), k


class SimpleDecoder(nn.Module):
    """Pool to `start`, `ups` up blocks (nearest x2 -> conv3x3 -> BN -> GLU), conv3x3 -> tanh."""

    def __init__(self, in_ch: int, out_ch: int, start: tuple[int, int], ups: int, width: int):
        super().__init__()
        self.start = start
        widths = [max(4, width >> i) for i in range(ups + 1)]
        self.inp = nn.Conv2d(in_ch, widths[0], 1, bias=False)
        self.ups = nn.ModuleList(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                               nn.Conv2d(a, 2 * b, 3, padding=1, bias=False), nn.BatchNorm2d(2 * b),
                                               nn.GLU(dim=1)) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Conv2d(widths[-1], out_ch, 3, padding=1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        x = self.inp(F.adaptive_avg_pool2d(f, self.start))
        for block in self.ups:
            x = block(x)
        return torch.tanh(self.out(x))


@REGULARIZERS.register(NAME)
class FastGANReconstruction(nn.Module, ObjectiveTerm):
    """FastGAN Eq. 2: weight * (||dec_big(f_last) - T(x_r)|| + ||dec_part(crop f_part) - crop(x_r)||), reals only.

    Args:
        weight: weight of the reconstruction loss in D's loss (official code: 1).
        distance: "l1" or "mse" (the paper uses LPIPS; see the module docstring).
        width: decoder width at its start size, halved per up block (at least 4).
        max_res: largest side a decoder outputs (official: 128).
        image_tap: D tap whose output is the image D saw (the target).
        big_tap: D tap decoded into the whole image (FastGAN: its 8x8 map).
        part_tap: D tap whose random quadrant is decoded into that quadrant of the image (FastGAN: its 16x16 map).
    """

    needs_features = True
    needs_architecture = "fastgan"  # reads FastGAN D's taps (image, part, last); other families lack them
    trains_with = "D"  # the decoders step with D's optimizer

    def __init__(self, weight: float = 1.0, distance: str = "l1", width: int = 64, max_res: int = 128,
                 image_tap: str = "image", big_tap: str = "last", part_tap: str = "part", *,
                 tap_shapes: dict | None = None, img_shape: tuple = ()):
        super().__init__()
        self.weight = check_nonnegative(weight, f"{NAME}.weight")
        if distance not in DISTANCES:
            raise GanforgeError(f"{NAME}.distance: expected one of {', '.join(DISTANCES)}, got {distance!r}")
        self.distance = distance
        width = check_int(width, f"{NAME}.width", minimum=1)
        max_res = check_int(max_res, f"{NAME}.max_res", minimum=1)
        shapes = dict(tap_shapes or {})
        for key, tap in (("image_tap", image_tap), ("big_tap", big_tap), ("part_tap", part_tap)):
            if tap not in shapes:
                raise GanforgeError(f"{NAME}.{key}: D exposes no feature map {tap!r} (its taps: "
                                    f"{', '.join(shapes) or 'none'}); use model fastgan or name another tap")
        self.taps = (image_tap, big_tap, part_tap)
        img_c, img_h, img_w = shapes[image_tap]
        big, part = shapes[big_tap], shapes[part_tap]
        if part[1] % 2 or part[2] % 2:
            raise GanforgeError(f"{NAME}.part_tap: map {part_tap!r} of size {part[1]}x{part[2]} cannot be split "
                                f"into quadrants (sides must be even)")
        big_out, big_ups = out_size(tuple(big[1:]), min(img_h, img_w, max_res))
        part_start = (part[1] // 2, part[2] // 2)
        part_out, part_ups = out_size(part_start, min(img_h // 2, img_w // 2, max_res))
        self.sizes = {"big": big_out, "part": part_out}
        self.decoders = nn.ModuleDict({"big": SimpleDecoder(big[0], img_c, tuple(big[1:]), big_ups, width),
                                       "part": SimpleDecoder(part[0], img_c, part_start, part_ups, width)})

    def targets(self, image: torch.Tensor, q: torch.Tensor) -> dict[str, torch.Tensor]:
        """T(x): the whole image and its quadrant q, each area-resized to its decoder's output size."""
        return {"big": F.adaptive_avg_pool2d(image, self.sizes["big"]),
                "part": F.adaptive_avg_pool2d(quadrant(image, q), self.sizes["part"])}

    def reconstructions(self, maps: dict[str, torch.Tensor], q: torch.Tensor) -> dict[str, torch.Tensor]:
        """The decoders' outputs from D's maps on reals: the whole image and quadrant q."""
        _, big_tap, part_tap = self.taps
        return {"big": self.decoders["big"](maps[big_tap]),
                "part": self.decoders["part"](quadrant(maps[part_tap], q))}

    def loss(self, maps: dict[str, torch.Tensor], q: torch.Tensor) -> torch.Tensor:
        """weight * sum over the two decoders of distance(reconstruction, target)."""
        dist = DISTANCES[self.distance]
        recon, target = self.reconstructions(maps, q), self.targets(maps[self.taps[0]], q)
        return self.weight * sum(dist(recon[k], target[k]) for k in ("big", "part"))

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        maps = ctx.d_real.get("features")
        if not maps:
            raise GanforgeError(f"{NAME}: D returned no feature maps; this term needs D's taps")
        q = ctx.sample_rng().randint(0, 4, ctx.real.shape[0], device=ctx.real.device)
        return {NAME: self.loss(maps, q)}

    def extra_repr(self) -> str:
        return f"weight={self.weight}, distance={self.distance!r}, sizes={self.sizes}"
