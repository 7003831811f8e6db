"""Streaming feature extraction: run a backbone over an image source in batches, keeping only what metrics need.

Statistics accumulate in float64 (`RunningStats`) without holding the images; raw pool features, logits and labels
are kept (compactly, float32/int64 on the CPU) only when a metric declares it needs them, so peak memory stays flat as
N grows for FID-only evaluations.
"""
from __future__ import annotations

import torch
from tqdm import tqdm

from ..errors import GanforgeError
from .base import Features
from .sources import ImageSource
from .stats import RunningStats, update_per_class


def logits_of(outputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The logits IS uses: the bias-free ones where the backbone has them (torch-fidelity's convention)."""
    return outputs.get("logits_unbiased", outputs.get("logits"))


@torch.no_grad()
def extract_features(source: ImageSource, backbone: torch.nn.Module, needs: frozenset[str] | set[str],
                     batch_size: int = 100, progress: bool = True) -> Features:
    needs = set(needs)
    if "class_stats" in needs and not source.has_labels:
        raise GanforgeError(f"{source.description}: intra-class metrics need class labels, and this source has none")
    stats = RunningStats() if needs & {"stats"} else None
    pools, logits, labels = [], [], []
    class_stats: dict[int, RunningStats] | None = {} if "class_stats" in needs else None
    device = getattr(backbone, "device", "cpu")
    n = 0
    bar = tqdm(total=source.n, disable=not progress, desc=f"features: {source.description}", unit="img",
               leave=False, dynamic_ncols=True)
    try:
        for images, y in source.batches(batch_size):
            out = backbone(images.to(device))
            pool = out["pool"].float()
            if not torch.isfinite(pool).all():
                raise GanforgeError(f"{source.description}: the backbone produced NaN/Inf features (images "
                                    f"{n}..{n + len(images) - 1}); check the weights file and the input images")
            if stats is not None:
                stats.update(pool.double())
            if "pool" in needs:
                pools.append(pool.cpu())
            if "logits" in needs:
                lg = logits_of(out)
                if lg is None:
                    raise GanforgeError(f"backbone {getattr(backbone, 'name', '?')}: has no logits (IS needs a "
                                        f"classifier backbone such as inception-fid)")
                logits.append(lg.float().cpu())
            if y is not None and needs & {"labels", "class_stats"}:
                labels.append(y.cpu())
                if class_stats is not None:
                    update_per_class(class_stats, pool.double(), y.to(pool.device))
            n += len(images)
            bar.update(len(images))
    finally:
        bar.close()
    if n == 0:
        raise GanforgeError(f"{source.description}: no images")
    return Features(
        n=n,
        stats=stats,
        pool=torch.cat(pools) if pools else None,
        logits=torch.cat(logits) if logits else None,
        labels=torch.cat(labels) if labels else None,
        class_stats=class_stats,
    )
