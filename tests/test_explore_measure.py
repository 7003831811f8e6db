"""The attribute-change measurement of unsupervised directions (explore/measure.py), on a G whose images are a
known function of z, so the change per unit step is a hand value."""
from __future__ import annotations

import pytest
import torch

from ganforge.explore.measure import direction_effects
from ganforge.models.base import Generator


class FillG(Generator):
    """Every pixel of the 1x4x4 image is z_0 / 4 (model space), so its brightness moves with z_0 only."""

    z_dim, num_classes, img_shape, text_dim = 2, 0, (1, 4, 4), 0

    def forward(self, z, y=None):
        return (z[:, :1] / 4).reshape(-1, 1, 1, 1).expand(-1, 1, 4, 4)


class Brightness(torch.nn.Module):
    """A one-score 'classifier': the mean of the [0, 1] image, i.e. (z_0 / 4 + 1) / 2."""

    def forward(self, x):
        return x.mean(dim=(1, 2, 3))


def test_change_per_unit_step_is_the_hand_value_along_each_axis_and_random_directions_fall_between():
    out = direction_effects(FillG(), torch.tensor([[1.0, 0.0], [0.0, 3.0]]), "z", "module", n=16, seed=0,
                            device="cpu", distance=0.5, random=6, module=Brightness(), attributes={"bright": 1})
    first, second = (d["change"]["bright"] for d in out["directions"])
    assert first == pytest.approx(1 / 8, rel=1e-5)  # d(score)/d(z_0) = 1/4 * 1/2; a clamp at [0, 1] is not reached
    assert second == pytest.approx(0.0, abs=1e-7)  # the second direction (normalised) leaves z_0 alone
    r = out["random"]["bright"]
    assert 0 < r["mean"] < 1 / 8 and r["std"] > 0  # |cos| of a random direction to e_1, times 1/8
    assert out["best_change_mean"] == pytest.approx((1 / 8 + 0) / 2, rel=1e-5)
    assert 0 < out["random_best_change_mean"] < 1 / 8


def test_user_networks_come_from_a_module_or_a_factory_path_with_one_line_errors():
    from ganforge.errors import GanforgeError
    from ganforge.explore.base import user_network

    net = user_network("torch.nn:Identity", "where", "cpu")  # the factory is called with no arguments
    assert isinstance(net, torch.nn.Identity) and not net.training
    with pytest.raises(GanforgeError, match="where: expected 'package.module:function', got 'torch.nn'"):
        user_network("torch.nn", "where", "cpu")
    with pytest.raises(GanforgeError, match="where: cannot import 'no_such_mod:f'"):
        user_network("no_such_mod:f", "where", "cpu")
    with pytest.raises(GanforgeError, match="where: expected an nn.Module, got int"):
        user_network(3, "where", "cpu")
