"""How one training phase runs: its batch, its Context per accumulation round, backward, the optimizer step, and the
statistics handed to stateful components afterwards.

Batches: the reals of D step `i` are global batch `i` of the stateless stream; latents and fake labels are drawn for
the global batch from their own seeded stream (`latents` for D steps, `latents-G` for G steps) and each rank takes
its rows; fake labels are uniform over the classes or follow the training set's class frequencies
(`conditioning.fake_labels`). Every micro-batch knows its rows of the global batch, so per-sample randomness
(`SampleRNG`) is the same whichever process and accumulation round handle a sample.
"""
from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any

import torch

from ..errors import DivergenceError, GanforgeError
from ..nn.spectral_norm import has_sn, power_iterate
from ..objectives.base import Context, StepInfo
from . import distributed as dist_utils
from .phases import Phase
from .rng import generator
from .stats import StatsRecorder

if TYPE_CHECKING:
    from .trainer import Trainer


def dataset_labels(dataset: Any) -> torch.Tensor:
    """Every training label (N,) int64: the dataset's label tensor `y` where it keeps one (all built-in sets do),
    else read batch by batch."""
    y = getattr(dataset, "y", None)
    if isinstance(y, torch.Tensor) and y.shape == (len(dataset),):
        return y.long()
    chunk = 4096
    return torch.cat([dataset.get_batch(torch.arange(i, min(i + chunk, len(dataset))))[1].long()
                      for i in range(0, len(dataset), chunk)] or [torch.zeros(0, dtype=torch.long)])


def class_frequencies(dataset: Any, num_classes: int) -> torch.Tensor:
    """(num_classes,) float64 share of each class among the training labels."""
    counts = torch.bincount(dataset_labels(dataset), minlength=num_classes)[:num_classes].double()
    return counts / counts.sum()


def _uniform_labels(runner: "PhaseRunner", n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, runner.t.parts.num_classes, (n,), generator=gen)


def _prior_labels(runner: "PhaseRunner", n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.multinomial(runner.class_prior(), n, replacement=True, generator=gen)


# conditioning.fake_labels: how G's class labels are drawn, from the latents' own seeded generator
FAKE_LABELS = {"uniform": _uniform_labels, "prior": _prior_labels}


class PhaseRunner:
    def __init__(self, trainer: "Trainer"):
        self.t = trainer
        self._prior: torch.Tensor | None = None
        self._draw_labels = FAKE_LABELS[trainer.cfg.fake_labels]

    def class_prior(self) -> torch.Tensor:
        """The training set's class frequencies, counted once (for conditioning.fake_labels: prior)."""
        if self._prior is None:
            self._prior = class_frequencies(self.t.dataset, self.t.parts.num_classes)
        return self._prior

    # ------------------------------------------------------------------------------------------------------ batches
    def latents(self, stream: str, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This rank's latents and fake labels for draw `index` of `stream` (drawn for the global batch)."""
        t = self.t
        B = t.cfg.train.batch_size
        gen = generator(t.cfg.seed, stream, index)
        z = t.stream.local_slice(t.G.sample_z(B, generator=gen)).to(t.device)
        y_fake = None
        if t.parts.text is not None:  # text: the captions of uniformly drawn training images (text/condition.py)
            y_fake = t.stream.local_slice(torch.randint(0, len(t.dataset), (B,), generator=gen)).to(t.device)
        elif t.parts.num_classes > 0:
            y_fake = t.stream.local_slice(self._draw_labels(self, B, gen)).to(t.device)
        return z, y_fake

    def micro_batches(self, index: int, latents: tuple[torch.Tensor, torch.Tensor | None]) -> list[dict[str, Any]]:
        """This rank's share of global batch `index` with the given latents, split into accumulation rounds."""
        t = self.t
        x, y = t.stream.batch(index)
        real = t.modality.to_model(x.to(t.device))
        if t.channels_last and real.dim() == 4:
            real = real.contiguous(memory_format=torch.channels_last)
        y = y.to(t.device) if t.parts.num_classes > 0 else None
        if t.parts.text is not None:  # text: the reals' dataset rows, turned into caption embeddings per phase
            y = t.stream.local_slice(t.stream.global_indices(index)).to(t.device)
        offset = t.dist.rank * len(real)  # first global row of this rank
        k = t.cfg.train.accumulate
        chunks = []
        for i in range(k):
            a, b = i * len(real) // k, (i + 1) * len(real) // k
            chunks.append({"real": real[a:b], "y_real": None if y is None else y[a:b],
                           "rows": slice(offset + a, offset + b), "ab": (a, b)})
        return self.with_latents(chunks, latents)

    def with_latents(self, chunks: list[dict[str, Any]], latents: tuple[torch.Tensor, torch.Tensor | None]):
        """The same micro-batches of reals with other latents and fake labels."""
        z, y_fake = latents
        out = []
        for c in chunks:
            a, b = c["ab"]
            out.append({**c, "z": z[a:b], "y_fake": None if y_fake is None else y_fake[a:b]})
        return out

    def _autocast(self):
        t = self.t
        if t.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=t.device.type, dtype=t.amp_dtype)

    # -------------------------------------------------------------------------------------------------- one phase
    def run(self, phase: Phase, micro: list[dict[str, Any]], count: int, info: StepInfo) -> dict[str, float]:
        """Run `phase` (update number `count` of its network) over the micro-batches; return its logged values."""
        t = self.t
        for net, mods in t.nets.items():
            for m in mods:
                m.requires_grad_(net == phase.net)
        for m in t.frozen:  # blocks a term freezes (FreezeD) get no gradient in any phase
            m.requires_grad_(False)
        for m in t.nets[phase.net]:
            _power_step(m, t.frozen)  # one spectral-norm power step per update of the network
        opt, scaler = t.opt[phase.net], t.scaler[phase.net]
        opt.zero_grad(set_to_none=True)
        listening = any(c[2] == phase.name for c in t.consumers)
        recorder = StatsRecorder() if listening else None  # statistics only for phases someone listens to
        logged: dict[str, torch.Tensor] = {}
        measured: list[torch.Tensor] = []
        measure = t.guard.due(phase.net, info.step)
        contributed = 0
        for mb in micro:
            ctx = Context(G=t.G, D=t.D, real=mb["real"], y_real=mb["y_real"], z=mb["z"], y_fake=mb["y_fake"],
                          phase=phase.net, augment=t.augment, info=info, rows=mb["rows"],
                          rng_key=(t.cfg.seed, "phase", phase.name, count), distributed=t.dist.enabled,
                          stats=recorder, want_features=phase.wants_features)
            with self._autocast():
                for component in t.preparers:  # e.g. the text condition: image indices -> caption embeddings
                    component.prepare(ctx)
                phase.prepare(ctx, t.augment)
                terms = phase.collect(ctx)
            if recorder is not None:
                _record_d_outputs(ctx, recorder)
            m = t.guard.measure(ctx) if measure else None
            if m is not None:
                measured.append(m)
            if not terms:
                continue
            contributed += 1
            total = sum(v.float() for v in terms.values())
            scaler.scale(total * (phase.every / len(micro))).backward()
            for name, v in terms.items():
                logged[name] = logged.get(name, 0.0) + v.detach().float() / len(micro)
        values = {k: float(v) for k, v in logged.items()}
        finite = all(math.isfinite(v) for v in values.values())
        why = t.guard.verdict(phase.net, values, t.guard.combine(measured)) if finite else None
        healthy, contributed_all = self._agree(finite and why is None, contributed > 0)
        if not healthy:
            last = t.resumed_from if t.last_ckpt is None else t.last_ckpt
            if not finite:
                what = f"non-finite loss in phase {phase.name} at step {t.step} ({_fmt(values)})"
            elif why is not None:
                what = f"training diverged in phase {phase.name} at step {t.step}: {why}"
            else:
                what = f"training diverged on another rank in phase {phase.name} at step {t.step}"
            raise DivergenceError(
                f"{what}; last good checkpoint: {last or 'none yet'} — lower optim.g_lr/optim.d_lr, add a "
                f"regularizer or set train.amp=none")
        if contributed_all:  # a phase whose terms all returned nothing is skipped: no gradients, no step
            dist_utils.all_reduce_grads([p for m in t.nets[phase.net] for p in m.parameters()], t.dist)
            scaler.step(opt)
            scaler.update()
            net = t.D if phase.net == "D" else t.G
            for term in phase.terms:  # e.g. weight clipping: acts on the network right after its step
                hook = getattr(term, "after_step", None)
                if hook is not None:
                    hook(net)
        if recorder is not None:
            self._feed(phase, recorder, info)
        return values

    def _agree(self, healthy: bool, contributed: bool) -> tuple[bool, bool]:
        """Whether every rank's losses are finite and within bounds, and whether every rank (or none) had terms."""
        t = self.t
        if not t.dist.enabled:
            return healthy, contributed
        flags = torch.tensor([0.0 if healthy else 1.0, 1.0 if contributed else 0.0], device=t.device)
        torch.distributed.all_reduce(flags)
        bad, some = flags.tolist()
        if 0 < some < t.dist.world:
            raise GanforgeError(f"a phase's terms returned values on {int(some)} of {t.dist.world} ranks only; "
                                f"terms must decide whether to contribute the same way on every rank")
        return bad == 0, some > 0

    def _feed(self, phase: Phase, recorder: StatsRecorder, info: StepInfo) -> None:
        """Hand this phase's global statistics to the stateful components that listen to it."""
        t = self.t
        mine = [c for c in t.consumers if c[2] == phase.name]
        reduced = recorder.reduced(t.dist.enabled, t.device)
        B = t.cfg.train.batch_size
        done = info.nimg + B if phase.net == "D" else info.nimg  # real images shown to D, this step included
        for _, component, _, window in mine:
            if window.add(reduced):
                component.update(window.release(step=info.step, d_step=info.d_step, nimg=done, batch_size=B,
                                                progress=info.progress, window_nimg=window.runs * B))


def _power_step(net: torch.nn.Module, frozen: list[torch.nn.Module]) -> None:
    """One power-iteration step for every spectral norm in `net` outside the frozen modules, whose u, v must stay put
    (else their effective weight W / sigma(W) would move although W does not)."""
    if not frozen:
        power_iterate(net)
        return
    skip = {layer for m in frozen for layer in m.modules()}
    for layer in net.modules():
        if has_sn(layer) and layer not in skip:
            power_iterate(layer)


def _record_d_outputs(ctx: Context, recorder: StatsRecorder) -> None:
    """D's logits on reals / fakes from this micro-batch's cached D calls (what adaptive components need)."""
    if ctx.phase != "D":
        return
    d_real, d_fake = ctx.cached("d_real"), ctx.cached("d_fake")
    if d_real is not None:
        adv = d_real.adv.detach().float()
        recorder.add("d_real", adv)
        recorder.add("d_real_sign", adv.sign())
    if d_fake is not None:
        recorder.add("d_fake", d_fake.adv.detach().float())


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in values.items())
