"""Training building blocks: EMA formula, loader sharding, lazy-phase Adam rescaling, atomic checkpoints."""
import copy
import os

import pytest
import torch
from torch import nn

from ganforge.data.base import DataInfo, ImageModality, TensorDataset
from ganforge.objectives.base import ObjectiveTerm
from ganforge.training.checkpoint import atomic_save, list_checkpoints, load_latest, save_checkpoint
from ganforge.training.ema import ema_beta, update_ema
from ganforge.training.loader import BatchStream
from ganforge.training.phases import build_phases, lazy_ratio, make_optimizer


def test_ema_update_formula_and_start():
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    G_ema = copy.deepcopy(G)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p))
        G[1].running_mean.fill_(0.7)
    before = [p.clone() for p in G_ema.parameters()]
    update_ema(G_ema, G, decay=0.9, step=5, start=0)
    for b, p_ema, p in zip(before, G_ema.parameters(), G.parameters()):
        torch.testing.assert_close(p_ema, 0.9 * b + 0.1 * p)
    assert torch.equal(G_ema[1].running_mean, G[1].running_mean)  # buffers copied
    update_ema(G_ema, G, decay=0.9, step=1, start=10)  # before start: copy
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        assert torch.equal(p_ema, p)


def test_ema_warmup_follows_num_updates_rule():
    assert ema_beta(0.999, 0, warmup=True) == pytest.approx(1 / 10)
    assert ema_beta(0.999, 90, warmup=True) == pytest.approx(91 / 100)
    assert ema_beta(0.999, 10**6, warmup=True) == 0.999
    assert ema_beta(0.999, 5, start=10, warmup=True) == 0.0  # before start: copy
    assert ema_beta(0.999, 10, start=10, warmup=True) == pytest.approx(1 / 10)  # warm-up counts from start
    assert ema_beta(0.999, 3, warmup=False) == 0.999


def _dataset(n=10):
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1)
    return TensorDataset(x, torch.arange(n), DataInfo((1, 1, 1), n, ImageModality()), "t")


def test_loader_covers_each_epoch_once_and_is_stateless():
    s = BatchStream(_dataset(10), global_batch=4, seed=3)
    seen = torch.cat([s.global_indices(i) for i in range(5)])  # 20 samples = 2 epochs
    assert sorted(seen[:10].tolist()) == list(range(10)) and sorted(seen[10:].tolist()) == list(range(10))
    fresh = BatchStream(_dataset(10), global_batch=4, seed=3)
    assert torch.equal(fresh.global_indices(3), s.global_indices(3))  # a pure function of the index
    assert not torch.equal(BatchStream(_dataset(10), 4, seed=4).global_indices(0), s.global_indices(0))


def test_ranks_partition_the_global_batch():
    ds = _dataset(13)
    single = BatchStream(ds, 6, seed=0).batch(2)[1]
    parts = [BatchStream(ds, 6, seed=0, rank=r, world=3).batch(2)[1] for r in range(3)]
    assert torch.equal(torch.cat(parts), single)


class _Lazy(ObjectiveTerm):
    def __init__(self, every):
        self.every = every

    def d_terms(self, ctx):
        return {}


class _Main(ObjectiveTerm):
    def d_terms(self, ctx):
        return {}

    def g_terms(self, ctx):
        return {}


def test_phases_and_lazy_adam_rescaling():
    phases = build_phases([_Main(), _Lazy(16), _Lazy(4)])
    assert [(p.name, p.net, p.every) for p in phases] == [("Dmain", "D", 1), ("Dreg4", "D", 4),
                                                          ("Dreg16", "D", 16), ("Gmain", "G", 1)]
    assert lazy_ratio(build_phases([_Main(), _Lazy(16)]), "D") == pytest.approx(16 / 17)  # StyleGAN2's mb_ratio
    assert lazy_ratio(phases, "G") == 1.0
    opt = make_optimizer([nn.Parameter(torch.zeros(1))], 0.002, (0.0, 0.99), 1e-8, 16 / 17)
    assert opt.defaults["lr"] == pytest.approx(0.002 * 16 / 17)
    assert opt.defaults["betas"][1] == pytest.approx(0.99 ** (16 / 17))


def test_checkpoints_are_atomic_keep_last_k_and_skip_corrupt(tmp_path):
    for step in (1, 2, 3, 4):
        save_checkpoint({"step": step, "G": {"w": torch.full((2,), float(step))}}, tmp_path, step, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00000003.pt", "ckpt-00000004.pt"]
    assert not [p for p in os.listdir(tmp_path) if "tmp" in p]
    state, path = load_latest(tmp_path)
    assert state["step"] == 4
    path.write_bytes(path.read_bytes()[:50])  # a torn newest file
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        state, _ = load_latest(tmp_path)
    assert state["step"] == 3


def test_atomic_save_leaves_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "ckpt-00000001.pt"
    atomic_save({"step": 1, "G": {}}, target)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(Exception):
        atomic_save({"step": 2, "G": {}, "x": Boom()}, target)
    assert torch.load(target, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt-00000001.pt"]


def test_image_grids_enlarge_small_tiles_without_changing_pixels():
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    grid = ImageModality().render(x, nrow=2)
    tile = grid[2:66, 2:66]  # first tile after the 2-px border: 16 px enlarged 4x
    expected = ImageModality().from_model(x)[0].permute(1, 2, 0).numpy()
    assert (tile[::4, ::4] == expected).all() and (tile[3::4, 3::4] == expected).all()
    assert grid.shape == (2 * 66 + 2, 2 * 66 + 2, 3)
