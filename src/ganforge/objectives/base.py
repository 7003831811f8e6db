"""Objective terms: the adversarial loss, every regularizer and every conditioning loss share one interface.

A term contributes named, already-weighted scalars for the D phase (`d_terms`) and/or the G phase (`g_terms`).
`every` > 1 makes it lazy: the trainer runs it in its own phase every `every` steps of the network it trains (D steps
for D-side terms), multiplies it by `every`, and rescales Adam as StyleGAN2 does. A term that returns no values
(e.g. before its state exists) contributes nothing; a phase whose terms all return nothing is skipped.

What a term declares (class attributes; the framework reads them, never the term's name):
- `uses_labels`: it needs class labels (the run is then class-conditional);
- `requires`: names of `DOutput` extras it reads (the chosen D head must provide them);
- `needs_features`: it reads D's intermediate feature maps (`ctx.d_real.features`);
- `decomposable`: False when the loss over a batch is not the mean of the losses over its parts (contrastive
  losses); `train.accumulate > 1` is then refused;
- `trains_with`: "G" or "D" — the optimizer that steps the term's own parameters when the term is an `nn.Module`
  (InfoGAN's Q head trains with G, ContraGAN's proxies with D); they are frozen in the other network's phases and
  checkpointed with the term;
- `may_be_negative`: its D-side values can be negative by design (an entropy or cosine term); losses and
  penalties are >= 0 otherwise;
- `update_every`: a term with an `update(stats)` method receives the statistics of its phase (see
  `training/stats.py`) every `update_every` runs of that phase, reduced over ranks; `state_dict` /
  `load_state_dict` make any state part of the checkpoint, `log_values()` adds numbers to the training log.

Build context: a term's constructor may take any of `ganforge.registries.BUILD_CONTEXT` (num_classes, img_shape,
feature_dim, tap_shapes, total_steps, batch_size, d_steps, dataset_size, text_dim, text_encoder) as keyword parameters;
the framework fills them in.

`Context` is one micro-batch of one phase: it computes `fake`, `D(real)` and `D(fake)` lazily and caches them, so
two terms that need D(real) run D once.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..augment.base import Augment
from ..conditioning.base import DOutput
from ..nn.compiled import eager
from ..training.rng import SampleRNG


class ObjectiveTerm:
    """Base class for losses and regularizers.

    Optional hooks:
    - `prepare(ctx)` is called with each micro-batch's Context of every phase the term belongs to, before any term
      computes: it may replace `ctx.z` (LOGAN's latent step), `ctx.real` / `ctx.y_real` or `ctx.D` (a wrapper such as
      AdaptiveMix's), which then holds for every term of that micro-batch (call `ctx.reset()` after changing inputs
      a cached value depends on);
    - `after_step(net)` is called with the stepped network (D or G) right after each optimizer step of every phase
      the term belongs to (weight clipping uses it).
    """

    every: int = 1
    uses_labels: bool = False
    requires: frozenset[str] = frozenset()
    needs_features: bool = False
    decomposable: bool = True
    trains_with: str = "D"
    update_every: int = 1
    may_be_negative: bool = False

    def d_terms(self, ctx: "Context") -> dict[str, torch.Tensor]:
        return {}

    def g_terms(self, ctx: "Context") -> dict[str, torch.Tensor]:
        return {}


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclass
class StepInfo:
    """Where training stands when a phase runs."""

    step: int = 0  # G steps completed before this one
    d_step: int = 0  # index of the current D step (D steps completed before it)
    total_steps: int = 0  # train.steps
    batch_size: int = 0  # global batch
    nimg: int = 0  # real images shown to D before this phase: d_step * batch_size in a D phase, all of this step's
    # D steps in a G phase

    @property
    def progress(self) -> float:
        """Fraction of training done, in [0, 1)."""
        return self.step / self.total_steps if self.total_steps else 0.0


@dataclass
class Context:
    """One phase's inputs for one micro-batch. `phase` is "D" or "G"; in the D phase fakes are made without grad."""

    G: nn.Module
    D: nn.Module
    real: torch.Tensor  # (B, ...) model-space reals
    y_real: torch.Tensor | None
    z: torch.Tensor  # (B, z_dim)
    y_fake: torch.Tensor | None
    phase: str = "D"
    augment: Callable[..., torch.Tensor] = _identity
    info: StepInfo = field(default_factory=StepInfo)
    rows: slice | None = None  # this micro-batch's rows of the global batch (None: all of it)
    rng_key: tuple | None = None  # seeds this phase's per-sample randomness (None: torch's global RNG)
    distributed: bool = False  # a torch.distributed process group is running
    stats: Any = None  # StatsRecorder of this phase run (None: recording is a no-op)
    want_features: bool = False  # cached D calls also return D's intermediate feature maps
    _cache: dict = field(default_factory=dict, repr=False)
    _rng_calls: int = field(default=0, repr=False)

    # ------------------------------------------------------------------------------------------- training progress
    @property
    def step(self) -> int:
        return self.info.step

    @property
    def progress(self) -> float:
        return self.info.progress

    @property
    def nimg(self) -> int:
        return self.info.nimg

    # ---------------------------------------------------------------------------------------------- randomness
    def sample_rng(self) -> SampleRNG:
        """A fresh per-sample random stream (each call its own), identical under DDP and gradient accumulation."""
        if self.rng_key is None:
            return SampleRNG()
        self._rng_calls += 1
        n = self.real.shape[0]
        rows = self.rows if self.rows is not None else slice(0, n)
        total = self.info.batch_size or n
        return SampleRNG((*self.rng_key, self._rng_calls), rows, total)

    # --------------------------------------------------------------------------------------------------- D calls
    def augmented(self, x: torch.Tensor) -> torch.Tensor:
        """The augmentation applied to a batch D is about to see."""
        if isinstance(self.augment, Augment):
            return self.augment(x, rng=self.sample_rng())
        return self.augment(x)

    def D_raw(self, x: torch.Tensor, y: torch.Tensor | None, features: bool = False) -> DOutput:
        """D on `x` as it is, without augmentation (not cached)."""
        return self.D(x, y, features=True) if features else self.D(x, y)

    def D_of(self, x: torch.Tensor, y: torch.Tensor | None, features: bool = False) -> DOutput:
        """D on augmented `x` (not cached: for terms that need gradients w.r.t. their own inputs)."""
        return self.D_raw(self.augmented(x), y, features)

    def eager(self) -> contextlib.AbstractContextManager:
        """G and D uncompiled inside the block (train.compile): for graphs that are differentiated twice."""
        return eager(self.G, self.D)

    def _cached(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    @property
    def fake(self) -> torch.Tensor:
        """G(z, y_fake); detached in the D phase."""
        def make():
            if self.phase == "D":
                with torch.no_grad():
                    return self.G(self.z, self.y_fake).detach()
            return self.G(self.z, self.y_fake)
        return self._cached("fake", make)

    @property
    def d_real(self) -> DOutput:
        """D(augment(real)), cached."""
        return self._cached("d_real", lambda: self.D_of(self.real, self.y_real, self.want_features))

    @property
    def d_fake(self) -> DOutput:
        """D(augment(fake)), cached."""
        return self._cached("d_fake", lambda: self.D_of(self.fake, self.y_fake, self.want_features))

    def reset(self, *keys: str) -> None:
        """Forget cached values ("fake", "d_real", "d_fake"; all when none are named) after a `prepare` hook changed
        what they depend on (z, the reals or D)."""
        if not keys:
            self._cache.clear()
        for key in keys:
            self._cache.pop(key, None)

    def cached(self, key: str) -> Any:
        """A cached value ("fake", "d_real", "d_fake") if some term already computed it, else None."""
        return self._cache.get(key)

    # --------------------------------------------------------------------------------------- batch-level helpers
    def all_gather(self, t: torch.Tensor) -> torch.Tensor:
        """`t` (B, ...) from every rank, concatenated in rank order (= global batch order); gradients flow to this
        rank's rows. Single process: `t` itself. Only meaningful for non-decomposable terms (no accumulation)."""
        if not self.distributed:
            return t
        from torch.distributed.nn.functional import all_gather

        return torch.cat(all_gather(t.contiguous()), dim=0)

    def record(self, name: str, values: torch.Tensor) -> None:
        """Add per-sample values to this phase's statistics (handed to stateful components after the phase)."""
        if self.stats is not None:
            self.stats.add(name, values)
