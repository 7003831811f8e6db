"""`damsm`: a text encoder pretrained on the run's own (image, caption) pairs with AttnGAN's DAMSM matching loss.

DF-GAN ("DF-GAN: A Simple and Effective Baseline for Text-to-Image Synthesis", Tao et al., CVPR 2022) conditions on
the sentence vectors of a *frozen, pretrained* DAMSM text encoder. DAMSM (the Deep Attentional Multimodal Similarity
Model of "AttnGAN: Fine-Grained Text to Image Generation with Attentional Generative Adversarial Networks", Xu et al.,
CVPR 2018, Sec. 3.3) trains a text encoder (a bidirectional RNN) and an image encoder together so that matching
(image, caption) pairs score higher than mismatched ones. Its sentence-level loss over a batch of M pairs, with the
cosine similarity R(Q_i, D_j) = cos(v_i, e_j) of image vector v_i and sentence vector e_j, is (Eqs. 10-11, 13)
    P(D_i | Q_i) = exp(gamma3 R(Q_i, D_i)) / sum_j exp(gamma3 R(Q_i, D_j)),
    L_s = -sum_i log P(D_i | Q_i) - sum_i log P(Q_i | D_i),          gamma3 = 10,
(means over the batch here). Pairs whose captions are the same text are not counted as negatives of each other
(AttnGAN's code masks pairs of the same class for the same reason). The word-level half of DAMSM (attention over
image regions) is not implemented: only the sentence vector conditions G and D here.

What this encoder does: when built for a run (build context `dataset`, a captioned dataset), it pretrains its text
encoder (the `learned` GRU over the training captions' vocabulary) and a small image encoder (`ImageEncoder`) for
`steps` Adam steps on random (image, one of its captions) pairs, deterministically from `seed`, then freezes both.
The weights are cached as `<cache>/damsm/damsm-v<VERSION>-<key>.safetensors`, key = sha256 over the dataset's
fingerprint, the options and the vocabulary, so every later run (and resume, and every DDP rank) on the same data
loads them. Frozen, its caption embeddings are computed once (`text/cache.py`). The image encoder stays available
(`encode_images`) for AttnGAN's DAMSM loss on G (`objectives/damsm.py`). An export saves both encoders' weights;
rebuilt from an export (no dataset), nothing is pretrained: the saved weights are loaded.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GanforgeError
from ..registries import TEXT_ENCODERS
from .base import TextEncoder, TextEncoding
from .learned import LearnedTextEncoder

VERSION = 1  # bump when pretraining changes what it produces
GAMMA3 = 10.0  # AttnGAN's smoothing factor of the sentence-level matching loss
NAME = "text 'damsm'"


class ImageEncoder(nn.Module):
    """Model-space samples -> vectors (B, dim). Images (B, C, R, R): 3x3 conv, then stride-2 4x4 convs to 4x4
    (LeakyReLU 0.2, no normalisation, so the same function in train and eval mode), flattened, one linear layer.
    Vectors (B, C) (2-D point data): a two-layer MLP of width 4 ch."""

    def __init__(self, img_shape: Sequence[int], dim: int, ch: int):
        super().__init__()
        shape = [int(s) for s in img_shape]
        if len(shape) == 1:
            self.body = nn.Sequential(nn.Linear(shape[0], 4 * ch), nn.LeakyReLU(0.2))
            self.out = nn.Linear(4 * ch, dim)
            return
        c, h, w = shape
        if h != w or h < 4 or h & (h - 1):
            raise GanforgeError(f"{NAME}: needs square images with a power-of-two side >= 4, got {h}x{w}")
        layers: list[nn.Module] = [nn.Conv2d(c, ch, 3, 1, 1), nn.LeakyReLU(0.2)]
        width, side = ch, h
        while side > 4:
            layers += [nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2)]
            width, side = 2 * width, side // 2
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(width * 16, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x).flatten(1))


def image_encoder_layout(state: dict, prefix: str = "image.") -> tuple[tuple[int, ...], int]:
    """(sample shape, image_ch) of the `ImageEncoder` whose weights are `state[prefix + ...]`: vector data when the
    first layer is linear (C -> 4 ch), else images whose side is 4 * 2^(number of stride-2 convs)."""
    w = state[f"{prefix}body.0.weight"]
    if w.dim() == 2:  # the MLP of vector data: Linear(C, 4 ch)
        return (int(w.shape[1]),), int(w.shape[0]) // 4
    convs = sum(1 for k in state if k.startswith(f"{prefix}body.") and k.endswith(".weight"))
    side = 4 * 2 ** (convs - 1)  # the first 3x3 conv, then one stride-2 conv per halving down to 4x4
    return (int(w.shape[1]), side, side), int(w.shape[0])


def image_encoder_from_state(state: dict, prefix: str = "image.") -> ImageEncoder:
    """The `ImageEncoder` saved under `prefix` in a DAMSM encoder's state (e.g. an export's text_encoder file)."""
    img_shape, ch = image_encoder_layout(state, prefix)
    dim = int(state[f"{prefix}out.weight"].shape[0])
    enc = ImageEncoder(img_shape, dim, ch)
    enc.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)
    return enc


def matching_loss(v: torch.Tensor, e: torch.Tensor, gamma: float = GAMMA3,
                  same: torch.Tensor | None = None) -> torch.Tensor:
    """DAMSM's sentence-level loss (AttnGAN, Eqs. 10-11, 13), averaged over the batch: cross-entropy of
    gamma * cos(v_i, e_j) towards j = i, over rows (image -> text) plus over columns (text -> image).

    Args:
        v: image vectors (M, d). e: sentence vectors (M, d) of their captions.
        same: optional bool (M, M), True where pair (i, j), i != j, must not count as a negative (same caption).
    """
    logits = gamma * F.normalize(v.float(), dim=1) @ F.normalize(e.float(), dim=1).t()  # (M, M)
    if same is not None:
        off = same & ~torch.eye(len(v), dtype=torch.bool, device=v.device)
        logits = logits.masked_fill(off, float("-inf"))
    target = torch.arange(len(v), device=v.device)
    return F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)


def same_rows(e: torch.Tensor) -> torch.Tensor:
    """bool (M, M): rows i and j of `e` are identical (the same caption under a frozen encoder)."""
    return (e[:, None, :] == e[None, :, :]).all(dim=2)


@TEXT_ENCODERS.register("damsm")
class DAMSMTextEncoder(TextEncoder):
    """A GRU text encoder + image encoder pretrained with DAMSM's matching loss on the run's data, then frozen."""

    def __init__(self, *, captions: Sequence[str] | None = None, vocab: dict | None = None, dataset: Any = None,
                 dim: int = 64, embed_dim: int = 64, image_ch: int = 32, steps: int = 2000, batch_size: int = 64,
                 lr: float = 0.002, gamma: float = GAMMA3, seed: int = 0):
        """
        Args:
            dim: width of the sentence vector (and of the image vector it is matched with).
            embed_dim: width of the word embedding.
            image_ch: channels of the image encoder's first layer (doubled at each downsampling).
            steps: Adam steps of pretraining (batches of `batch_size` random image-caption pairs).
            batch_size: pairs per pretraining step (the negatives of each pair are the others of its batch).
            lr: Adam learning rate of pretraining (betas 0.5, 0.999).
            gamma: gamma3, the matching loss's smoothing factor (AttnGAN: 10).
            seed: seeds initialisation and the pretraining batches.
        """
        super().__init__()
        for key, value in (("dim", dim), ("embed_dim", embed_dim), ("image_ch", image_ch), ("steps", steps),
                           ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "steps" else 1):
                raise GanforgeError(f"{NAME}: {key} must be a positive integer, got {value!r}")
        if batch_size < 2:
            raise GanforgeError(f"{NAME}: batch_size must be >= 2 (a pair needs negatives), got {batch_size}")
        for key, value in (("lr", lr), ("gamma", gamma)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise GanforgeError(f"{NAME}: {key} must be a finite number > 0, got {value!r}")
        self.options = {"dim": dim, "embed_dim": embed_dim, "image_ch": image_ch, "steps": steps,
                        "batch_size": batch_size, "lr": float(lr), "gamma": float(gamma), "seed": seed}
        self.dim = self.word_dim = dim
        self.image_shape: list[int] | None = None
        self.image: ImageEncoder | None = None
        with torch.random.fork_rng(devices=[]):  # initialisation from `seed`, leaving the caller's RNG as it was
            torch.manual_seed(seed)
            self.text = LearnedTextEncoder(captions=captions, vocab=vocab, dim=dim, embed_dim=embed_dim, pool="gru")
            if dataset is not None:
                self.attach_image_encoder(dataset.info.shape)
        if dataset is not None:
            self._pretrain_or_load(dataset)
        self.requires_grad_(False)
        self.frozen = True
        self.eval()

    def attach_image_encoder(self, img_shape: Sequence[int]) -> None:
        """Give the encoder an untrained image encoder for samples of `img_shape` (pretraining or loading fills it)."""
        self.image_shape = [int(s) for s in img_shape]
        self.image = ImageEncoder(self.image_shape, self.dim, self.options["image_ch"])

    # ------------------------------------------------------------------------------------------- pretraining
    def cache_key(self, dataset: Any) -> str:
        h = hashlib.sha256(f"v{VERSION}|{dataset.fingerprint()}|".encode())
        h.update(json.dumps(self.options, sort_keys=True).encode())
        h.update(json.dumps(self.text.vocab_json(), sort_keys=True).encode())
        return h.hexdigest()[:24]

    def _pretrain_or_load(self, dataset: Any) -> None:
        from ..download import cache_dir
        from ..fileio import save_safetensors

        path = cache_dir("damsm") / f"damsm-v{VERSION}-{self.cache_key(dataset)}.safetensors"
        if self._load_cached(path):
            return
        self.pretrain_stats = pretrain(self, dataset)
        try:
            save_safetensors({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, path,
                             metadata={"version": str(VERSION), "image_shape": json.dumps(self.image_shape),
                                       **{k: str(v) for k, v in self.pretrain_stats.items()}})
        except OSError:
            pass  # a read-only cache only costs pretraining again next time

    def _load_cached(self, path: Path) -> bool:
        from safetensors.torch import load_file

        if not path.is_file():
            return False
        try:
            self.load_state_dict(load_file(str(path)), strict=True)
        except Exception:  # a damaged or stale entry is pretrained again
            return False
        return True

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        """An export's state holds the image encoder: build it (shapes read off its weights) before loading."""
        if self.image is None and any(k.startswith("image.") for k in state):
            img_shape, ch = image_encoder_layout(state)
            self.options["image_ch"] = ch
            self.attach_image_encoder(img_shape)
            self.image.requires_grad_(False)
        return super().load_state_dict(state, strict=strict, assign=assign)

    # ------------------------------------------------------------------------------------------------ use
    def config(self) -> dict:
        return dict(self.options)

    def vocab_json(self) -> dict:
        return self.text.vocab_json()

    def forward(self, texts: Sequence[str]) -> TextEncoding:
        return self.text(texts)

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        """Image vectors (B, dim) of model-space images, matched to sentence vectors by cosine similarity."""
        if self.image is None:
            raise GanforgeError(f"{NAME}: this encoder has no image encoder (it was built without a dataset)")
        return self.image(x)


def pretrain(encoder: DAMSMTextEncoder, dataset: Any) -> dict[str, float]:
    """Train `encoder.text` and `encoder.image` jointly with `matching_loss` on random (image, caption) pairs.

    Deterministic from the encoder's seed: batches come from a torch.Generator seeded with it. Returns the mean loss
    of the last 100 steps and the top-1 image->text retrieval accuracy within those batches."""
    o = encoder.options
    g = torch.Generator().manual_seed(o["seed"])
    captions, offsets = dataset.caption_texts, dataset.caption_offsets.long()
    params = list(encoder.text.parameters()) + list(encoder.image.parameters())
    opt = torch.optim.Adam(params, lr=o["lr"], betas=(0.5, 0.999))
    modality = dataset.info.modality
    encoder.train()
    losses, hits = [], []
    for _ in range(o["steps"]):
        idx = torch.randint(0, len(dataset), (o["batch_size"],), generator=g)
        lo, hi = offsets[idx], offsets[idx + 1]
        rows = lo + (torch.rand(len(idx), generator=g, dtype=torch.float64) * (hi - lo)).long().clamp(max=hi - lo - 1)
        texts = [captions[int(r)] for r in rows]
        x = modality.to_model(dataset.get_batch(idx)[0])
        same = torch.tensor([[a == b for b in texts] for a in texts])
        v, e = encoder.image(x), encoder.text(texts).sentence
        loss = matching_loss(v, e, o["gamma"], same)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        with torch.no_grad():
            sim = F.normalize(v, dim=1) @ F.normalize(e, dim=1).t()
            best = sim.argmax(dim=1)
            hits.append(float(same[torch.arange(len(idx)), best].double().mean()))
    encoder.eval()
    tail = slice(-100, None)
    return {"loss": sum(losses[tail]) / max(1, len(losses[tail])),
            "batch_retrieval": sum(hits[tail]) / max(1, len(hits[tail]))}
