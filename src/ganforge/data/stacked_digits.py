"""Stacked digits: three random digits as the R, G, B channels -> 1,000 modes.

The Stacked MNIST mode-coverage benchmark of "Unrolled Generative Adversarial Networks" (Metz et al., 2017), as
run by "PacGAN" (Lin et al., 2018) and "VEEGAN" (Srivastava et al., 2017), with scikit-learn's 8x8 digits in place
of MNIST (not available offline). Label = 100 a + 10 b + c for digits (a, b, c) in (R, G, B). Evaluation: classify
each channel of `mode_samples` (26,000) generated samples with the digits classifier; report the number of distinct
3-digit classes hit and KL(histogram || uniform over 1,000), both computed from that histogram (`mode_counts`:
samples per predicted class), which training also logs per evaluation (RUN/modes.jsonl).
"""
from __future__ import annotations

import torch

from ..errors import GanforgeError
from ..registries import DATASETS
from .base import DataInfo, Dataset, ImageModality
from .common import check_split, fingerprint, split_seed
from .digits import digit_bank
from .digits_classifier import DigitsClassifier, load_digits_classifier, to_classifier_input
from .mixture2d import kl_to_uniform

NUM_MODES = 1000
_PLACE = torch.tensor([100, 10, 1])  # label = 100 a + 10 b + c


def stacked_predictions(fake: torch.Tensor, classifier: DigitsClassifier) -> tuple[torch.Tensor, torch.Tensor]:
    """(code (N,) int64 in [0, 1000), confident (N,) bool) of 3-channel images `fake` (N, 3, H, W), model space
    [-1, 1] (or uint8): the predicted 3-digit class 100 a + 10 b + c, and whether each of the three channels is
    classified with max-softmax >= 0.5."""
    if fake.ndim != 4 or fake.shape[1] != 3:
        raise ValueError(f"stacked-digits mode metrics expect (N, 3, H, W) images, got {tuple(fake.shape)}")
    n, _, h, w = fake.shape
    classifier.to(fake.device)  # classify where the fakes are (GPU when they come from one)
    x = to_classifier_input(fake.detach().reshape(n * 3, 1, h, w))  # one channel = one digit
    digit, conf = classifier.predict(x)
    code = (digit.view(n, 3).cpu() * _PLACE).sum(dim=1)
    return code, (conf.view(n, 3) >= 0.5).all(dim=1).cpu()


def stacked_metrics_from_counts(counts: torch.Tensor, hq_frac: float) -> dict[str, float]:
    """The Stacked-MNIST scalars from the predicted-class counts (1000,) of all samples: {"modes": classes hit,
    "kl": KL(q || uniform over 1000) of the histogram q = counts / N, "hq_frac": passed through (the classifier's
    confidence, which the counts do not hold)}."""
    return {"modes": int((counts > 0).sum()), "kl": kl_to_uniform(counts), "hq_frac": float(hq_frac)}


def stacked_mode_results(fake: torch.Tensor, classifier: DigitsClassifier
                         ) -> tuple[dict[str, float], torch.Tensor]:
    """(metrics, counts) of `fake` with one pass of the classifier: counts (1000,) = samples per predicted 3-digit
    class (every sample counts, so they sum to N); the metrics {"modes", "kl", "hq_frac"} are computed from them, with
    hq_frac the fraction whose three channels are each classified with max-softmax >= 0.5 (a confidence proxy for
    "looks like digits"; all samples count in modes and kl)."""
    code, confident = stacked_predictions(fake, classifier)
    counts = torch.bincount(code, minlength=NUM_MODES)
    return stacked_metrics_from_counts(counts, float(confident.float().mean())), counts


def stacked_mode_metrics(fake: torch.Tensor, classifier: DigitsClassifier) -> dict[str, float]:
    """Mode coverage of 3-channel images `fake` (N, 3, H, W): {"modes", "kl", "hq_frac"} (see
    `stacked_mode_results`)."""
    return stacked_mode_results(fake, classifier)[0]


@DATASETS.register("stacked-digits")
class StackedDigits(Dataset):
    """Three random 8x8 digits stacked as RGB (Stacked-MNIST protocol), 1000 classes; built on the fly."""

    def __init__(self, *, split: str = "train", cache_dir: str | None = None, n: int = 60000,
                 resolution: int = 16, seed: int = 0, mode_samples: int = 26000):
        check_split(split, "data (stacked-digits)")
        if n < 1:
            raise GanforgeError(f"data.n: expected a positive number of samples, got {n}")
        if mode_samples < 1:
            raise GanforgeError(f"data.mode_samples: expected a positive number, got {mode_samples}")
        self.bank, self.bank_labels = digit_bank(split, resolution)  # (M, H, W) uint8, (M,)
        g = torch.Generator().manual_seed(split_seed(seed, split))
        self.triples = torch.randint(len(self.bank), (n, 3), generator=g)  # bank indices of the R, G, B digits
        self.y = (self.bank_labels[self.triples] * _PLACE).sum(dim=1)
        self.mode_samples = mode_samples
        self.cache_dir = cache_dir
        self.info = DataInfo((3, resolution, resolution), NUM_MODES, ImageModality())
        self.class_names = [f"{i:03d}" for i in range(NUM_MODES)]
        self._fingerprint = fingerprint("stacked-digits", {"split": split, "n": n, "resolution": resolution,
                                                           "seed": seed}, self.bank, self.triples)
        self._classifier: DigitsClassifier | None = None

    def __len__(self) -> int:
        return len(self.triples)

    def get_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.bank[self.triples[idx]], self.y[idx]  # (B, 3, H, W): one digit per channel

    def fingerprint(self) -> str:
        return self._fingerprint

    def classifier(self) -> DigitsClassifier:
        """The digits classifier (trained once and cached on first use)."""
        if self._classifier is None:
            self._classifier = load_digits_classifier(self.cache_dir)
        return self._classifier

    def mode_counts(self, fake: torch.Tensor) -> torch.Tensor:
        """(1000,): samples of `fake` per predicted 3-digit class (they sum to len(fake))."""
        return torch.bincount(stacked_predictions(fake, self.classifier())[0], minlength=NUM_MODES)

    def mode_results(self, fake: torch.Tensor) -> tuple[dict[str, float], torch.Tensor]:
        """(mode_metrics, mode_counts) of `fake` with one pass of the classifier."""
        return stacked_mode_results(fake, self.classifier())

    def mode_metrics(self, fake: torch.Tensor) -> dict[str, float]:
        return self.mode_results(fake)[0]
