"""How captions become the condition of a text-conditional run: image indices -> a caption each -> embeddings.

In a text-conditional run the trainer handles conditions as int64 *image indices* (so batching, rank sharding,
gradient accumulation and the seeded latent streams work exactly as for class labels): the reals' indices are their
dataset rows, and the fakes' are training images drawn uniformly (G is asked for images of real captions, as in
DF-GAN's training, where fakes are generated from the batch's sentences). Before any term of a phase computes,
`TextCondition.prepare(ctx)` picks one caption per sample, uniformly among that image's captions, from the phase's
per-sample random stream (`ctx.sample_rng()`: the same pick whichever rank or accumulation round holds the sample),
and replaces `ctx.y_real` / `ctx.y_fake` by the sentence embeddings (B, text_dim) that G's and D's text components
read.

A frozen encoder's embeddings of every training caption are computed once (`text/cache.py`) and indexed; a trainable
one (`learned`) encodes the chosen captions in the phase, so D's losses train it (`trains_with = "D"`: the trainer
puts its parameters in D's optimizer, freezes them in G's phases, checkpoints and all-reduces them, like any term
with parameters). It is an ObjectiveTerm that contributes no loss of its own.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..objectives.base import Context, ObjectiveTerm
from .base import TextEncoder
from .cache import cached_embeddings


class TextCondition(ObjectiveTerm, nn.Module):
    """Maps image indices to sentence embeddings of one of their captions (see the module docstring)."""

    prepares_every_phase = True  # the trainer calls `prepare(ctx)` in every phase, before the phase's own terms

    def __init__(self, encoder: TextEncoder, captions: Sequence[str], caption_offsets: torch.Tensor,
                 cache_dir: str | None = None):
        nn.Module.__init__(self)
        self.trains_with = encoder.trains_with
        self.captions = list(captions)
        self.offsets = caption_offsets.long().clone()  # (N + 1,): image i's captions are rows offsets[i]:offsets[i+1]
        self.dim = int(encoder.dim)
        if encoder.trainable:
            self.encoder = encoder  # a submodule: trained, checkpointed, all-reduced with D
            self.table = None
        else:
            self._frozen = [encoder]  # not a submodule: nothing of it enters checkpoints
            self.table = cached_embeddings(encoder, self.captions, cache_dir=cache_dir)  # (M, dim) float32 CPU

    @property
    def text_encoder(self) -> TextEncoder:
        return self.encoder if self.table is None else self._frozen[0]

    def pick(self, images: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Caption rows (B,) for image indices `images` (B,) and uniforms `u` (B,) in [0, 1): floor(u * count)."""
        images = images.long().cpu()
        lo, hi = self.offsets[images], self.offsets[images + 1]
        return lo + (u.cpu().double() * (hi - lo)).long().clamp(max=(hi - lo - 1)).clamp(min=0)

    def encode(self, rows: torch.Tensor, device: torch.device | str) -> torch.Tensor:
        """Sentence embeddings (B, dim) of caption rows `rows`."""
        if self.table is not None:
            return self.table[rows.long().cpu()].to(device)
        return self.encoder([self.captions[int(i)] for i in rows]).sentence.to(device).float()

    def encode_texts(self, texts: Sequence[str], device: torch.device | str = "cpu") -> torch.Tensor:
        """Sentence embeddings (B, dim) of new texts (sampling with `--text`)."""
        with torch.no_grad():
            return self.text_encoder(list(texts)).sentence.to(device).float()

    def prepare(self, ctx: Context) -> None:
        for key in ("y_real", "y_fake"):
            y = getattr(ctx, key)
            if y is None or y.is_floating_point():  # already embeddings (a term changed them) or no condition
                continue
            u = ctx.sample_rng().rand(len(y), device="cpu", dtype=torch.float64)
            setattr(ctx, key, self.encode(self.pick(y, u), ctx.real.device))
        ctx.reset()

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Embeddings (n, dim), on the CPU, of one random caption each of n uniformly drawn training images: what G
        is asked for when no caption is given (evaluation, `ganforge eval` on a text-conditional generator)."""
        images = torch.randint(0, len(self.offsets) - 1, (n,), generator=generator)
        rows = self.pick(images, torch.rand(n, generator=generator, dtype=torch.float64))
        with torch.no_grad():
            chunks = [self.encode(rows[i:i + 256], "cpu") for i in range(0, n, 256)]
        return torch.cat(chunks) if chunks else torch.zeros(0, self.dim)

    def grid_condition(self, n: int, device: torch.device | str) -> torch.Tensor:
        """Embeddings of the first caption of n evenly spaced training images (the training sample grid's rows)."""
        images = torch.linspace(0, len(self.offsets) - 2, n).round().long()
        return self.encode(self.offsets[images], device)

    def grid_texts(self, n: int) -> list[str]:
        images = torch.linspace(0, len(self.offsets) - 2, n).round().long()
        return [self.captions[int(self.offsets[i])] for i in images]
