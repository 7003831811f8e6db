"""train.compile: G and D compiled in place train like the eager modules, keep their parameter names, and the terms
that differentiate twice (R1 here) run through `nn.compiled.eager`."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ganforge.config import from_dict
from ganforge.nn.compiled import eager
from ganforge.training.distributed import DistInfo
from ganforge.training.trainer import Trainer

RAW = {"seed": 0, "data": {"name": "digits", "resolution": 8},
       "model": {"name": "dcgan", "g_ch": 8, "d_ch": 8, "z_dim": 8},
       "regularizers": [{"name": "r1", "gamma": 1.0}],  # a double-backward term in every D step
       "train": {"batch_size": 8, "tensorboard": False, "threads": 1}}


def _trained(tmp_path, compile_: bool, steps: int = 3) -> Trainer:
    raw = {**RAW, "train": {**RAW["train"], "compile": compile_}}
    tr = Trainer(from_dict(raw), tmp_path / f"run-{compile_}", progress=False, dist=DistInfo(),
                 device=torch.device("cpu"))
    for _ in range(steps):
        tr.train_step()
    return tr


def test_compiled_run_with_r1_matches_the_eager_run_and_keeps_parameter_names(tmp_path):
    plain, compiled = _trained(tmp_path, False), _trained(tmp_path, True)
    assert compiled.G._compiled_call_impl is not None and compiled.D._compiled_call_impl is not None
    assert plain.G._compiled_call_impl is None
    for a, b in ((plain.G, compiled.G), (plain.D, compiled.D), (plain.G_ema, compiled.G_ema)):
        sa, sb = a.state_dict(), b.state_dict()
        assert list(sa) == list(sb)  # checkpoints and exports unchanged by compiling
        for k in sa:
            assert torch.allclose(sa[k].float(), sb[k].float(), atol=1e-5, rtol=1e-4), k
    moved = max((p - q).abs().max().item() for p, q in
                zip(compiled.G.parameters(), _trained(tmp_path / "fresh", True, steps=0).G.parameters()))
    assert moved > 0  # the compiled G did train


def test_eager_switches_compiled_modules_off_inside_and_back_on_after_an_error():
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    net[0].compile()
    net.compile()
    impls = {id(m): m._compiled_call_impl for m in (net, net[0])}
    with pytest.raises(RuntimeError, match="inside"):
        with eager(net, None):
            assert net._compiled_call_impl is None and net[0]._compiled_call_impl is None
            x = torch.randn(5, 3, requires_grad=True)
            (g,) = torch.autograd.grad(net(x).sum(), x, create_graph=True)
            g.square().sum().backward()  # double backward through the uncompiled forward
            assert net[2].weight.grad.abs().sum() > 0
            raise RuntimeError("inside")
    assert all(m._compiled_call_impl is impls[id(m)] for m in (net, net[0]))
