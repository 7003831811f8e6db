"""ResNet-50 feature backbone in torchvision's layout, e.g. with SwAV self-supervised weights.

Network: He et al., "Deep Residual Learning for Image Recognition" (2016), torchvision's v1.5 variant (stride in the
3x3 conv of each bottleneck). Weights: SwAV (Caron et al., "Unsupervised Learning of Visual Features by Contrasting
Cluster Assignments", 2020), proposed for GAN evaluation by Morozov et al., "On Self-Supervised Image Representations
for GAN Evaluation" (2021). The module's state dict is torchvision's (conv1, bn1, layer1-4 of Bottlenecks with
downsample.0/1, fc); the fc is optional — SwAV files have none (their "module." prefix is stripped and their
projection head / prototypes are skipped). Features: `pool`, the 2048-d global average pool; `logits` when the file
has an fc.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...registries import BACKBONES
from ..weights import strip_prefix
from .base import Backbone, seeded_init


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride) -> 1x1 expand (x4), plus identity or projection shortcut (Eq. 2 of He et al.)."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


def _stage(in_ch: int, width: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [Bottleneck(in_ch, width, stride)]
    layers += [Bottleneck(width * Bottleneck.expansion, width) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet50(nn.Module):
    """torchvision-layout ResNet-50 trunk (+ optional fc); `forward` returns the pooled (B, 2048) features."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = _stage(64, 64, 3, stride=1)
        self.layer2 = _stage(256, 128, 4, stride=2)
        self.layer3 = _stage(512, 256, 6, stride=2)
        self.layer4 = _stage(1024, 512, 3, stride=2)
        self.fc: nn.Linear | None = nn.Linear(2048, num_classes)

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1)  # (B, 64, 56, 56)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 2048, 7, 7)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (B, 2048)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool_features(x)


@BACKBONES.register("resnet50")
class ResNet50Backbone(Backbone, ResNet50):
    """ResNet-50 (torchvision layout, SwAV weights by default): 2048-d average-pool features."""

    name = "resnet50"
    feature_dim = 2048
    pyramid_layers = ("layer1", "layer2", "layer3", "layer4")  # /4, /8, /16, /32 (Projected GAN's D)

    def __init__(self, *, weights: str | None = None, device: str = "cpu", resize: str = "torch-bilinear-aa"):
        """
        Args:
            weights: a torchvision-layout state dict (optionally with a "module." prefix and an fc); None fetches
                the SwAV 800-epoch file (no published sha256: its own sha256 keys caches); "random": seeded init.
            device: where the network runs.
            resize: resize protocol to 224x224: "torch-bilinear-aa" (bilinear with antialias, default),
                "torch-bilinear" (legacy, no antialias) or "clean".
        """
        with seeded_init(0):
            super().__init__()
        self._init_protocol(device=device, resize_mode=resize, input_size=224, normalization="imagenet")
        self._load_standard("swav-resnet50", weights, self, layout="torchvision ResNet-50",
                            ignore_prefixes=("projection_head.", "prototypes."))
        self.outputs = ("pool", "logits") if self.fc is not None else ("pool",)
        self._finish()

    def _init_random(self) -> None:
        """weights="random": He init, with each residual branch's last BN scaled down so features stay O(1)."""
        super()._init_random()
        for m in self.modules():
            if isinstance(m, Bottleneck):
                nn.init.constant_(m.bn3.weight, 0.2)

    def _adapt_state(self, state: dict[str, torch.Tensor], path: object) -> dict[str, torch.Tensor]:
        state = strip_prefix(state, "module.")  # SwAV saved its DistributedDataParallel wrapper's names
        if "fc.weight" not in state:
            self.fc = None  # no classifier in the file: features only
        elif state["fc.weight"].dim() == 2 and state["fc.weight"].shape[1] == 2048:
            self.fc = nn.Linear(2048, state["fc.weight"].shape[0])  # any number of classes
        return state

    def extract(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        pool = self.pool_features(x)
        out = {"pool": pool}
        if self.fc is not None:
            out["logits"] = self.fc(pool)
        return out
