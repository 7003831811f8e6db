"""Streaming mean and covariance of feature batches, the statistics behind FID.

FID ("GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium", Heusel et al., 2017) compares
the Gaussians N(mu, Sigma) fitted to two feature sets. `RunningStats` accumulates them batch by batch in float64 with
Chan et al.'s pairwise update ("Updating Formulae and a Pairwise Algorithm for Computing Sample Variances", 1979):
each batch is centred on its own mean before its scatter matrix is formed, so large feature offsets do not cancel
catastrophically as they would in a raw sum of outer products. Two accumulators merge exactly, which is how
data-parallel ranks combine their shards.
"""
from __future__ import annotations

import torch

from ..errors import GanforgeError


class RunningStats:
    """Float64 running mean and scatter matrix of (B, F) feature batches; `cov` is the unbiased (N - 1) covariance."""

    def __init__(self, num_features: int | None = None, device: torch.device | str | None = None) -> None:
        self.num_features = num_features
        self.device = torch.device(device) if device is not None else None
        self._n = 0
        self._mean: torch.Tensor | None = None  # (F,) float64
        self._m2: torch.Tensor | None = None  # (F, F) float64, sum of centred outer products

    # ----------------------------------------------------------------------------------------------------------------
    # Accumulation

    def update(self, x: torch.Tensor) -> "RunningStats":
        """Add a (B, F) batch of features; returns self."""
        if x.ndim != 2:
            raise GanforgeError(f"RunningStats.update: expected features of shape (B, F), got {tuple(x.shape)}")
        if self.num_features is None:
            self.num_features = int(x.shape[1])
        if x.shape[1] != self.num_features:
            raise GanforgeError(f"RunningStats.update: expected {self.num_features} features, got {x.shape[1]}")
        if x.shape[0] == 0:
            return self
        if self.device is None:
            self.device = x.device
        x = x.detach().to(device=self.device, dtype=torch.float64)
        mean_b = x.mean(dim=0)  # (F,)
        xc = x - mean_b  # (B, F)
        self._combine(int(x.shape[0]), mean_b, xc.T @ xc)
        return self

    def merge(self, other: "RunningStats") -> "RunningStats":
        """Fold another accumulator into this one (exact: equals one accumulation over both sets); returns self."""
        if other.n == 0:
            return self
        if self.num_features is None:
            self.num_features = other.num_features
        if other.num_features != self.num_features:
            raise GanforgeError(
                f"RunningStats.merge: feature dims differ: {self.num_features} vs {other.num_features}"
            )
        if self.device is None:
            self.device = other.device
        assert other._mean is not None and other._m2 is not None
        self._combine(other.n, other._mean.to(self.device), other._m2.to(self.device))
        return self

    def _combine(self, n_b: int, mean_b: torch.Tensor, m2_b: torch.Tensor) -> None:
        if self._n == 0 or self._mean is None or self._m2 is None:
            self._n, self._mean, self._m2 = n_b, mean_b.clone(), m2_b.clone()
            return
        n_a = self._n
        n = n_a + n_b
        delta = mean_b - self._mean  # (F,)
        # Chan et al. (1979): mean = mean_a + delta n_b / n;  M2 = M2_a + M2_b + delta delta^T n_a n_b / n
        self._mean = self._mean + delta * (n_b / n)
        self._m2 = self._m2 + m2_b + torch.outer(delta, delta) * (n_a * n_b / n)
        self._n = n

    # ----------------------------------------------------------------------------------------------------------------
    # Results

    @property
    def n(self) -> int:
        """Number of samples accumulated."""
        return self._n

    @property
    def mean(self) -> torch.Tensor:
        """(F,) float64 sample mean."""
        if self._mean is None:
            raise GanforgeError("RunningStats.mean: no samples were accumulated")
        return self._mean

    @property
    def cov(self) -> torch.Tensor:
        """(F, F) float64 unbiased sample covariance (divides by N - 1), exactly symmetric."""
        if self._m2 is None or self._n < 2:
            raise GanforgeError(f"RunningStats.cov: need at least 2 samples, got {self._n}")
        m2 = 0.5 * (self._m2 + self._m2.T)  # BLAS may leave last-bit asymmetry in x^T x
        return m2 / (self._n - 1)

    # ----------------------------------------------------------------------------------------------------------------
    # Serialization (plain tensors, for the reference-statistics cache and for DDP gathers)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """{"n": int64 scalar, "mean": (F,) float64, "m2": (F, F) float64} on the CPU."""
        if self._mean is None or self._m2 is None:
            raise GanforgeError("RunningStats.state_dict: no samples were accumulated")
        return {
            "n": torch.tensor(self._n, dtype=torch.int64),
            "mean": self._mean.detach().cpu(),
            "m2": self._m2.detach().cpu(),
        }

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], device: torch.device | str | None = None) -> "RunningStats":
        """Rebuild an accumulator from `state_dict()` output."""
        missing = {"n", "mean", "m2"} - set(state)
        if missing:
            raise GanforgeError(f"RunningStats.from_state: missing key(s) {', '.join(sorted(missing))}")
        mean = state["mean"].to(dtype=torch.float64)
        m2 = state["m2"].to(dtype=torch.float64)
        f = int(mean.shape[0])
        if mean.ndim != 1 or tuple(m2.shape) != (f, f):
            raise GanforgeError(
                f"RunningStats.from_state: expected mean (F,) and m2 (F, F), got {tuple(mean.shape)} and "
                f"{tuple(m2.shape)}"
            )
        out = cls(num_features=f, device=device if device is not None else mean.device)
        assert out.device is not None
        out._n = int(state["n"])
        out._mean = mean.to(out.device)
        out._m2 = m2.to(out.device)
        return out

    def __repr__(self) -> str:
        return f"RunningStats(n={self._n}, num_features={self.num_features})"


def update_per_class(stats: dict[int, RunningStats], x: torch.Tensor, labels: torch.Tensor) -> None:
    """Route each row of a (B, F) batch to the accumulator of its label (created on first sight)."""
    if labels.shape[0] != x.shape[0]:
        raise GanforgeError(f"update_per_class: {x.shape[0]} feature rows but {labels.shape[0]} labels")
    labels = labels.to(x.device)
    for c in torch.unique(labels).tolist():
        stats.setdefault(int(c), RunningStats(num_features=int(x.shape[1]))).update(x[labels == c])
