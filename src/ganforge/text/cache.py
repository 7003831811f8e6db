"""Sentence embeddings of a dataset's captions, computed once and cached on disk.

With a frozen encoder (DF-GAN's setup: "DF-GAN: A Simple and Effective Baseline for Text-to-Image Synthesis", Tao
et al., CVPR 2022, uses the fixed pretrained DAMSM text encoder), a caption's embedding never changes, so the
embeddings of all training captions are computed once and each step only indexes them.

Key: sha256 over the encoder's class, its `fingerprint()` (options, vocabulary and every weight, see
`text/base.py`) and the caption texts in order (each length-prefixed, so ["ab", "c"] and ["a", "bc"] differ). A
changed encoder, weight, vocabulary or caption gives a new key; an entry is a safetensors file
`<cache>/text-embeddings/<key>.safetensors` holding `sentence` (N, dim) float32. A missing, damaged or mismatched
entry is recomputed.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import torch

from .base import TextEncoder

CACHE_VERSION = 1  # bump when the stored layout changes


def captions_digest(captions: Sequence[str]) -> str:
    """sha256 of the captions in order, each UTF-8 encoded and prefixed by its byte length."""
    h = hashlib.sha256()
    for c in captions:
        b = c.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def embedding_cache_key(encoder: TextEncoder, captions: Sequence[str]) -> str:
    """The cache key of `encoder`'s embeddings of `captions` (changes with the encoder, any weight or any caption)."""
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION}|{type(encoder).__module__}.{type(encoder).__qualname__}|".encode())
    h.update(encoder.fingerprint().encode())
    h.update(captions_digest(captions).encode())
    return h.hexdigest()[:24]


def embedding_cache_path(key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the entry with `key` lives: `<cache_dir or $GANFORGE_CACHE/text-embeddings>/<key>.safetensors`."""
    from ..download import cache_dir as default_cache

    root = Path(cache_dir) if cache_dir is not None else default_cache("text-embeddings")
    return root / f"{key}.safetensors"


def _read(path: Path, key: str, count: int) -> torch.Tensor | None:
    """The cached (count, dim) sentence embeddings, or None when the entry is missing, damaged or not this key's."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            sentence = f.get_tensor("sentence")
    except Exception:  # any unreadable entry is simply recomputed
        return None
    if meta.get("key") != key or sentence.ndim != 2 or len(sentence) != count:
        return None
    return sentence


@torch.no_grad()
def encode_all(encoder: TextEncoder, captions: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """Sentence embeddings (N, dim) float32 on the CPU of every caption, in eval mode, `batch_size` at a time."""
    was_training = encoder.training
    encoder.eval()
    try:
        parts = [encoder(list(captions[i:i + batch_size])).sentence.float().cpu()
                 for i in range(0, len(captions), batch_size)]
    finally:
        encoder.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0, encoder.dim)


def cached_embeddings(encoder: TextEncoder, captions: Sequence[str], *, cache_dir: str | os.PathLike | None = None,
                      batch_size: int = 256) -> torch.Tensor:
    """Sentence embeddings (N, dim) float32 (CPU) of `captions` by `encoder`: read from the cache, else computed
    and stored.

    Args:
        encoder: any text encoder (a trainable one is keyed by its current weights: a snapshot).
        captions: the texts, in the order of the returned rows (a captioned dataset's `caption_texts`).
        cache_dir: directory of the entries; None uses the ganforge cache (`$GANFORGE_CACHE/text-embeddings`).
        batch_size: captions encoded per forward call on a miss.
    """
    from ..fileio import save_safetensors

    captions = list(captions)
    key = embedding_cache_key(encoder, captions)
    path = embedding_cache_path(key, cache_dir)
    hit = _read(path, key, len(captions))
    if hit is not None:
        return hit
    sentence = encode_all(encoder, captions, batch_size).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        save_safetensors({"sentence": sentence}, path, metadata={"key": key, "count": str(len(captions)),
                                                                 "fingerprint": encoder.fingerprint()})
    except OSError:
        pass  # a read-only cache only costs recomputing next time
    return sentence
