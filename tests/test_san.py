"""SAN (Takida et al. 2024): the normalized head's gradient isolation and its direction objective."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ganforge.conditioning.base import DOutput
from ganforge.conditioning.d_san import SANDirection, SANHead
from ganforge.errors import GanforgeError


def test_direction_has_unit_norm_and_the_output_is_scale_times_the_projection():
    head = SANHead(in_features=5)
    omega, s = head.direction(None)
    assert omega.norm(dim=1).item() == pytest.approx(1.0)
    h = torch.randn(3, 5)
    out = head(h)
    torch.testing.assert_close(out.adv, (h @ omega[0]) * s)
    torch.testing.assert_close(out.san_dir, out.adv)  # same value, different gradients


def test_gradient_isolation_the_loss_never_moves_omega_and_the_direction_term_never_moves_h():
    head = SANHead(in_features=4)
    h = torch.randn(6, 4, requires_grad=True)
    head(h).adv.sum().backward()  # function part: dL_fun / d omega = 0
    assert head.w.grad is None or head.w.grad.abs().max() == 0
    assert h.grad.abs().max() > 0 and head.scale.grad.abs().max() > 0
    head.zero_grad()
    h.grad = None
    head(h).san_dir.sum().backward()  # direction part: dL_dir / dh = 0, the scale is not trained by it either
    assert h.grad is None or h.grad.abs().max() == 0
    assert head.w.grad.abs().max() > 0 and (head.scale.grad is None or head.scale.grad.abs().max() == 0)


def test_direction_objective_is_minus_mean_real_plus_mean_fake():
    term = SANDirection(weight=2.0)
    ctx = SimpleNamespace(d_real=DOutput(adv=torch.zeros(2), san_dir=torch.tensor([2.0, 4.0])),
                          d_fake=DOutput(adv=torch.zeros(2), san_dir=torch.tensor([-1.0, 0.0])))
    assert term.d_terms(ctx)["san_dir"].item() == pytest.approx(2.0 * (-0.5 - 3.0))
    assert term.g_terms(ctx) == {}


def test_class_conditional_head_reads_the_row_of_each_label():
    head = SANHead(in_features=3, num_classes=4)
    with torch.no_grad():
        head.w.copy_(torch.tensor([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0], [1.0, 1.0, 0]]))
    h = torch.tensor([[1.0, 2.0, 3.0]] * 4)
    out = head(h, torch.tensor([0, 1, 2, 3]))
    torch.testing.assert_close(out.adv, torch.tensor([1.0, 2.0, 3.0, 3.0 / 2 ** 0.5]))
    with pytest.raises(GanforgeError, match="needs labels"):
        head(h)


def test_an_ascent_step_on_the_direction_objective_turns_omega_towards_the_mean_feature_gap():
    head = SANHead(in_features=2)
    with torch.no_grad():
        head.w.copy_(torch.tensor([[0.0, 1.0]]))
    real, fake = torch.tensor([[3.0, 0.0]] * 4), torch.tensor([[-3.0, 0.0]] * 4)
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    for _ in range(50):
        ctx = SimpleNamespace(d_real=head(real), d_fake=head(fake))
        opt.zero_grad()
        SANDirection(1.0).d_terms(ctx)["san_dir"].backward()
        opt.step()
    omega, _ = head.direction(None)
    assert omega[0, 0].item() > 0.99  # the separating direction: real - fake along e_1
