"""A word-level tokenizer built from a dataset's captions, saved as JSON with the run.

Text-to-image GANs with a learned text encoder (the DAMSM encoder of AttnGAN, Xu et al., CVPR 2018, which DF-GAN,
Tao et al., CVPR 2022, reuses frozen) tokenize captions into lowercase words and map each word of a vocabulary built
from the training captions to an id. Here: text is lowercased, split into runs of letters/digits (apostrophes kept
inside words: "it's") and single punctuation marks, which are tokens of their own ("a red, round circle." ->
a, red, ",", round, circle, "."). Id 0 is `<pad>`, id 1 `<unk>` (a word outside the vocabulary, or seen fewer than
`min_count` times); the rest are ordered by decreasing count, ties alphabetically, so the same captions always give
the same ids.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import torch

from ..errors import GanforgeError

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
VOCAB_FORMAT = 1  # bump when the JSON layout changes
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[^\w\s]|_")  # words (with inner apostrophes) or one punctuation mark


def tokenize(text: str) -> list[str]:
    """Lowercased words and punctuation marks of `text`, in order."""
    return _TOKEN.findall(text.lower())


class WordTokenizer:
    """Word <-> id mapping: `<pad>` = 0, `<unk>` = 1, then the vocabulary by decreasing count."""

    def __init__(self, words: Sequence[str]):
        """`words`: the vocabulary in id order, starting with `<pad>`, `<unk>` (as `build` and `load` give it)."""
        if list(words[:2]) != [PAD, UNK] or len(set(words)) != len(words):
            raise GanforgeError(f"vocabulary: expected distinct words starting with {PAD!r}, {UNK!r}, got "
                                f"{list(words[:3])!r}...")
        self.words = list(words)
        self.ids = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1, max_size: int | None = None) -> "WordTokenizer":
        """The vocabulary of `captions`: words seen at least `min_count` times, the `max_size` most frequent."""
        counts = Counter(t for c in captions for t in tokenize(c))
        ranked = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        if max_size is not None:
            ranked = ranked[:max(0, max_size - 2)]
        return cls([PAD, UNK, *ranked])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        """Token ids of one text (unknown words -> 1)."""
        return [self.ids.get(t, UNK_ID) for t in tokenize(text)]

    def batch(self, texts: Sequence[str], max_len: int | None = None,
              device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids (B, L) int64 padded with 0, lengths (B,) int64); texts cut to `max_len` tokens; an empty text
        becomes a single `<unk>` so every row has at least one token."""
        rows = [self.encode(t)[:max_len] or [UNK_ID] for t in texts]
        length = max((len(r) for r in rows), default=1)
        ids = torch.zeros(len(rows), length, dtype=torch.int64)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r, dtype=torch.int64)
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64)
        return ids.to(device), lengths.to(device)

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words of `ids`, padding dropped."""
        return [self.words[i] for i in ids if i != PAD_ID]

    def to_json(self) -> dict:
        return {"format": VOCAB_FORMAT, "words": list(self.words)}  # a copy: editing it leaves the tokenizer

    def save(self, path: str | os.PathLike) -> Path:
        """Write the vocabulary as JSON (atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            tmp.write_text(json.dumps(self.to_json(), ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    @classmethod
    def from_json(cls, data: object, where: str = "vocabulary") -> "WordTokenizer":
        if not isinstance(data, dict) or data.get("format") != VOCAB_FORMAT or not isinstance(data.get("words"), list):
            raise GanforgeError(f"{where}: not a ganforge vocabulary (format {VOCAB_FORMAT}) JSON object")
        if not all(isinstance(w, str) for w in data["words"]):
            raise GanforgeError(f"{where}: vocabulary words must be strings")
        return cls(data["words"])

    @classmethod
    def load(cls, path: str | os.PathLike) -> "WordTokenizer":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise GanforgeError(f"{path}: cannot read vocabulary ({type(e).__name__}: {e})") from e
        return cls.from_json(data, where=str(path))
