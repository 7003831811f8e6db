"""What the bundled judge networks (digits classifier, shapes attribute classifier, shapes segmenter) share: a
deterministic training loop (one thread, deterministic algorithms, seeded init and batches, Adam with a one-cycle
learning rate) and a cache of their weights as safetensors whose metadata must match before a file is trusted."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn


@torch.enable_grad()  # callers may sit under no_grad (evaluation during training)
def train_deterministic(make_model: Callable[[], nn.Module], n: int, batch_loss: Callable, *, epochs: int,
                        batch_size: int, lr: float, seed: int) -> nn.Module:
    """A model from `make_model()` (init seeded) trained on `n` items: each epoch a seeded permutation, per batch
    `batch_loss(model, idx, g)` (g: the seeded generator, for augmentation); returns it in eval mode.

    One intra-op thread and deterministic algorithms during training give the same weights on every machine."""
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)  # the same reduction order on every machine
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # weight init
            model = make_model()
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        steps = epochs * ((n + batch_size - 1) // batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(n, generator=g)
            for i in range(0, n, batch_size):
                loss = batch_loss(model, perm[i: i + batch_size], g)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        model.eval()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)
    return model


def load_cached(path: Path, make_model: Callable[[], nn.Module], expected: dict[str, Any],
                restore: Callable[[nn.Module, dict[str, str]], None]) -> nn.Module | None:
    """The cached model, or None when the file is missing, unreadable, non-finite or its metadata differs from
    `expected` (values compared as JSON text for lists / dicts, as str otherwise); `restore(model, meta)` puts the
    stored numbers (held-out accuracy ...) back on it."""
    from safetensors import safe_open

    if not Path(path).is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        for key, want in expected.items():
            got = meta.get(key)
            if (json.loads(got or "null") != want) if isinstance(want, (list, dict)) else got != str(want):
                return None
        model = make_model()
        model.load_state_dict(state, strict=True)
        restore(model, meta)
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            return None
    except Exception:  # any unreadable/corrupt/mismatched file is simply rebuilt
        return None
    return model
