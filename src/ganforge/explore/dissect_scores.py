"""GAN Dissection's unit-concept scoring (Bau et al., ICLR 2019, Sec. 3.1): IoU of thresholded unit maps with
concept masks, and the thresholds (the authors' IQR rule for generators, or a fixed top quantile). Used by
`explore/dissect.py`, whose docstring states the definitions."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from tqdm import tqdm

IQR_FRACTIONS = torch.logspace(-3, 0, 100, dtype=torch.float64)  # fractions of pixels above t (the authors' levels)
MIN_AGREEMENT = 0.8  # P(A and B) + P(not A and not B) a level must exceed to compete (the authors' code)
MIN_LABEL_FRACTION = 1e-3  # concepts rarer than this are not trusted (no information counted)


def unit_iou(maps: torch.Tensor, masks: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """IoU_{u,c} = sum |{maps_u > t} ∧ masks_c| / sum |{maps_u > t} ∨ masks_c| over all samples and pixels.

    Args:
        maps: (N, U, H, W) unit maps at the masks' size (already upsampled).
        masks: (N, K, H, W) bool concept masks.
        threshold: one number, one per unit (U,) or one per unit and concept (U, K).
    Returns:
        (U, K) float64; 0 where the union is empty.
    """
    n_units, n_concepts = maps.shape[1], masks.shape[1]
    t = torch.as_tensor(threshold, dtype=maps.dtype)
    t = t[:, None] if t.ndim == 1 else t
    t = t.expand(n_units, n_concepts)
    out = torch.zeros(n_units, n_concepts, dtype=torch.float64)
    for k in range(n_concepts):
        active = maps > t[:, k].view(1, -1, 1, 1)  # (N, U, H, W)
        mask = masks[:, k: k + 1].bool()
        inter = (active & mask).sum(dim=(0, 2, 3)).double()
        union = (active | mask).sum(dim=(0, 2, 3)).double()
        out[:, k] = torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(union))
    return out


def level_counts(values: torch.Tensor, masks: torch.Tensor, levels: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel counts at each threshold level: |{v > t_l}| (L,) and |{v > t_l} ∧ mask_k| (K, L), float64.

    Args:
        values: (P,) one unit's upsampled activations over all pixels.
        masks: (P, K) bool concept masks of the same pixels.
        levels: (L,) thresholds, in any order.
    """
    order = torch.argsort(levels)
    sorted_levels = levels[order].to(values.dtype)
    bucket = torch.bucketize(values, sorted_levels)  # number of levels strictly below each value
    n_levels = len(levels)
    hist = torch.zeros(n_levels + 1, masks.shape[1] + 1, dtype=torch.float64)
    hist.index_add_(0, bucket, torch.cat([torch.ones(len(values), 1), masks.double()], dim=1))
    above = hist.flip(0).cumsum(0).flip(0)[1:]  # row j: values above sorted level j, (L, 1 + K)
    out = torch.empty_like(above)
    out[order] = above
    return out[:, 0], out[:, 1:].t()


def information_quality_ratio(inter: torch.Tensor, active: torch.Tensor, label: torch.Tensor,
                              total: float) -> torch.Tensor:
    """I(A; B) / H(A, B) of two binary pixel sets from counts |A ∧ B|, |A|, |B| and the number of pixels (natural
    logs; 0 where H = 0). 1 when A = B, 0 when they are independent. Broadcasts over its arguments."""
    p11 = inter / total
    p10 = (active - inter) / total
    p01 = (label - inter) / total
    p00 = 1 - p11 - p10 - p01
    pa, pb = p11 + p10, p11 + p01
    cells = [(p11, pa, pb), (p10, pa, 1 - pb), (p01, 1 - pa, pb), (p00, 1 - pa, 1 - pb)]
    mi = sum(torch.where(p > 0, p * torch.log(p / (a * b).clamp_min(1e-300)), torch.zeros_like(p))
             for p, a, b in cells)
    je = -sum(torch.where(p > 0, p * torch.log(p), torch.zeros_like(p)) for p, _, _ in cells)
    return torch.where(je > 0, mi.clamp_min(0) / je.clamp_min(1e-300), torch.zeros_like(je))


def quantiles(values: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Quantiles of a 1-D tensor at levels q (linear interpolation between order statistics, as numpy's default);
    works on any number of values (torch.quantile caps the input size)."""
    v = values.double().sort().values
    pos = q.double().clamp(0, 1) * (len(v) - 1)
    lo = pos.floor().long()
    hi = torch.clamp(lo + 1, max=len(v) - 1)
    return v[lo] + (pos - lo) * (v[hi] - v[lo])


class UnitScores(NamedTuple):
    """Per unit u and concept c: threshold t_{u,c}, IoU_{u,c}, the fraction of pixels above t, and the IQR (iqr)."""

    threshold: torch.Tensor  # (U, K)
    iou: torch.Tensor  # (U, K)
    fraction: torch.Tensor  # (U, K)
    iqr: torch.Tensor | None  # (U, K), method "iqr" only


def iqr_choice(values: torch.Tensor, masks: torch.Tensor, fractions: torch.Tensor = IQR_FRACTIONS
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One unit's IQR thresholds, one per concept: (threshold (K,), IoU (K,), fraction above t (K,), IQR (K,)).

    Args:
        values: (P,) the unit's upsampled activations over all pixels.
        masks: (P, K) bool concept masks.
        fractions: candidate fractions f of pixels above t (t = the (1 - f) quantile), ascending.
    """
    total = float(len(values))
    levels = quantiles(values, 1 - fractions)  # (L,)
    active, inter = level_counts(values, masks, levels)  # (L,), (K, L)
    label = masks.double().sum(0)[:, None]  # (K, 1)
    iqr = information_quality_ratio(inter, active[None], label, total)  # (K, L)
    iqr[:, fractions >= 1] = 0  # at the minimum every pixel is active: nothing to learn
    iqr[(label[:, 0] / total) < MIN_LABEL_FRACTION] = 0
    agreement = (total - active[None] - label + 2 * inter) / total  # P(A and B) + P(not A and not B)
    iqr[agreement <= MIN_AGREEMENT] = 0
    iqr[:, levels <= 0] = 0
    best = iqr.argmax(dim=1)  # ties: the first, i.e. the highest threshold
    k = torch.arange(len(best))
    union = active[best] + label[:, 0] - inter[k, best]
    iou = torch.where(union > 0, inter[k, best] / union.clamp_min(1), torch.zeros_like(union))
    return levels[best], iou, active[best] / total, iqr[k, best]


def score_units(acts: torch.Tensor, masks: torch.Tensor, method: str = "iqr", quantile: float = 0.005,
                chunk: int = 16, progress: bool = False) -> UnitScores:
    """Thresholds and IoU of every unit with every concept.

    Args:
        acts: (N, U, h, w) raw unit activations (upsampled here, bilinearly, to the masks' size).
        masks: (N, K, H, W) bool concept masks.
        method: "iqr" (per unit and concept) or "quantile" (the top `quantile` of each unit's values).
        quantile: the top fraction for method "quantile".
        chunk: units upsampled at a time (memory).
    """
    n_units = acts.shape[1]
    size = tuple(masks.shape[2:])
    flat_masks = masks.bool().permute(0, 2, 3, 1).reshape(-1, masks.shape[1])  # (P, K), pixels in (n, y, x) order
    cols: dict[str, list[torch.Tensor]] = {"threshold": [], "iou": [], "fraction": [], "iqr": []}
    for start in tqdm(range(0, n_units, chunk), desc="dissect", disable=not progress, leave=False):
        up = F.interpolate(acts[:, start: start + chunk].float(), size=size, mode="bilinear", align_corners=False)
        for j in range(up.shape[1]):
            values = up[:, j].reshape(-1)  # (P,), the same (n, y, x) order
            if method == "iqr":
                t, iou, frac, iqr = iqr_choice(values, flat_masks)
            else:
                level = quantiles(values, torch.tensor([1 - quantile]))
                active, inter = level_counts(values, flat_masks, level)
                label = flat_masks.double().sum(0)
                union = active[0] + label - inter[:, 0]
                iou = torch.where(union > 0, inter[:, 0] / union.clamp_min(1), torch.zeros_like(union))
                t, frac, iqr = level.expand(len(iou)), (active[0] / len(values)).expand(len(iou)), iou * 0
            for key, v in zip(cols, (t, iou, frac, iqr)):
                cols[key].append(v.double())
    stacked = {k: torch.stack(v) for k, v in cols.items()}
    return UnitScores(stacked["threshold"], stacked["iou"], stacked["fraction"],
                      stacked["iqr"] if method == "iqr" else None)
