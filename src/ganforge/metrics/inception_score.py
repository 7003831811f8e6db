"""Inception Score.

"Improved Techniques for Training GANs" (Salimans et al., 2016): IS = exp(E_x KL(p(y|x) || p(y))), where p(y|x) is
the classifier's softmax for a generated image and p(y) its average over the set. Following the paper's protocol the
images are split into `splits` parts (after a seeded shuffle); the score is computed per part and reported as mean and
(population) standard deviation. All arithmetic is float64.
"""
from __future__ import annotations

import torch

from ..errors import GanforgeError
from ..registries import METRICS
from .base import Features, Metric, check_positive, require


def split_score(log_p: torch.Tensor) -> float:
    """exp(mean_x KL(p(y|x) || p(y))) for one part, from (N, K) log-probabilities."""
    p = log_p.exp()
    log_py = p.mean(dim=0).log()  # log p(y), (K,)
    # KL(p(y|x) || p(y)) = sum_y p(y|x) (log p(y|x) - log p(y)); terms with p(y|x) = 0 contribute 0
    kl = torch.where(p > 0, p * (log_p - log_py), torch.zeros_like(p)).sum(dim=1)
    return float(kl.mean().exp())  # Salimans et al. (2016), Sec. 4: IS = exp(E_x KL(p(y|x) || p(y)))


def inception_score(logits: torch.Tensor, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """Mean and population standard deviation of the per-split Inception Score.

    Args:
        logits: (N, K) classifier logits (softmax is applied here, in float64).
        splits: number of parts, each of N // splits or N // splits + 1 images.
        seed: seeds the shuffle before splitting.
    """
    if logits.ndim != 2:
        raise GanforgeError(f"inception score: expected logits of shape (N, K), got {tuple(logits.shape)}")
    n = logits.shape[0]
    if not 1 <= splits <= n:
        raise GanforgeError(f"is.splits: expected 1 <= splits <= number of images ({n}), got {splits}")
    log_p = torch.log_softmax(logits.double(), dim=1)
    if not torch.isfinite(log_p).all():
        raise GanforgeError("inception score: logits contain NaN or Inf (check the extracted features)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(log_p.device)
    log_p = log_p[perm]
    scores = torch.tensor(
        [split_score(log_p[i * n // splits:(i + 1) * n // splits]) for i in range(splits)], dtype=torch.float64
    )
    return float(scores.mean()), float(scores.std(unbiased=False))


@METRICS.register("is")
class InceptionScore(Metric):
    """Inception Score: exp of the mean KL between per-image and marginal class posteriors (Salimans et al., 2016)."""

    name = "is"
    needs = frozenset({"logits"})
    needs_reference = False
    keys = ("is", "is_std")
    # `splits` images (one per split) to be defined; splits x K (the classifier's classes: 10 x 1008 for Inception)
    # to mean much: a split's score exp(I(x; y)) is at most its number of images, so smaller splits cap IS below K.
    min_defined = 10
    min_defined_reason = "one image per split"
    min_samples = 10080
    min_samples_reason = "a split's IS is at most its image count"

    def __init__(self, splits: int = 10, seed: int = 0) -> None:
        self.splits = check_positive(splits, "is.splits")
        self.seed = seed

    def defined_floor(self, features: Features) -> tuple[int, str]:
        return self.splits, f"one image per split, is.splits={self.splits}"

    def sample_floor(self, features: Features) -> tuple[int, str]:
        k = features.logits.shape[1] if features.logits is not None and features.logits.ndim == 2 else 1008
        return self.splits * k, (f"a split's IS is at most its image count, so each of the {self.splits} splits "
                                 f"needs >= {k} images (one per class)")

    def compute(self, fake: Features, real: Features | None = None) -> dict[str, float]:
        logits = require(fake, "logits", "is", "generated")
        assert isinstance(logits, torch.Tensor)
        mean, std = inception_score(logits, self.splits, self.seed)
        return {"is": mean, "is_std": std}

    def __repr__(self) -> str:
        return f"InceptionScore(splits={self.splits}, seed={self.seed})"
