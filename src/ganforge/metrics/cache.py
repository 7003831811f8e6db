"""On-disk cache of reference features, and saved statistics files.

A cache entry is a safetensors file named by the hash of its key — dataset fingerprint, backbone protocol (name,
weights sha256, resize mode), N and what was kept — with the key stored in its metadata. A file whose metadata does
not match (stale) or that cannot be read (corrupt, torn) is rebuilt. The same format is what `--save-ref` writes
and what `--ref FILE.safetensors` reads; `.npz` files with `mu`/`sigma` (pytorch-fid / clean-fid) are read too.
Files are written through `fileio.save_safetensors`: atomically, and with the umask's permissions (safetensors alone
creates them 0600).
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from ..download import cache_dir
from ..errors import GanforgeError
from ..fileio import save_safetensors
from .base import Features
from .extract import extract_features
from .sources import ImageSource
from .stats import RunningStats

FORMAT = "ganforge-features"
VERSION = 1


def cache_key(source: ImageSource, backbone, needs) -> dict:
    return {"format": FORMAT, "version": VERSION, "data": source.fingerprint, "backbone": backbone.protocol_id(),
            "n": source.n, "keeps": sorted(needs)}


def cache_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir("stats") / f"features-{digest}.safetensors"


def save_features(features: Features, path: str | os.PathLike, key: dict | None = None) -> Path:
    """Write features atomically as safetensors with the key (and n) in the metadata, with umask permissions."""
    tensors: dict[str, torch.Tensor] = {}
    if features.stats is not None:
        tensors.update({f"stats.{k}": v for k, v in features.stats.state_dict().items()})
    for name in ("pool", "logits", "labels"):
        value = getattr(features, name)
        if value is not None:
            tensors[name] = value
    for label, st in (features.class_stats or {}).items():
        tensors.update({f"class.{label}.{k}": v for k, v in st.state_dict().items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "n": str(features.n), "key": json.dumps(key or {}, sort_keys=True)}
    return save_safetensors({k: v.contiguous() for k, v in tensors.items()}, path, metadata=meta)


def load_features(path: str | os.PathLike) -> tuple[Features, dict]:
    """Read a features file; return it with its key. Raises GanforgeError when unreadable."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise GanforgeError(f"{path}: unreadable statistics file ({type(e).__name__}: {e})") from e
    if meta.get("format") != FORMAT:
        raise GanforgeError(f"{path}: not a ganforge statistics file (format={meta.get('format')!r})")
    try:
        stats = None
        if "stats.mean" in tensors:
            stats = RunningStats.from_state({k[6:]: v for k, v in tensors.items() if k.startswith("stats.")})
        class_stats: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith("class."):
                _, label, field = k.split(".")
                class_stats.setdefault(int(label), {})[field] = v
        feats = Features(n=int(meta["n"]), stats=stats, pool=tensors.get("pool"), logits=tensors.get("logits"),
                         labels=tensors.get("labels"),
                         class_stats={c: RunningStats.from_state(s) for c, s in class_stats.items()} or None)
        return feats, json.loads(meta.get("key", "{}"))
    except (KeyError, ValueError, GanforgeError) as e:
        raise GanforgeError(f"{path}: inconsistent statistics file ({e})") from e


def load_stats_file(path: str | os.PathLike) -> Features:
    """A user's saved statistics: ganforge .safetensors, or .npz with mu/sigma (pytorch-fid, clean-fid)."""
    path = Path(path)
    if path.suffix != ".npz":
        return load_features(path)[0]
    try:
        with np.load(path, allow_pickle=False) as data:
            mu, sigma = np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)
            n = int(data["n"]) if "n" in data else 50000
    except (OSError, KeyError, ValueError) as e:
        raise GanforgeError(f"{path}: unreadable statistics file (expected an .npz with 'mu' and 'sigma'; {e})") from e
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise GanforgeError(f"{path}: 'mu' {mu.shape} and 'sigma' {sigma.shape} do not match (expected (F,) and (F, F))")
    state = {"n": torch.tensor(n), "mean": torch.from_numpy(mu), "m2": torch.from_numpy(sigma) * (n - 1)}
    return Features(n=n, stats=RunningStats.from_state(state))


def cached_features(source: ImageSource, backbone, needs, batch_size: int = 100, progress: bool = True,
                    use_cache: bool = True) -> Features:
    """Features of a fixed image set from the cache, or extracted (and cached) when missing, stale or corrupt."""
    if not use_cache or source.fingerprint is None:
        return extract_features(source, backbone, needs, batch_size, progress)
    key = cache_key(source, backbone, needs)
    path = cache_path(key)
    if path.exists():
        try:
            feats, stored = load_features(path)
            if stored == key:
                return feats
            warnings.warn(f"{path}: stale reference cache (key changed); rebuilding", stacklevel=2)
        except GanforgeError as e:
            warnings.warn(f"{e}; rebuilding", stacklevel=2)
    feats = extract_features(source, backbone, needs, batch_size, progress)
    save_features(feats, path, key)
    return feats
