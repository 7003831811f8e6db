"""`learned`: a word embedding + bidirectional GRU (or mean-pool MLP) sentence encoder over the run's own vocabulary.

The DAMSM text encoder of AttnGAN ("AttnGAN: Fine-Grained Text to Image Generation with Attentional Generative
Adversarial Networks", Xu et al., CVPR 2018, Sec. 3.3) embeds the words of a caption and runs a bidirectional RNN:
the word features are the concatenated forward/backward hidden states at each position, e_i = [h_fwd_i; h_bwd_i],
and the sentence feature is the concatenation of the two directions' last hidden states, e_bar = [h_fwd_L; h_bwd_1].
DF-GAN (Tao et al., CVPR 2022) keeps that encoder frozen after pretraining; here it can also train with the GAN.

- `pool: gru` — the bidirectional GRU above (dim/2 units per direction; padded positions are packed away, so a
  caption's encoding does not depend on the other captions of its batch).
- `pool: mean` — order-blind: words w_i = W e_i, sentence = MLP(mean_i e_i) (two Linear layers with a ReLU).

Trainable encoders train with D (`trains_with = "D"`): the matching-aware D learns to tell matching from
mismatching (image, text) pairs, and the text features it learns are handed to G detached, as the frozen DAMSM
features are in DF-GAN. `frozen: true` freezes every parameter (use with `weights`, a safetensors file of a trained
encoder's state_dict, to reproduce DF-GAN's frozen-encoder setup); its embeddings can then be cached.

The vocabulary (`text/tokenizer.py`) is built from the training captions (build context `captions`) unless a saved
one is given (build context `vocab`, the JSON the run saved): a resumed or exported run keeps its ids.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..errors import GanforgeError
from ..registries import TEXT_ENCODERS
from .base import TextEncoder, TextEncoding
from .glove import GLOVE_DIM, glove_vectors
from .tokenizer import WordTokenizer


class BiGRUPool(nn.Module):
    """Embedded words (B, L, E) -> (sentence [h_fwd_last; h_bwd_first] (B, dim), words [h_fwd_i; h_bwd_i]
    (B, L, dim))."""

    def __init__(self, embed_dim: int, dim: int):
        super().__init__()
        self.rnn = nn.GRU(embed_dim, dim // 2, batch_first=True, bidirectional=True)

    def forward(self, emb: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, h_n = self.rnn(packed)  # h_n: (2, B, dim/2), the last step of each direction (padding skipped)
        words, _ = pad_packed_sequence(out, batch_first=True, total_length=emb.shape[1])
        return torch.cat([h_n[0], h_n[1]], dim=1), words  # e_bar = [h_fwd_L; h_bwd_1]


class MeanPoolMLP(nn.Module):
    """Embedded words (B, L, E) -> (sentence MLP(mean e_i) (B, dim), words W e_i (B, L, dim)); ignores word order."""

    def __init__(self, embed_dim: int, dim: int):
        super().__init__()
        self.word = nn.Linear(embed_dim, dim)
        self.mlp = nn.Sequential(nn.Linear(embed_dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, emb: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        m = mask.unsqueeze(-1).to(emb.dtype)
        mean = (emb * m).sum(dim=1) / lengths.clamp(min=1).unsqueeze(1).to(emb.dtype)  # mean over real tokens
        return self.mlp(mean), self.word(emb) * m


POOLS = {"gru": BiGRUPool, "mean": MeanPoolMLP}
INITS = {"random": 64, "glove": GLOVE_DIM}  # word-embedding init -> its default embed_dim


@TEXT_ENCODERS.register("learned")
class LearnedTextEncoder(TextEncoder):
    """Word embedding + bidirectional GRU (or mean-pool MLP) over the training captions' vocabulary; trains with D."""

    trains_with = "D"

    def __init__(self, *, captions: Sequence[str] | None = None, vocab: dict | None = None, dim: int = 128,
                 embed_dim: int | None = None, pool: str = "gru", init: str = "random", min_count: int = 1,
                 max_len: int = 32, frozen: bool = False, weights: str | None = None):
        """
        Args:
            dim: width of the sentence vector and of the word features.
            embed_dim: width of the word embedding (default 64; 50 with `init: glove`).
            pool: "gru" (bidirectional GRU, order-aware) or "mean" (mean of embeddings + MLP, order-blind).
            init: "random" or "glove": vocabulary words found in GloVe 6B start from their 50-d GloVe vectors
                (needs the `glove` encoder's package, see text/glove.py); the others start random.
            min_count: words seen fewer times in the training captions map to `<unk>`.
            max_len: captions are cut to this many tokens.
            frozen: no parameter trains (embeddings can then be cached).
            weights: a safetensors file holding a trained encoder's state_dict, loaded after building.
        """
        super().__init__()
        if pool not in POOLS:
            raise GanforgeError(f"text 'learned': pool must be one of {', '.join(POOLS)}, got {pool!r}")
        if dim < 2 or (pool == "gru" and dim % 2):
            raise GanforgeError(f"text 'learned': dim must be an even number >= 2 (half per GRU direction), got {dim}")
        if init not in INITS:
            raise GanforgeError(f"text 'learned': init must be one of {', '.join(INITS)}, got {init!r}")
        embed_dim = embed_dim if embed_dim is not None else INITS[init]
        if init == "glove" and embed_dim != GLOVE_DIM:
            raise GanforgeError(f"text 'learned': embed_dim must be {GLOVE_DIM} with init: glove, got {embed_dim}")
        for key, value in (("embed_dim", embed_dim), ("min_count", min_count), ("max_len", max_len)):
            if value < 1:
                raise GanforgeError(f"text 'learned': {key} must be >= 1, got {value}")
        if vocab is not None:
            self.tokenizer = WordTokenizer.from_json(vocab, where="text 'learned': vocab")
        elif captions is not None:
            self.tokenizer = WordTokenizer.build(captions, min_count=min_count)
        else:
            raise GanforgeError("text 'learned': needs the training captions (a captioned dataset) or a saved "
                                "vocabulary to build its tokenizer")
        self.dim = self.word_dim = dim
        self.embed_dim, self.pool, self.init, self.min_count, self.max_len = embed_dim, pool, init, min_count, max_len
        self.embed = nn.Embedding(len(self.tokenizer), embed_dim, padding_idx=0)
        if init == "glove":
            self._init_from_glove()
        self.encoder = POOLS[pool](embed_dim, dim)
        if weights is not None:
            self._load_weights(weights)
        self.frozen = frozen
        if frozen:
            self.requires_grad_(False)

    @torch.no_grad()
    def _init_from_glove(self) -> None:
        """Copy the GloVe vector of every vocabulary word GloVe knows into its embedding row."""
        vectors, found = glove_vectors(self.tokenizer.words)
        found[0] = False  # <pad> stays zero
        self.embed.weight[found] = vectors[found]

    def _load_weights(self, path: str) -> None:
        from safetensors.torch import load_file

        try:
            state = load_file(path)
            self.load_state_dict(state, strict=True)
        except (OSError, RuntimeError, ValueError) as e:  # missing file, wrong shapes or keys, not safetensors
            msg = str(e).splitlines()[0] if str(e) else ""
            raise GanforgeError(f"text 'learned': weights {path}: cannot load ({type(e).__name__}: {msg})") from e

    def config(self) -> dict:
        return {"dim": self.dim, "embed_dim": self.embed_dim, "pool": self.pool, "init": self.init,
                "min_count": self.min_count,
                "max_len": self.max_len, "frozen": self.frozen}

    def vocab_json(self) -> dict:
        return self.tokenizer.to_json()

    def forward(self, texts: Sequence[str]) -> TextEncoding:
        ids, lengths = self.tokenizer.batch(list(texts), self.max_len, device=self.embed.weight.device)
        mask = ids != 0  # (B, L); every row has >= 1 token
        sentence, words = self.encoder(self.embed(ids), lengths, mask)
        return TextEncoding(sentence, words, mask)
