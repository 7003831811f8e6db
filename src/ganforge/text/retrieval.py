"""R-precision-style retrieval for text-to-image samples, in a text encoder's space.

AttnGAN / DF-GAN report R-precision: for each generated image, rank its own caption among 99 random others by the
cosine similarity of a (DAMSM) image embedding with the caption embeddings; R-precision = how often its caption ranks
first. ganforge has no jointly trained image-text encoder, so the image side is read by an attribute classifier
instead: the image's predicted attributes are written back as a caption (`describe`), embedded with the *run's* text
encoder, and compared with the candidates' embeddings. What the number measures: how often the content a classifier
reads in the image singles out the image's own caption among 1 + `distractors` captions, in the encoder's geometry;
chance is 1 / (1 + distractors). It rewards images whose attributes match their caption *and* an encoder that
separates captions by those attributes (a bag-of-words encoder cannot tell "a left of b" from "b left of a").
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F


def r_precision(query: torch.Tensor, own: torch.Tensor, pool: torch.Tensor, distractors: int = 99,
                generator: torch.Generator | None = None) -> float:
    """Fraction of rows i whose own caption embedding `own[i]` is the most similar (cosine) to `query[i]` among it
    and `distractors` rows of `pool` drawn at random (the other candidates; (M, E), M > distractors).

    Args:
        query: (N, E) what the images say (an embedding of the classifier's description of each image).
        own: (N, E) embedding of each image's own caption.
        pool: (M, E) embeddings of the captions distractors are drawn from (e.g. the test split's).
    """
    n = len(query)
    picks = torch.stack([torch.randperm(len(pool), generator=generator)[:distractors] for _ in range(n)])  # (N, k)
    candidates = torch.cat([own[:, None], pool[picks]], dim=1)  # (N, 1 + k, E): own caption first
    sims = F.cosine_similarity(query[:, None], candidates, dim=2)  # (N, 1 + k)
    best_others = sims[:, 1:].max(dim=1).values
    return float((sims[:, 0] > best_others).double().mean())


def text_r_precision(encode: Callable[[Sequence[str]], torch.Tensor], descriptions: Sequence[str],
                     captions: Sequence[str], pool_captions: Sequence[str], distractors: int = 99,
                     seed: int = 0) -> float:
    """R-precision of images described by `descriptions` (one per image) against their `captions`, distractors from
    `pool_captions`, everything embedded by `encode` (texts -> (N, E))."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return r_precision(encode(descriptions), encode(captions), encode(pool_captions), distractors, g)
