"""A per-pixel concept segmenter for `shapes-captions` images: the segmentation model GAN Dissection needs.

GAN Dissection ("GAN Dissection: Visualizing and Understanding Generative Adversarial Networks", Bau et al., ICLR
2019, Sec. 3.1) matches a generator's units to concepts through a semantic segmentation s_c(x) of its samples. For
the procedural shapes set (`data/shapes_captioned.py`) the ground truth of every rendered image is known exactly, so
a segmenter can be trained offline on fresh renders and its accuracy measured on an independent draw.

Concepts (`CONCEPTS`, 8 of them, one channel each, multi-label: a shape pixel is one shape kind AND one colour):
the shape kinds `circle`, `square`, `triangle` (the pixels of that shape, `shape_mask` inside its box), the colours
`red`, `green`, `blue`, `yellow` (the pixels drawn in it) and `background` (pixels no shape covers). `layout_masks`
gives them for a layout from the same boxes and masks `render` draws, so they match the rendered pixels exactly.

The model is a small fully convolutional net (`ShapesSegmenter`): two stride-2 conv stages, a decoder back to the
image size with skip connections, and one logit per concept and pixel (sigmoid, binary cross-entropy per concept,
positives weighted 4x). It is trained deterministically (fixed seeds and schedule, one thread, deterministic
algorithms) on 3,000 renders of one or two shapes with Gaussian pixel noise (std up to 0.1), a random brightness scale
(0.7-1) and a random blur, so that GAN samples (soft edges, dimmer colours) are still read: about 13 CPU-seconds at
16 px, 31 at 32 px, 2 minutes at 64 px. The weights are cached as `<cache>/shapes-segmenter-v<VERSION>-r<R>.safetensors`
with the per-concept pixel IoU on 500 held-out renders (another seed) in the metadata, clean (`heldout_iou`, >= 0.999
for every concept at each resolution) and with the training noise (`heldout_iou_noisy`), following
`data/shapes_attributes.py`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import download
from .bundled_nets import load_cached, train_deterministic
from .shapes_captioned import COLOUR_NAMES, RESOLUTIONS, SHAPES, sample_layout, shape_mask

SEGMENTER_VERSION = 1
CONCEPTS = (*SHAPES, *COLOUR_NAMES, "background")
_SEED = 0
_DATA_SEED = 54321  # training renders; the held-out draw uses _DATA_SEED + 1
_N_TRAIN, _N_TEST = 3000, 500
_EPOCHS = 3
_BATCH = 16
_LR = 1e-2
_POS_WEIGHT = 4.0  # positives weigh 4x in the BCE: a shape kind covers a few % of the pixels (learnt much sooner)
_MAX_NOISE = 0.1
_P_TWO = 0.5
MIN_IOU = 0.85  # per concept on the held-out draw for the cached model; below this the training is broken


# ------------------------------------------------------------------------------------------------- ground truth
def layout_masks(layout: dict, resolution: int) -> np.ndarray:
    """bool (len(CONCEPTS), R, R): each concept's pixels in the image `render(layout, resolution)` draws."""
    masks = np.zeros((len(CONCEPTS), resolution, resolution), bool)
    for s in layout["shapes"]:
        x, y, side = s["box"]
        m = shape_mask(s["shape"], side)
        for name in (s["shape"], s["colour"]):
            masks[CONCEPTS.index(name), y:y + side, x:x + side] |= m
    masks[CONCEPTS.index("background")] = ~masks[:len(SHAPES)].any(axis=0)
    return masks


def rendered_set(n: int, resolution: int, seed: int, p_two: float = _P_TWO) -> tuple[torch.Tensor, torch.Tensor]:
    """n fresh layouts rendered: uint8 images (n, 3, R, R) and their concept masks, bool (n, len(CONCEPTS), R, R)."""
    from .shapes_captioned import render

    rng = np.random.default_rng(seed)
    layouts = [sample_layout(rng, resolution, p_two) for _ in range(n)]
    x = np.stack([render(lay, resolution) for lay in layouts])
    m = np.stack([layout_masks(lay, resolution) for lay in layouts])
    return torch.from_numpy(x), torch.from_numpy(m)


# -------------------------------------------------------------------------------------------------------- model
def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.BatchNorm2d(c_out), nn.ReLU())


class ShapesSegmenter(nn.Module):
    """Fully convolutional: float (B, 3, R, R) images in [0, 1] -> concept logits (B, len(CONCEPTS), R, R).

    Encoder R -> R/2 -> R/4 (16, 32, 64 channels); decoder: nearest x2 of the R/4 features joined with the R/2 ones,
    a conv, nearest x2 joined with the full-resolution ones, a conv and a 1x1 conv to one logit per concept.
    """

    def __init__(self, resolution: int = 32):
        super().__init__()
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution}")
        self.resolution = resolution
        self.enc1 = _conv(3, 16)  # (B, 16, R, R)
        self.enc2 = nn.Sequential(_conv(16, 32, 2), _conv(32, 32))  # (B, 32, R/2, R/2)
        self.enc3 = nn.Sequential(_conv(32, 64, 2), _conv(64, 64))  # (B, 64, R/4, R/4)
        self.dec2 = _conv(64 + 32, 32)  # (B, 32, R/2, R/2)
        self.dec1 = _conv(32 + 16, 16)  # (B, 16, R, R)
        self.head = nn.Conv2d(16, len(CONCEPTS), 1)
        self.concepts = CONCEPTS
        self.heldout_iou: dict[str, float] = {}  # clean held-out renders
        self.heldout_iou_noisy: dict[str, float] = {}  # the same renders with the training augmentation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.enc1(x)
        f2 = self.enc2(f1)
        f3 = self.enc3(f2)
        d2 = self.dec2(torch.cat([F.interpolate(f3, scale_factor=2, mode="nearest"), f2], dim=1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2, mode="nearest"), f1], dim=1))
        return self.head(d1)

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Segmenter inputs (B, 3, R, R) in [0, 1] -> per-pixel concept probabilities (B, len(CONCEPTS), R, R)."""
        parts = [torch.sigmoid(self(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
        return torch.cat(parts) if parts else torch.zeros(0, len(CONCEPTS), *x.shape[2:])


def to_segmenter_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (0..255) or model-space floats ([-1, 1]), (B, 3, R, R) -> floats in [0, 1]."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected RGB images (B, 3, H, W), got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    return ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)


def concept_iou(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Pixel IoU per concept over a whole set, sum |pred & truth| / sum |pred | truth| (bool (B, K, R, R)), plus
    "mean" over concepts. A concept absent from both is given IoU 1."""
    inter = (pred & truth).sum(dim=(0, 2, 3)).double()
    union = (pred | truth).sum(dim=(0, 2, 3)).double()
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
    out = {c: float(v) for c, v in zip(CONCEPTS, iou)}
    out["mean"] = float(iou.mean())
    return out


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Brightness scale U(0.7, 1), a 3x3 box blur mixed in with weight U(0, 1) for half the images, then Gaussian
    noise of std U(0, _MAX_NOISE) per image; clamped to [0, 1]."""
    b = len(x)
    x = x * (0.7 + 0.3 * torch.rand(b, 1, 1, 1, generator=g))
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    w = torch.rand(b, 1, 1, 1, generator=g) * (torch.rand(b, 1, 1, 1, generator=g) < 0.5)
    x = (1 - w) * x + w * blurred
    s = torch.rand(b, 1, 1, 1, generator=g) * _MAX_NOISE
    return (x + s * torch.randn(x.shape, generator=g)).clamp_(0.0, 1.0)


@torch.enable_grad()  # callers may sit under no_grad (an explorer's run)
def train_shapes_segmenter(resolution: int = 32, *, n_train: int = _N_TRAIN, epochs: int = _EPOCHS,
                           n_test: int = _N_TEST) -> ShapesSegmenter:
    """Train the segmenter from scratch, deterministically; sets `heldout_iou` on an independent held-out draw.

    Args:
        resolution: 16, 32 or 64.
        n_train: rendered training images (fresh layouts, fixed seed).
        epochs: passes over them (the learning rate follows one cycle over all steps).
        n_test: held-out renders (another seed) the per-concept IoU is measured on.
    """
    x_train, m_train = rendered_set(n_train, resolution, _DATA_SEED)
    x_test, m_test = rendered_set(n_test, resolution, _DATA_SEED + 1)
    x_train, t_train = to_segmenter_input(x_train), m_train.float()
    pos_weight = torch.full((len(CONCEPTS), 1, 1), _POS_WEIGHT)

    def batch_loss(model, idx, g):
        return F.binary_cross_entropy_with_logits(model(_augment(x_train[idx], g)), t_train[idx],
                                                  pos_weight=pos_weight)

    model = train_deterministic(lambda: ShapesSegmenter(resolution), len(x_train), batch_loss, epochs=epochs,
                                batch_size=_BATCH, lr=_LR, seed=_SEED)
    clean = to_segmenter_input(x_test)
    model.heldout_iou = concept_iou(model.probabilities(clean) > 0.5, m_test)
    noisy = _augment(clean, torch.Generator().manual_seed(_SEED + 1))
    model.heldout_iou_noisy = concept_iou(model.probabilities(noisy) > 0.5, m_test)
    return model


# -------------------------------------------------------------------------------------------------------- cache
def segmenter_path(resolution: int, cache_dir: str | os.PathLike | None = None) -> Path:
    """`<cache_dir or ganforge cache>/shapes-segmenter-v<VERSION>-r<resolution>.safetensors`."""
    root = Path(cache_dir) if cache_dir is not None else download.cache_dir()
    return root / f"shapes-segmenter-v{SEGMENTER_VERSION}-r{resolution}.safetensors"


def _load_cached(path: Path, resolution: int) -> ShapesSegmenter | None:
    """The cached segmenter, or None when the file is missing, corrupt or from another version / concept list."""
    def restore(model, meta):
        model.heldout_iou = {k: float(v) for k, v in json.loads(meta["heldout_iou"]).items()}
        model.heldout_iou_noisy = {k: float(v) for k, v in json.loads(meta["heldout_iou_noisy"]).items()}

    return load_cached(path, lambda: ShapesSegmenter(resolution),
                       {"version": SEGMENTER_VERSION, "resolution": resolution, "concepts": list(CONCEPTS)}, restore)


def load_shapes_segmenter(resolution: int = 32, cache_dir: str | os.PathLike | None = None) -> ShapesSegmenter:
    """The shapes segmenter for `resolution` in eval mode (`.concepts`, `.heldout_iou`): cached, else trained.

    Args:
        resolution: 16, 32 or 64 (that of the images it will segment).
        cache_dir: directory for the weights file; None uses the ganforge cache ($GANFORGE_CACHE).
    """
    from ..fileio import save_safetensors

    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution}")
    path = segmenter_path(resolution, cache_dir)
    model = _load_cached(path, resolution)
    if model is None:
        model = train_shapes_segmenter(resolution)
        worst = min(model.heldout_iou[c] for c in CONCEPTS)
        if not worst >= MIN_IOU:
            raise RuntimeError(f"shapes segmenter (r{resolution}) reached only {worst:.4f} held-out IoU on a "
                               f"concept (< {MIN_IOU}); this is a bug")
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_safetensors(state, path, metadata={"version": str(SEGMENTER_VERSION), "resolution": str(resolution),
                                                "concepts": json.dumps(list(CONCEPTS)),
                                                "heldout_iou": json.dumps(model.heldout_iou),
                                                "heldout_iou_noisy": json.dumps(model.heldout_iou_noisy)})
    model.eval().requires_grad_(False)
    return model
