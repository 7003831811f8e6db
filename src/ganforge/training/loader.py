"""A stateless, rank-sharded batch stream.

Sample i of the run is permutation_{i // N}[i % N], where each epoch's permutation comes from (seed, epoch): the
batch for any step is a pure function of the step, so resuming needs no loader state. Rank r of W takes rows
[r*B/W, (r+1)*B/W) of each global batch: together the ranks see exactly the batch one process would.
"""
from __future__ import annotations

import torch

from ..data.base import Dataset
from ..errors import GanforgeError
from .rng import generator


class BatchStream:
    def __init__(self, dataset: Dataset, global_batch: int, seed: int, rank: int = 0, world: int = 1):
        if len(dataset) == 0:
            raise GanforgeError("data: the dataset is empty")
        if global_batch % world:
            raise GanforgeError(f"train.batch_size: {global_batch} is not divisible by the number of ranks ({world})")
        self.dataset, self.global_batch, self.seed = dataset, global_batch, seed
        self.rank, self.world = rank, world
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            self._perms[epoch] = torch.randperm(len(self.dataset), generator=generator(self.seed, "data", epoch))
        return self._perms[epoch]

    def global_indices(self, index: int) -> torch.Tensor:
        """Dataset indices of global batch number `index`."""
        n = len(self.dataset)
        start = index * self.global_batch
        pos = torch.arange(start, start + self.global_batch)
        epochs = pos // n
        out = torch.empty_like(pos)
        for e in epochs.unique().tolist():
            sel = epochs == e
            out[sel] = self._perm(e)[pos[sel] % n]
        return out

    def local_slice(self, t: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a per-global-batch tensor."""
        b = self.global_batch // self.world
        return t[self.rank * b: (self.rank + 1) * b]

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of global batch `index`: (x, y) as the dataset stores them."""
        return self.dataset.get_batch(self.local_slice(self.global_indices(index)))
