"""Classifier Accuracy Score (CAS, "GAN-train") and GAN-test, as linear probes on backbone features.

CAS: "Classification Accuracy Score for Conditional Generative Models" (Ravuri & Vinyals, NeurIPS 2019): train a
classifier only on generated (image, label) pairs, report its accuracy on real held-out data, and compare it with the
same classifier trained on real data. GAN-train / GAN-test: "How good is my GAN?" (Shmelkov, Schmid & Alahari,
ECCV 2018): GAN-train is CAS; GAN-test trains on real data and tests on generated images (it rewards fidelity to the
class, not diversity: a G that replays one image per class scores perfectly).

This is a *feature-space* version: the paper trains a ResNet-50 on pixels for ~90 epochs; here the classifier is a
linear probe on the evaluation backbone's `pool` features, so that the score takes seconds, has no training schedule
to tune and is deterministic (a strictly convex problem solved from zero). It therefore measures how well generated
features of each class predict real ones *as that backbone sees them*: values are comparable only at the same
backbone (and weights, resize, `steps`, `wd`), and are not the paper's numbers.

Protocol (all seeded by `seed`, nothing else random):
1. The reference set (real, labelled; pass the held-out/test split, not the images G was trained on) is split into
   halves A and B, stratified by class: within each class a seeded permutation, the first floor(n_c / 2) to A.
2. A probe is fitted by multinomial logistic regression: features standardised with the training set's per-feature
   mean and standard deviation, logits = z W + b, minimising mean_i CE(logits_i, y_i) + (wd / 2) ||W||_F^2 (bias
   unpenalised) with full-batch L-BFGS (strong-Wolfe line search) from W = 0, b = 0 for at most `steps` iterations,
   in float64.
3. `cas` = accuracy on B of the probe fitted on the generated set (Ravuri & Vinyals' CAS, top-1); `cas_real` = accuracy
   on B of the probe fitted on A (the real-data baseline CAS is read against); `gan_test` = accuracy on the generated
   set of the probe fitted on A (Shmelkov et al.'s GAN-test).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import GanforgeError
from ..registries import METRICS
from ..registry import check_type
from .base import Features, Metric, check_positive, require
from .class_acc import PER_CLASS_FLOOR, num_classes_of, require_labels


def split_halves(labels: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (A, B) of a class-stratified seeded split: per class, the first floor(n_c / 2) of a permutation go to A.

    Both are returned sorted, so a set is split in its own order and A of a replayed reference equals A exactly.
    """
    gen = torch.Generator().manual_seed(seed)
    part_a, part_b = [], []
    for c in torch.unique(labels).tolist():  # sorted classes: the draws do not depend on the label order
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        half = len(members) // 2
        part_a.append(members[:half])
        part_b.append(members[half:])
    return torch.cat(part_a).sort().values, torch.cat(part_b).sort().values


@dataclass
class LinearProbe:
    """A fitted multinomial logistic regression on standardised features."""

    mean: torch.Tensor  # (F,) training-set feature mean
    scale: torch.Tensor  # (F,) training-set feature standard deviation (floored)
    weight: torch.Tensor  # (F, K)
    bias: torch.Tensor  # (K,)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, F) features -> (N, K) logits."""
        return ((x.double() - self.mean) / self.scale) @ self.weight + self.bias

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Top-1 accuracy (1/N) sum_i 1[argmax_k logits_ik = y_i]."""
        return float((self.logits(x).argmax(dim=1) == y.long()).double().mean())


def fit_probe(x: torch.Tensor, y: torch.Tensor, num_classes: int, steps: int = 100, wd: float = 1e-3) -> LinearProbe:
    """Multinomial logistic regression: min mean CE(z W + b, y) + (wd / 2) ||W||^2, full-batch L-BFGS from zero.

    Args:
        x: (N, F) features; y: (N,) labels in 0..num_classes-1.
        steps: L-BFGS iterations (at most; it stops earlier once the gradient vanishes).
        wd: L2 weight on W; > 0 makes the problem strictly convex, so the fit has one solution whatever the order.
    """
    x, y = x.double(), y.long()
    mean = x.mean(dim=0)
    scale = x.std(dim=0, unbiased=False).clamp_min(1e-8)  # a constant feature stays 0 after centring, any scale
    z = (x - mean) / scale  # (N, F)
    weight = torch.zeros(x.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=steps, history_size=20, tolerance_grad=1e-10,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z @ weight + bias, y) + 0.5 * wd * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():  # the training hook may call metrics under no_grad
        opt.step(closure)
    return LinearProbe(mean, scale, weight.detach(), bias.detach())


def classifier_accuracy_scores(fake_x: torch.Tensor, fake_y: torch.Tensor, real_x: torch.Tensor,
                               real_y: torch.Tensor, steps: int = 100, wd: float = 1e-3,
                               seed: int = 0) -> dict[str, float]:
    """{"cas", "cas_real", "gan_test"} from generated and reference features with labels (see the module docstring)."""
    if fake_x.ndim != 2 or real_x.ndim != 2 or fake_x.shape[1] != real_x.shape[1]:
        raise GanforgeError(f"cas: feature shapes differ: generated {tuple(fake_x.shape)}, reference "
                            f"{tuple(real_x.shape)} (same backbone for both?)")
    k = num_classes_of(fake_y, real_y)
    a, b = split_halves(real_y, seed)
    probe_fake = fit_probe(fake_x, fake_y, k, steps, wd)  # Ravuri & Vinyals: trained on generated data only
    probe_real = fit_probe(real_x[a], real_y[a], k, steps, wd)  # the real-data baseline
    return {
        "cas": probe_fake.accuracy(real_x[b], real_y[b]),
        "cas_real": probe_real.accuracy(real_x[b], real_y[b]),
        "gan_test": probe_real.accuracy(fake_x, fake_y),  # Shmelkov et al.: trained on real, tested on generated
    }


@METRICS.register("cas")
class ClassifierAccuracyScore(Metric):
    """Classifier Accuracy Score (Ravuri & Vinyals 2019) and GAN-test (Shmelkov et al. 2018) by linear probes."""

    name = "cas"
    needs = frozenset({"pool", "labels"})
    keys = ("cas", "cas_real", "gan_test")
    min_defined = 2
    min_defined_reason = "the reference is split into two halves"
    # `sample_floor` asks PER_CLASS_FLOOR images per class of the labels (10 x K); 2 classes at least
    min_samples = 2 * PER_CLASS_FLOOR
    min_samples_reason = "a linear probe fitted or tested on fewer than 10 images per class is noisy"

    def __init__(self, *, steps: int = 100, wd: float = 1e-3, seed: int = 0) -> None:
        """
        Args:
            steps: L-BFGS iterations of each probe fit.
            wd: L2 weight (wd / 2) ||W||^2 added to the mean cross-entropy; >= 0.
            seed: seeds the stratified A/B split of the reference.
        """
        self.steps = check_positive(steps, "cas.steps")
        wd = check_type(wd, float, "cas.wd")
        if not wd >= 0:
            raise GanforgeError(f"cas.wd: must be >= 0, got {wd}")
        self.wd = wd
        self.seed = check_positive(seed, "cas.seed", 0)

    def sample_floor(self, features: Features) -> tuple[int, str]:
        k = num_classes_of(features.labels) if features.labels is not None and features.labels.numel() else 2
        return PER_CLASS_FLOOR * k, (f"a linear probe fitted or tested on fewer than {PER_CLASS_FLOOR} images per "
                                     f"class ({k} classes) is noisy")

    def check_samples(self, fake: Features, real: Features | None) -> None:
        """Labels on both sets, generated classes the reference has, and a reference class in each half."""
        super().check_samples(fake, real)
        y_f = require_labels(fake, self.name, "generated")
        y_r = require_labels(real, self.name, "reference")
        k_real = num_classes_of(y_r)
        if num_classes_of(y_f) > k_real:
            raise GanforgeError(f"metric cas: the generated labels reach class {num_classes_of(y_f) - 1} but the "
                                f"reference has classes 0..{k_real - 1}; evaluate against the dataset G was trained "
                                f"for")
        counts = torch.bincount(y_r, minlength=k_real)
        single = torch.nonzero(counts == 1).flatten().tolist()
        if single:
            warnings.warn(f"metric cas: {len(single)} reference class(es) have a single image (e.g. class "
                          f"{single[0]}); it falls in half B only, so cas_real cannot predict it", stacklevel=2)

    def compute(self, fake: Features, real: Features | None) -> dict[str, float]:
        x_f = require(fake, "pool", self.name, "generated")
        x_r = require(real, "pool", self.name, "reference")
        assert isinstance(x_f, torch.Tensor) and isinstance(x_r, torch.Tensor)
        y_f = require_labels(fake, self.name, "generated")
        y_r = require_labels(real, self.name, "reference")
        return classifier_accuracy_scores(x_f, y_f, x_r, y_r, self.steps, self.wd, self.seed)

    def __repr__(self) -> str:
        return f"ClassifierAccuracyScore(steps={self.steps}, wd={self.wd}, seed={self.seed})"
