"""WGAN weight clipping: every D parameter within [-c, c] after each D step; G untouched (METHODS.md §2)."""
import copy

import pytest
import torch

from helpers import TINY_POINTS

from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.registries import REGULARIZERS


def test_weight_clipping_bounds_every_d_parameter_after_each_d_step(tmp_path):
    """METHODS.md: a parameter at 0.5 becomes 0.01 after one step; every D parameter ends within [-c, c]."""
    from ganforge.training.distributed import DistInfo
    from ganforge.training.trainer import Trainer

    raw = copy.deepcopy(TINY_POINTS)
    raw.update(loss={"name": "wasserstein"}, regularizers=[{"name": "clip", "clip": 0.01}])
    raw["train"] = {**raw["train"], "steps": 2}
    tr = Trainer(from_dict(raw), tmp_path / "run", progress=False, dist=DistInfo(), device=torch.device("cpu"))
    first = next(tr.D.parameters())
    with torch.no_grad():
        first.view(-1)[0] = 0.5
    g_before = [p.detach().clone() for p in tr.G.parameters()]
    tr.train_step()
    assert first.view(-1)[0].item() == pytest.approx(0.01)
    assert all(p.abs().max().item() <= 0.01 for p in tr.D.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(g_before, tr.G.parameters()))  # G is not clipped
    assert any(p.abs().max().item() > 0.01 for p in tr.G.parameters())


def test_weight_clipping_needs_a_positive_bound():
    with pytest.raises(GanforgeError, match=r"clip.clip: expected a number > 0, got -1"):
        REGULARIZERS.build("clip", {"clip": -1})

