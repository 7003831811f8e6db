"""`ganforge.evaluate`: one protocol for every metric, used by the API, the CLI and the training hook alike.

Results are the metrics' named floats plus the sample counts actually used: `n` (source) and `n_ref` (reference;
absent without reference features). Counts are reported because a fixed image set smaller than the n requested is
evaluated on all it has (with a warning), and because every metric is biased or undefined below some N: each metric's
`check_samples` warns below its `min_samples` and raises below its `min_defined` (see metrics/base.py).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence, Union

import torch

from ..checks import check_device, check_int
from ..errors import GanforgeError
from ..metric_keys import COUNT_KEYS, HIGHER_IS_BETTER
from ..registries import BACKBONES, METRICS, load_all
from .base import Features, Metric
from .cache import cached_features
from .extract import extract_features
from .sources import ImageSource, resolve, resolve_dataset, resolve_generator



def build_backbone(name: str = "inception-fid", weights: str | None = None, device: str | torch.device = "cpu",
                   resize: str | None = None, **options: Any) -> torch.nn.Module:
    """A registered feature backbone (`ganforge list backbones`); `resize` selects the resize protocol."""
    load_all()
    if resize is not None:
        options["resize"] = resize
    return BACKBONES.build(name, options, where="backbone", weights=weights, device=str(device))


MetricSpec = Union[str, Mapping[str, Any]]


def parse_named_options(item: str, kind: str = "metric", example: str = "kid:subsets=50") -> tuple[str, dict]:
    """`"kid:subsets=50:subset_size=500"` -> ("kid", {"subsets": 50, "subset_size": 500}); values parsed as YAML
    scalars, as in config overrides. Shared by `--metrics` and `--sampler`."""
    from ..config import parse_value

    name, *options = item.split(":")
    opts = {}
    for option in options:
        key, eq, value = option.partition("=")
        if not eq or not key.strip():
            raise GanforgeError(f"{kind} {name}: option {option!r} is not KEY=VALUE (e.g. {example})")
        opts[key.strip()] = parse_value(value)
    return name.strip(), opts


def parse_metrics(text: str) -> list[MetricSpec]:
    """`"fid,kid:subsets=50:subset_size=500"` -> ["fid", {"name": "kid", "subsets": 50, "subset_size": 500}]."""
    specs: list[MetricSpec] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, opts = parse_named_options(item)
        specs.append({"name": name, **opts} if opts else name)
    return specs


def metric_name(spec: MetricSpec) -> str:
    return spec if isinstance(spec, str) else str(spec.get("name"))


def build_metrics(specs: Sequence[MetricSpec] | str) -> list[Metric]:
    """Metrics from names, `name:key=value` strings or {name, **options} mappings (`ganforge list metrics`)."""
    load_all()
    if isinstance(specs, str):  # "fid,kid" as one string
        specs = parse_metrics(specs)
    if not specs:
        raise GanforgeError("metrics: choose at least one of: " + ", ".join(METRICS.names()))
    out = []
    for spec in specs:
        if isinstance(spec, str) and ":" in spec:
            (spec,) = parse_metrics(spec)
        if isinstance(spec, Mapping):
            opts = {k: v for k, v in spec.items() if k != "name"}
            name = spec.get("name")
            if not isinstance(name, str):
                raise GanforgeError(f"metrics: {dict(spec)!r} has no 'name'; choose one of: {', '.join(METRICS.names())}")
        elif isinstance(spec, str):
            name, opts = spec, {}
        else:
            raise GanforgeError(f"metrics: expected metric names, got {spec!r}")
        out.append(METRICS.build(name, opts, where=f"metric {name}"))
    return out


class Evaluator:
    """Backbone + metrics + reference features, built once; call it on any source."""

    def __init__(self, reference: Any, metrics: Sequence[MetricSpec] | str = ("fid",), backbone: str | torch.nn.Module =
                 "inception-fid", weights: str | None = None, resize: str | None = None, n_ref: int | None = None,
                 batch_size: int = 100, device: str | torch.device = "cpu", seed: int = 0, progress: bool = True,
                 use_cache: bool = True, sampler: Any = None, discriminator: Any = None):
        from ..samplers.base import build_sampler

        n_ref = check_int(n_ref, "n_ref", minimum=1, allow_none=True)
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        seed = check_int(seed, "seed")
        check_device(device, "device")
        chosen = build_metrics(metrics)
        self.sampler, self.discriminator = build_sampler(sampler), discriminator  # checked before any extraction
        # metrics on generated samples themselves (mode coverage) need no backbone and a reference *dataset*
        self.sample_metrics = [m for m in chosen if getattr(m, "on_samples", False)]
        self.metrics = [m for m in chosen if not getattr(m, "on_samples", False)]
        self.backbone = None
        if self.metrics:
            self.backbone = backbone if isinstance(backbone, torch.nn.Module) else build_backbone(
                backbone, weights, device, resize)
        self.batch_size, self.device, self.seed, self.progress = batch_size, device, seed, progress
        self.mode_dataset = resolve_dataset(reference, "reference") if self.sample_metrics else None
        self.fake_needs = frozenset().union(*(m.needs for m in self.metrics))
        ref_needs = frozenset().union(*(m.reference_needs for m in self.metrics))
        self.real: Features | None = None
        if ref_needs:
            if reference is None:
                names = [type(m).__name__ for m in self.metrics if m.needs_reference]
                raise GanforgeError(f"reference: {', '.join(names)} need a reference set (--ref)")
            ref = resolve(reference, n_ref, seed=seed, device=device, role="reference")
            if isinstance(ref, Features):
                self.real = ref
                self._check_saved_dims(reference)
            else:
                self.real = cached_features(ref, self.backbone, ref_needs, batch_size, progress, use_cache)
            self._check_reference(ref_needs)

    def _check_reference(self, needs: frozenset[str]) -> None:
        missing = [k for k in needs if getattr(self.real, k, None) is None]
        if missing:
            raise GanforgeError(f"reference: the saved statistics lack {', '.join(missing)} needed by the chosen "
                                f"metrics (a stats file with only mu/sigma supports fid)")

    def _check_saved_dims(self, reference: Any) -> None:
        """A saved statistics file must come from a backbone with this one's feature size (checked before generating)."""
        dim = getattr(self.backbone, "feature_dim", None)
        saved = self.real.stats.num_features if self.real is not None and self.real.stats is not None else None
        if isinstance(dim, int) and saved is not None and saved != dim:
            name = getattr(self.backbone, "name", type(self.backbone).__name__)
            raise GanforgeError(f"reference {reference}: the statistics have {saved} features but backbone {name} "
                                f"gives {dim} (saved with another backbone?)")

    def features(self, source: Any, n: int | None) -> Features:
        src = resolve(source, n, seed=self.seed, device=self.device, role="source", sampler=self.sampler,
                      discriminator=self.discriminator)
        if isinstance(src, Features):
            return src
        return extract_features(src, self.backbone, self.fake_needs, self.batch_size, self.progress)

    def __call__(self, source: Any, n: int | None = None) -> dict[str, float | int]:
        """Metric values, then `n` (source samples used) and `n_ref` (reference samples used, when there is one).

        With only sample metrics (modes), `n` is the count their protocol draws (the dataset's `mode_samples`).
        With a sampler, its report (DRS: `acceptance_rate`) follows the metric values.
        """
        n = check_int(n, "n", minimum=1, allow_none=True)
        out: dict[str, float | int] = {}
        counts: dict[str, int] = {}
        if self.sample_metrics:
            from ..samplers.base import bind

            G = bind(resolve_generator(source, self.device, "source"), self.sampler, self.discriminator, self.device)
            for m in self.sample_metrics:
                out.update(m.compute_samples(G, self.mode_dataset, self.seed, self.device))
            counts["n"] = int(self.mode_dataset.mode_samples)
        if self.metrics:
            fake = self.features(source, n)
            out.update(self._feature_metrics(fake))
            counts["n"] = fake.n
            if self.real is not None:
                counts["n_ref"] = self.real.n
        if self.sampler is not None:
            out.update(self.sampler.report())
        return {**out, **counts}

    def _feature_metrics(self, fake: Features) -> dict[str, float]:
        if self.real is not None and fake.stats is not None and self.real.stats is not None:
            if fake.stats.num_features != self.real.stats.num_features:
                raise GanforgeError(f"feature dimensions differ: source {fake.stats.num_features}, reference "
                                    f"{self.real.stats.num_features} (same backbone for both?)")
        for m in self.metrics:  # all checked first: an undefined metric fails before any is computed
            m.check_samples(fake, self.real)
        out: dict[str, float] = {}
        for m in self.metrics:
            out.update({k: float(v) for k, v in m.compute(fake, self.real).items()})
        return out


def evaluate(source: Any, reference: Any = None, metrics: Sequence[MetricSpec] | str = ("fid",),
             backbone: str | torch.nn.Module = "inception-fid", n: int | None = None, weights: str | None = None,
             resize: str | None = None, n_ref: int | None = None, batch_size: int = 100,
             device: str | torch.device = "cpu", seed: int = 0, progress: bool = True,
             use_cache: bool = True, sampler: Any = None, discriminator: Any = None) -> dict[str, float | int]:
    """Evaluate `source` against `reference`.

    Args:
        source: a generator module, a run/export directory, an image folder, a dataset name, a uint8 tensor
            (N, C, H, W), or a saved statistics file.
        reference: same kinds (dataset name, preset, folder, stats file .safetensors/.npz); None for IS alone.
        metrics: registered metric names (`ganforge list metrics`): fid, kid, is, prdc, ifid, fid_inf, ..., each
            optionally with options: "kid:subsets=50" or {"name": "kid", "subsets": 50}; a string may list several.
        backbone: registered backbone name or a Backbone instance; `weights` a local weights file.
        n: images to generate from a generator (None: 50000) or to take from a fixed set (None: all); n_ref:
            reference images (None: all).
        resize: resize protocol (tf-bilinear, clean, torch-bilinear); None keeps the backbone's default.
        seed: latent/label seed for generated images and subset seed for image sets.
        sampler: draw a generator's images through a sampling-time method that uses D (`ganforge list samplers`):
            "ddls", "drs:burn_in=5000", {"name": "drs", "gamma": 0.0}, a Sampler; None / "none": plain G sampling.
        discriminator: the sampler's D (a module or export path); None: the one exported next to the generator.
    Returns:
        {"fid": ..., "kid": ..., "kid_std": ..., "is": ..., "is_std": ..., "precision": ..., ...,
         "n": source samples used, "n_ref": reference samples used (absent without a reference)}; with DRS also
        "acceptance_rate" (accepted / proposed samples).
        A fixed image set with fewer images than n (n_ref) is evaluated on all it has, with a warning; a metric warns
        when N is below what it needs to mean much, and raises a GanforgeError when it is undefined at that N.
    Raises:
        GanforgeError: for arguments of the wrong type or range (n, n_ref, batch_size: integers >= 1; seed: an
        integer; device: an available torch device), naming the argument.
    """
    check_int(n, "n", minimum=1, allow_none=True)  # before the reference is extracted
    ev = Evaluator(reference, metrics, backbone, weights, resize, n_ref, batch_size, device, seed, progress, use_cache,
                   sampler, discriminator)
    return ev(source, n)


__all__ = ["evaluate", "Evaluator", "build_backbone", "build_metrics", "parse_metrics", "metric_name",
           "HIGHER_IS_BETTER", "COUNT_KEYS", "ImageSource"]
