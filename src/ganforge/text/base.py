"""Text-encoder interface: captions -> a sentence vector per caption (and per-word features).

Text-conditional GANs condition G and D on a sentence embedding of the caption: DF-GAN (Tao et al., CVPR 2022) feeds
the sentence vector of a frozen pretrained DAMSM encoder (a bidirectional LSTM, AttnGAN: Xu et al., CVPR 2018) into
every fusion block of G and into D's matching-aware head; Text2FaceGAN (Nasir et al., 2019) embeds captions with a
fixed pretrained sentence encoder. AttnGAN's attention also uses the per-word features, so an encoder gives both.

A `TextEncoder` is an `nn.Module` called on a list of strings; it returns a `TextEncoding`:
`sentence` (B, dim), `words` (B, L, word_dim) and `mask` (B, L) (True at real tokens, False at padding).
What an encoder declares (class attributes, read by the framework, never its name):
- `trains_with`: the optimizer that steps its parameters when it is trainable ("D": it learns from D's matching
  loss, as a text embedding inside a matching-aware discriminator does; its output is detached for G);
- `frozen`: no parameter trains, so embeddings can be cached (`text/cache.py`); an option of `learned`, always
  true of the pretrained `glove`.
`fingerprint()` changes whenever the encoder's output could change (class, options, vocabulary, every weight), so
it keys the embedding cache.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, NamedTuple, Sequence

import torch
from torch import nn


class TextEncoding(NamedTuple):
    """An encoder's output for B captions."""

    sentence: torch.Tensor  # (B, dim)
    words: torch.Tensor  # (B, L, word_dim), zero at padding
    mask: torch.Tensor  # (B, L) bool, True at real tokens


class TextEncoder(nn.Module):
    """Base class. Subclasses set `dim`, `word_dim`, `frozen` and implement `forward(texts) -> TextEncoding`."""

    trains_with: str = "D"
    dim: int
    word_dim: int
    frozen: bool = False

    def forward(self, texts: Sequence[str]) -> TextEncoding:
        raise NotImplementedError

    @property
    def trainable(self) -> bool:
        """Whether any parameter trains (the trainer adds them to the `trains_with` optimizer)."""
        return any(p.requires_grad for p in self.parameters())

    def config(self) -> dict[str, Any]:
        """The encoder's options, JSON-able (saved with the run; part of the fingerprint)."""
        return {}

    def vocab_json(self) -> dict | None:
        """The vocabulary to save with the run (None when the encoder has none of its own)."""
        return None

    def fingerprint_extra(self) -> str:
        """What else determines the output besides options, vocabulary and state_dict (e.g. a pinned file digest)."""
        return ""

    def fingerprint(self) -> str:
        """Short sha256 over the class, options, vocabulary, extra identity and every tensor of the state_dict."""
        h = hashlib.sha256()
        h.update(f"{type(self).__module__}.{type(self).__qualname__}".encode())
        h.update(json.dumps(self.config(), sort_keys=True, default=str).encode())
        h.update(json.dumps(self.vocab_json(), sort_keys=True).encode())
        h.update(self.fingerprint_extra().encode())
        for name, t in sorted(self.state_dict().items()):
            t = t.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()[:16]
