"""MH-GAN: the Crammer-Singer multi-hinge loss over K classes + "fake" and the `mh` D head (K+1 scores)."""
from __future__ import annotations

import copy

import pytest
import torch

from helpers import TINY_DIGITS

from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.objectives.base import Context
from ganforge.objectives.multi_hinge import crammer_singer
from ganforge.registries import D_HEADS, LOSSES

SCORES = [2.0, 1.0, 0.0]  # K = 2 real classes and "fake" (index 2)


def scores(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows)


def test_crammer_singer_on_known_scores():
    # label 0: relu(1 + max(1, 0) - 2) = 0; label 1: relu(1 + max(2, 0) - 1) = 2; label 2: relu(1 + 2 - 0) = 3
    for label, expected in ((0, 0.0), (1, 2.0), (2, 3.0)):
        assert crammer_singer(scores(SCORES), torch.tensor([label])).item() == pytest.approx(expected)
    assert crammer_singer(scores(SCORES, SCORES), torch.tensor([0, 1])).item() == pytest.approx(1.0)  # batch mean


def test_d_loss_targets_the_fake_class_on_fakes():
    loss = LOSSES.build("multi-hinge")
    real = scores(SCORES)  # scored as its class 0 by a margin of 1: no loss
    assert loss.d_loss(real, torch.tensor([0]), scores([0.0, 0.0, 3.0])).item() == pytest.approx(0.0)  # fake: class 2
    # the same class-0-looking scores as a fake: target K = 2, relu(1 + 2 - 0) = 3
    assert loss.d_loss(real, torch.tensor([0]), scores(SCORES)).item() == pytest.approx(3.0)


def test_g_loss_is_weighted_hinge_toward_the_sampled_class():
    assert LOSSES.build("multi-hinge").g_loss(scores(SCORES), torch.tensor([1])).item() == pytest.approx(0.05 * 2)
    loss = LOSSES.build("multi-hinge", {"g_weight": 1.0})
    assert loss.g_loss(scores(SCORES), torch.tensor([0])).item() == pytest.approx(0.0)


def identity_mh_head(num_classes: int = 2):
    """The `mh` head with an identity scoring layer: its K+1 scores are the features."""
    head = D_HEADS.build("mh", {"sn": False}, in_features=num_classes + 1, num_classes=num_classes)
    with torch.no_grad():
        head.scores.weight.copy_(torch.eye(num_classes + 1))
        head.scores.bias.zero_()
    return head


def test_head_adv_is_class_score_minus_fake_score():
    out = identity_mh_head()(scores(SCORES, SCORES), torch.tensor([0, 1]))
    assert out.adv.tolist() == pytest.approx([2.0 - 0.0, 1.0 - 0.0])
    torch.testing.assert_close(out.mh_logits, scores(SCORES, SCORES))


def test_loss_through_the_head_and_context():
    head = identity_mh_head()
    real, fake = scores(SCORES, [0.0, 3.0, 1.0]), scores(SCORES, [0.0, 0.0, 5.0])
    y_real, y_fake = torch.tensor([0, 1]), torch.tensor([1, 0])
    ctx = Context(G=lambda z, _y: z, D=lambda x, y: head(x, y), real=real, y_real=y_real, z=fake, y_fake=y_fake)
    loss = LOSSES.build("multi-hinge")
    # reals: [0, relu(1 + 1 - 3) = 0]; fakes toward class 2: [relu(1 + 2 - 0) = 3, relu(1 + 0 - 5) = 0]
    assert loss.d_terms(ctx)["d_loss"].item() == pytest.approx(0.0 + 1.5)
    ctx.phase = "G"
    ctx.reset()
    # G: fake 1 toward class 1: relu(1 + 2 - 1) = 2; fake 2 toward class 0: relu(1 + 5 - 0) = 6; mean 4, x 0.05
    assert loss.g_terms(ctx)["g_loss"].item() == pytest.approx(0.05 * 4.0)


def test_d_gradient_raises_the_true_class_and_lowers_the_runner_up():
    o = scores([1.0, 1.5, 0.0]).requires_grad_(True)  # label 0, margin violated by class 1
    (grad,) = torch.autograd.grad(crammer_singer(o, torch.tensor([0])), o)
    assert grad.tolist() == [[-1.0, 1.0, 0.0]]


def test_declarations():
    entry = LOSSES.get("multi-hinge")
    assert entry.declares("uses_labels") and entry.declares("requires") == {"mh_logits"}
    assert entry.declares("decomposable", True)  # a batch mean of per-sample hinges
    assert "mh_logits" in D_HEADS.get("mh").declares("provides") and D_HEADS.get("mh").declares("uses_labels")


def _digits(head: str, loss: dict) -> dict:
    raw = copy.deepcopy(TINY_DIGITS)
    raw["conditioning"]["d"] = {"name": head}
    raw["loss"] = loss
    return raw


def test_multi_hinge_needs_the_mh_head_at_config_time():
    with pytest.raises(GanforgeError, match="mh_logits") as err:
        from_dict(_digits("projection", {"name": "multi-hinge"}))
    assert "\n" not in str(err.value) and "projection" in str(err.value)
    assert from_dict(_digits("mh", {"name": "multi-hinge"})).loss.name == "multi-hinge"


def test_topk_refuses_a_multi_hinge_base():
    with pytest.raises(GanforgeError, match="loss.base") as err:
        LOSSES.build("topk", {"base": "multi-hinge"})
    assert "\n" not in str(err.value) and "multi-hinge" in str(err.value)


def test_errors():
    with pytest.raises(GanforgeError, match="conditioning.d 'mh'.*num_classes"):
        D_HEADS.build("mh", {}, in_features=4, num_classes=0)
    with pytest.raises(GanforgeError, match="conditioning.d 'mh'.*labels"):
        D_HEADS.build("mh", {}, in_features=4, num_classes=3)(torch.randn(2, 4), None)
    with pytest.raises(GanforgeError, match="loss.g_weight"):
        LOSSES.build("multi-hinge", {"g_weight": -1.0})
