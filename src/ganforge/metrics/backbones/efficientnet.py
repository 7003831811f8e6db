"""EfficientNet-lite0 feature backbone in timm's `tf_efficientnet_lite0` layout: Projected GAN's feature network.

Network: Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks" (2019), in its "lite"
form for mobile accelerators (no squeeze-excitation, ReLU6 everywhere, stem and head widths not scaled), built from
MobileNetV2's inverted residual blocks (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
2018). The `tf_` weights were ported from TensorFlow, so every conv uses TF's "SAME" padding (output side
ceil(n / stride), the odd pixel of padding going to the right / bottom) and BatchNorm uses eps 1e-3. The module's
state dict is timm's (conv_stem, bn1, blocks.S.B.{conv_dw, conv_pw, conv_pwl, bn1-3}, conv_head, bn2, classifier);
the classifier is optional. Features: `pool`, the 1280-d global average pool after the head; `logits` when the file
has a classifier.

Projected GAN (Sauer et al., "Projected GANs Converge Faster", 2021) takes its four levels after blocks[0:2] (24 ch,
/4), blocks[2] (40 ch, /8), blocks[3:5] (112 ch, /16) and blocks[5:7] (320 ch, /32): `pyramid_layers` names the
last stage of each. Its input is the image in [-1, 1] resized bilinearly to 224, which is timm's mean = std = 0.5
normalization ("half").
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...registries import BACKBONES
from .base import Backbone, seeded_init

BN_EPS = 1e-3  # TensorFlow's BatchNorm default, kept by the ported weights
# (block type, repeats, kernel, stride of the first block, expansion, out channels) per stage, timm's arch_def
STAGES: tuple[tuple[str, int, int, int, int, int], ...] = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
STEM_CH, HEAD_CH = 32, 1280


def same_pad(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF "SAME" padding of one axis: (before, after) so that the output side is ceil(size / stride)."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """nn.Conv2d with TF "SAME" padding computed from the input size (asymmetric when the total is odd)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = same_pad(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = same_pad(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        if top == bottom and left == right:  # symmetric (every stride-1 conv): let the conv pad
            return F.conv2d(x, self.weight, None, self.stride, (top, left), self.dilation, self.groups)
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, None, self.stride, 0, self.dilation, self.groups)


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=BN_EPS)


class DepthwiseSeparable(nn.Module):
    """Depthwise kxk -> BN -> ReLU6 -> pointwise 1x1 -> BN (linear), plus identity when stride 1 and in == out."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1):
        super().__init__()
        self.conv_dw = Conv2dSame(in_ch, in_ch, kernel, stride=stride, groups=in_ch)
        self.bn1 = _bn(in_ch)
        self.conv_pw = Conv2dSame(in_ch, out_ch, 1)
        self.bn2 = _bn(out_ch)
        self.has_skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv_pw(F.relu6(self.bn1(self.conv_dw(x)))))
        return out + x if self.has_skip else out


class InvertedResidual(nn.Module):
    """1x1 expand (x expansion) -> BN -> ReLU6 -> depthwise kxk (stride) -> BN -> ReLU6 -> 1x1 project -> BN
    (linear bottleneck), plus identity when stride 1 and in == out (MobileNetV2, Fig. 3b)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, expansion: int = 6):
        super().__init__()
        mid = in_ch * expansion
        self.conv_pw = Conv2dSame(in_ch, mid, 1)
        self.bn1 = _bn(mid)
        self.conv_dw = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid)
        self.bn2 = _bn(mid)
        self.conv_pwl = Conv2dSame(mid, out_ch, 1)
        self.bn3 = _bn(out_ch)
        self.has_skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu6(self.bn1(self.conv_pw(x)))
        out = F.relu6(self.bn2(self.conv_dw(out)))
        out = self.bn3(self.conv_pwl(out))
        return out + x if self.has_skip else out


def _stages() -> nn.Sequential:
    stages, in_ch = [], STEM_CH
    for kind, repeats, kernel, stride, expansion, out_ch in STAGES:
        blocks: list[nn.Module] = []
        for i in range(repeats):
            s = stride if i == 0 else 1
            if kind == "ds":
                blocks.append(DepthwiseSeparable(in_ch, out_ch, kernel, s))
            else:
                blocks.append(InvertedResidual(in_ch, out_ch, kernel, s, expansion))
            in_ch = out_ch
        stages.append(nn.Sequential(*blocks))
    return nn.Sequential(*stages)


class EfficientNetLite0(nn.Module):
    """timm-layout tf_efficientnet_lite0 (+ optional classifier); `forward` returns the pooled (B, 1280) features."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv_stem = Conv2dSame(3, STEM_CH, 3, stride=2)
        self.bn1 = _bn(STEM_CH)
        self.blocks = _stages()  # (B, 320, H/32, W/32)
        self.conv_head = Conv2dSame(STAGES[-1][-1], HEAD_CH, 1)
        self.bn2 = _bn(HEAD_CH)
        self.classifier: nn.Linear | None = nn.Linear(HEAD_CH, num_classes)

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.bn1(self.conv_stem(x)))  # (B, 32, H/2, W/2)
        x = self.blocks(x)  # (B, 320, H/32, W/32)
        x = F.relu6(self.bn2(self.conv_head(x)))  # (B, 1280, H/32, W/32)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (B, 1280)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool_features(x)


@BACKBONES.register("efficientnet-lite0")
class EfficientNetLite0Backbone(Backbone, EfficientNetLite0):
    """EfficientNet-lite0 (timm tf_efficientnet_lite0 layout, ImageNet weights): 1280-d average-pool features."""

    name = "efficientnet-lite0"
    feature_dim = HEAD_CH
    pyramid_layers = ("blocks.1", "blocks.2", "blocks.4", "blocks.6")  # 24 /4, 40 /8, 112 /16, 320 /32

    def __init__(self, *, weights: str | None = None, device: str = "cpu", resize: str = "torch-bilinear"):
        """
        Args:
            weights: a timm-layout state dict (with or without the classifier); None fetches timm's
                tf_efficientnet_lite0 ImageNet file (no published sha256: its own sha256 keys caches); "random":
                seeded init.
            device: where the network runs.
            resize: resize protocol to 224x224: "torch-bilinear" (as Projected GAN, default),
                "torch-bilinear-aa" or "clean".
        """
        with seeded_init(0):
            super().__init__()
        self._init_protocol(device=device, resize_mode=resize, input_size=224, normalization="half")
        self._load_standard("tf-efficientnet-lite0", weights, self, layout="timm tf_efficientnet_lite0")
        self.outputs = ("pool", "logits") if self.classifier is not None else ("pool",)
        self._finish()

    def _init_random(self) -> None:
        """weights="random": He init, with each residual branch's last BN scaled down so features stay O(1)."""
        super()._init_random()
        for m in self.modules():
            if isinstance(m, InvertedResidual) and m.has_skip:
                nn.init.constant_(m.bn3.weight, 0.2)

    def _adapt_state(self, state: dict[str, torch.Tensor], path: object) -> dict[str, torch.Tensor]:
        weight = state.get("classifier.weight")
        if weight is None:
            self.classifier = None  # no classifier in the file: features only
        elif weight.dim() == 2 and weight.shape[1] == HEAD_CH:
            self.classifier = nn.Linear(HEAD_CH, weight.shape[0])  # any number of classes
        return state

    def extract(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        pool = self.pool_features(x)
        out = {"pool": pool}
        if self.classifier is not None:
            out["logits"] = self.classifier(pool)
        return out
