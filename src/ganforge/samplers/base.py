"""Sampling-time methods that use D: G's samples corrected by what D knows about the data.

A sampler is registered in `SAMPLERS` (`ganforge list samplers`) and built from its options (`build_sampler`: a name,
`"ddls:steps=100:step_size=0.01"`, a {name, **options} mapping or a Sampler). `sampler.generate_batches(G, D, n,
seed, batch_size, labels, truncation, device)` yields (model-space samples on CPU, labels) batches like
`sampling.generate_batches`; without a sampler ("none", the default everywhere) sampling is plain G sampling,
unchanged. Samplers start from the plain latents and labels (`sampling.latents`), so a method switched off (DDLS with
step_size 0, DRS accepting everything) returns G's own samples. Their own randomness comes from generators seeded by
(seed, method): the same seed and batch size give the same samples (unlike plain sampling they may depend on the
batch size: Langevin noise is drawn per batch, DRS's gamma is a percentile over each batch of proposals).

`SampledGenerator` binds G, D and a sampler into something every sampling path accepts as a generator
(`sampling.generate`, `metrics.sources.from_generator`, the mode metrics); `bind` builds it, finding D next to an
exported G (`training.export.load_discriminator`) when none is given. D runs in eval mode while a sampler draws.

D's logit d(x) = D(x, y).adv is read as the log density ratio log p_data(x) / p_g(x). That holds for the optimal D of
the logistic loss (vanilla / ns; an export's config.json names the run's `loss`). For a D trained with another loss
(hinge, wasserstein, lsgan, ...) or an over-/under-confident one, `calibrate=True` first fits a 1-D logistic
regression sigmoid(a d + b) separating real training images (label 1) from as many of G's fakes (label 0) and uses
a d + b instead (Azadi et al. 2019, Sec. 3.2, recalibrate D on held-out data: here the training split, the data an
export's config.json names). The fit is deterministic in the seed.
"""
from __future__ import annotations

import os
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from ..checks import check_int, describe
from ..data.base import Dataset
from ..errors import GanforgeError
from ..registries import SAMPLERS, load_all
from ..sampling import latents
from ..training.rng import generator

Batches = Iterator[tuple[torch.Tensor, "torch.Tensor | None"]]


class Sampler:
    """Base class: subclasses set `name`, implement `_draw` and list every option (with calibrate /
    calibration_samples) in their own signature, which the registry validates."""

    name = "sampler"
    uses_discriminator = True  # False: draws without D (hubness), so binding one loads none

    def __init__(self, calibrate: bool = False, calibration_samples: int = 5000):
        self.calibrate = calibrate
        self.calibration_samples = check_int(calibration_samples, f"{self.name}.calibration_samples", minimum=2)
        self.calibration = (1.0, 0.0)  # (a, b): the logit used is a * d + b
        self.stats: dict[str, float] = {}  # what the last draw measured (acceptance rate, energies, ...)

    def report(self) -> dict[str, float]:
        """Values evaluation adds to its results (e.g. DRS's acceptance_rate)."""
        return {}

    def summary(self) -> str:
        """One line on the last draw for people (`ganforge sample` prints it); empty when there is nothing to say."""
        return ""

    def logit(self, D: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """(B,) calibrated logit a * D(x, y).adv + b."""
        a, b = self.calibration
        d = D(x, y).adv.float()
        return d if (a, b) == (1.0, 0.0) else a * d + b

    def generate_batches(self, G: nn.Module, D: nn.Module, n: int, seed: int = 0, batch_size: int = 256,
                         labels: int | torch.Tensor | None = None, truncation: float | None = None,
                         device: torch.device | str | None = None, data: Dataset | None = None) -> Batches:
        """Yield (samples, labels) batches of n samples; arguments are checked (latents drawn) when called.

        `data`: the real images calibration fits on (default: the data an exported G's config.json names).
        """
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        if not isinstance(D, nn.Module):
            raise GanforgeError(f"{self.name}: expected a discriminator module D, got {describe(D)}")
        if device is None:
            param = next(iter(G.parameters()), None)
            device = param.device if param is not None else "cpu"
        z, y = latents(G, n, seed, labels, truncation)
        if self.calibrate:
            data = calibration_data(G, data, self.name)
        return self._guarded(G, D, z, y, batch_size, device, seed, truncation, data)

    def _guarded(self, G, D, z, y, batch_size, device, seed, truncation, data) -> Batches:
        was_training = D.training
        D.eval()  # logits of a sample must not depend on its batch (BN, dropout) nor move SN's power iteration
        try:
            self.stats = {}
            if self.calibrate:
                self.calibration = self.fit_calibration(G, D, data, seed, batch_size, device, truncation)
                self.stats.update(calibration_a=self.calibration[0], calibration_b=self.calibration[1])
            yield from self._draw(G, D, z, y, batch_size, device, seed, truncation)
        finally:
            D.train(was_training)

    def _draw(self, G: nn.Module, D: nn.Module, z: torch.Tensor, y: torch.Tensor | None, batch_size: int,
              device: torch.device | str, seed: int, truncation: float | None) -> Batches:
        raise NotImplementedError

    @torch.no_grad()
    def fit_calibration(self, G: nn.Module, D: nn.Module, data: Dataset, seed: int, batch_size: int,
                        device: torch.device | str, truncation: float | None) -> tuple[float, float]:
        """(a, b) of the logistic regression sigmoid(a d + b) of reals (1) against as many fakes (0)."""
        gen = generator(seed, "calibrate")
        m = min(self.calibration_samples, len(data))
        idx = torch.randperm(len(data), generator=gen)[:m]
        modality, conditional = data.info.modality, G.num_classes > 0
        real, fake = [], []
        for i in range(0, m, batch_size):
            x, yb = data.get_batch(idx[i: i + batch_size])
            yb = yb.long().to(device) if conditional else None  # fakes get the reals' labels: same class mix
            real.append(D(modality.to_model(x).to(device), yb).adv.float().cpu())
            zb = G.sample_z(len(x), generator=gen, truncation=truncation).to(device)
            fake.append(D(G(zb, yb), yb).adv.float().cpu())
        return fit_logistic(torch.cat(real), torch.cat(fake), f"{self.name}.calibrate")


class LatentSampler(Sampler):
    """A sampler that moves each batch's latents (DDLS, LOGAN), then renders x = G(z').

    Subclasses implement `refine(G, D, z, y, gen) -> (z', before (B,), after (B,))` and name the two per-sample
    quantities averaged into `stats` (`measured`, e.g. ("energy_start", "energy_end")); `gen` is the sampler's own
    generator, seeded by (seed, name).
    """

    measured: tuple[str, str] = ("start", "end")

    def refine(self, G: nn.Module, D: nn.Module, z: torch.Tensor, y: torch.Tensor | None, gen: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _draw(self, G, D, z, y, batch_size, device, seed, truncation) -> Batches:
        gen = generator(seed, self.name)
        before = after = 0.0
        for i in range(0, len(z), batch_size):
            zb = z[i: i + batch_size].to(device)
            yb = None if y is None else y[i: i + batch_size]
            yd = None if yb is None else yb.to(device)
            zt, v0, v1 = self.refine(G, D, zb, yd, gen)
            before, after = before + float(v0.sum()), after + float(v1.sum())
            done = i + len(zb)
            self.stats.update({self.measured[0]: before / done, self.measured[1]: after / done})
            with torch.no_grad():
                x = G(zt, yd)
            yield x.float().cpu(), yb


def fit_logistic(pos: torch.Tensor, neg: torch.Tensor, where: str = "calibrate") -> tuple[float, float]:
    """Maximum-likelihood (a, b) of P(real | d) = sigmoid(a d + b) for logits `pos` (reals) and `neg` (fakes).

    Newton's method in float64 from (1, 0), halving a step that raises the loss; a tiny ridge keeps separable data
    finite.
    """
    d = torch.cat([pos, neg]).double()
    t = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).double()
    X = torch.stack([d, torch.ones_like(d)], 1)  # (N, 2)
    ridge = 1e-6

    def loss(w: torch.Tensor) -> torch.Tensor:
        s = X @ w
        return (torch.nn.functional.softplus(s) - t * s).mean() + 0.5 * ridge * w.pow(2).sum()

    w = torch.tensor([1.0, 0.0], dtype=torch.float64)
    for _ in range(100):
        p = torch.sigmoid(X @ w)
        grad = X.T @ (p - t) / len(d) + ridge * w
        hess = (X.T * (p * (1 - p))) @ X / len(d) + ridge * torch.eye(2, dtype=torch.float64)
        step = torch.linalg.solve(hess, grad)
        current = loss(w)
        while loss(w - step) > current and step.abs().max() > 1e-12:
            step = step / 2
        w = w - step
        if step.abs().max() < 1e-10:
            break
    if not torch.isfinite(w).all():
        raise GanforgeError(f"{where}: the logistic fit of D's logits did not converge (got a={w[0]}, b={w[1]})")
    return float(w[0]), float(w[1])


def calibration_data(G: nn.Module, data: Dataset | None, name: str) -> Dataset:
    """The real images calibration fits on: `data`, else the training data an exported G's config.json names."""
    if data is None:
        spec = (getattr(G, "export_config", None) or {}).get("data")
        if spec is None:
            raise GanforgeError(f"{name}.calibrate: needs real training images; sample from a run or export (its "
                                f"config.json names its data) or pass data=<Dataset>")
        from ..config import data_component
        from ..training.build import build_dataset

        data = build_dataset(data_component(spec, "data"))
    if not isinstance(data, Dataset):
        raise GanforgeError(f"{name}.calibrate: data must be a ganforge Dataset, got {describe(data)}")
    if tuple(data.info.shape) != tuple(G.img_shape):
        raise GanforgeError(f"{name}.calibrate: the data holds samples of shape {tuple(data.info.shape)}, the "
                            f"generator makes {tuple(G.img_shape)}")
    return data


# ------------------------------------------------------------------------------------------------ choosing one
def parse_sampler(text: str) -> str | dict[str, Any]:
    """`"ddls:steps=100:step_size=0.01"` -> {"name": "ddls", "steps": 100, "step_size": 0.01}; `"drs"` -> "drs"."""
    from ..metrics.evaluate import parse_named_options

    name, opts = parse_named_options(text.strip(), "sampler", "ddls:steps=100")
    return {"name": name, **opts} if opts else name


def build_sampler(spec: Any) -> Sampler | None:
    """A Sampler from a name, `name:key=value` text, a {name, **options} mapping or a Sampler; None for "none"."""
    if spec is None or isinstance(spec, Sampler):
        return spec
    load_all()
    if isinstance(spec, str):
        if spec.strip() in ("", "none"):
            return None
        spec = parse_sampler(spec)
    if isinstance(spec, str):
        name, opts = spec, {}
    elif isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        name, opts = spec["name"], {k: v for k, v in spec.items() if k != "name"}
    else:
        raise GanforgeError(f"sampler: expected a sampler name ({', '.join(['none', *SAMPLERS.names()])}), "
                            f"'name:key=value' text or a {{name, **options}} mapping, got {describe(spec)}")
    if name == "none":
        return None
    SAMPLERS.get(name, "sampler")  # an unknown name: "sampler: unknown sampler 'x'; choose one of: ..."
    return SAMPLERS.build(name, opts, where=name)


class SampledGenerator:
    """G whose samples are drawn by a sampler with its D; every sampling path takes it as a generator.

    It has G's `z_dim`, `num_classes`, `img_shape`, `sample_z`, `export_config`, parameters and train/eval mode
    (D's mode is the sampler's business), but no forward: a sampler draws whole batches (DRS rejects some).
    """

    def __init__(self, G: nn.Module, D: nn.Module | None, sampler: Sampler, data: Dataset | None = None):
        self.G, self.D, self.sampler, self.data = G, D, sampler, data
        self.z_dim, self.num_classes, self.img_shape = G.z_dim, G.num_classes, tuple(G.img_shape)
        self.export_config = getattr(G, "export_config", None)

    @property
    def training(self) -> bool:
        return self.G.training

    def train(self, mode: bool = True) -> "SampledGenerator":
        self.G.train(mode)
        return self

    def eval(self) -> "SampledGenerator":
        return self.train(False)

    def parameters(self):
        return self.G.parameters()

    def sample_z(self, *args, **kwargs) -> torch.Tensor:
        return self.G.sample_z(*args, **kwargs)

    def __call__(self, *args, **kwargs):
        raise GanforgeError(f"sampler {self.sampler.name}: draws whole batches; use ganforge.sampling.generate(G, n, "
                            f"sampler=...) rather than calling the bound generator")

    def generate_batches(self, n: int, seed: int = 0, batch_size: int = 256, labels=None, truncation=None,
                         device=None) -> Batches:
        return self.sampler.generate_batches(self.G, self.D, n, seed=seed, batch_size=batch_size, labels=labels,
                                             truncation=truncation, device=device, data=self.data)


def bind(G: Any, sampler: Any, D: nn.Module | str | os.PathLike | None = None,
         device: torch.device | str | None = None, data: Dataset | None = None) -> Any:
    """G bound to `sampler` (any `build_sampler` spec) and its D; G itself when the sampler is none.

    D: a module, an export / run path, or None to load the one exported next to G (`G.export_dir`).
    """
    if isinstance(G, SampledGenerator):
        if sampler is None:
            return G
        D, data, G = G.D if D is None else D, G.data if data is None else data, G.G
    built = build_sampler(sampler)
    if built is None:
        return G
    if device is None:
        param = next(iter(G.parameters()), None)
        device = param.device if param is not None else "cpu"
    if not built.uses_discriminator:  # nothing to load (a G without an exported D can use it)
        return SampledGenerator(G, D if isinstance(D, nn.Module) else None, built, data)
    return SampledGenerator(G, resolve_discriminator(G, D, device, built.name), built, data)


def resolve_discriminator(G: Any, D: Any, device: torch.device | str, name: str) -> nn.Module:
    """D as given (a module), loaded from a path, or the one exported next to an exported G."""
    from ..training.export import load_discriminator

    if isinstance(D, nn.Module):
        return D
    if isinstance(D, (str, os.PathLike)):
        return load_discriminator(D, device=device)
    if D is not None:
        raise GanforgeError(f"discriminator: expected a D module or an export / run path, got {describe(D)}")
    export_dir = getattr(G, "export_dir", None)
    if export_dir is None:
        raise GanforgeError(f"sampler {name}: needs the discriminator; pass discriminator=D (a module or an export "
                            f"path), or use a generator loaded from a run / export saved with its D")
    return load_discriminator(export_dir, device=device)
