"""Auxiliary-classifier D heads (`ac`, `ac-mod`, `tac`, `adc`) and the loss terms they bring.

Each loss is checked on a D whose backbone is the identity (h = x), so the classifier logits are set by hand through
the head's weights: zero weights give uniform logits (CE = ln K), a scaled identity puts a known logit on a known
column. The defining properties: AC trains its classifier on fakes, ACGAN-Mod does not; TAC's G term vanishes exactly
when C and its twin agree (and only then); ADC's real class y is column 2y and fake class y column 2y + 1.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.objectives import Context
from ganforge.registries import D_HEADS, load_all
from ganforge.training.distributed import DistInfo
from ganforge.training.trainer import Trainer
from toy_nets import ScaleG

load_all()

HEADS = ["ac", "ac-mod", "tac", "adc"]
# which loss values each head's term logs (D step, then G step)
TERM_NAMES = {"ac": ({"ac_real", "ac_fake"}, {"ac_g"}), "ac-mod": ({"ac_real"}, {"ac_g"}),
              "tac": ({"tac_real", "tac_fake"}, {"tac_g"}), "adc": ({"adc_real", "adc_fake"}, {"adc_g"})}


class HeadOnlyD(nn.Module):
    """D whose backbone is the identity: D(x, y) = head(h=x, y)."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, x, y=None):
        return self.head(x, y)


def make_head(name: str, K: int = 2, F: int = 4, **options):
    torch.manual_seed(0)
    return D_HEADS.build(name, {"sn": False, **options}, in_features=F, num_classes=K)


def context(head, real, y_real, fake, y_fake, phase: str = "D") -> Context:
    """One micro-batch: G is the identity on z (so the fakes are `fake`), D is the head on h = x."""
    return Context(G=ScaleG(1.0), D=HeadOnlyD(head), real=real, y_real=y_real, z=fake, y_fake=y_fake, phase=phase)


def term_of(head):
    (term,) = head.terms()
    return term


def zero_weights(*layers: nn.Linear) -> None:
    with torch.no_grad():
        for layer in layers:
            layer.weight.zero_()


def set_weights(layer: nn.Linear, w: torch.Tensor) -> None:
    with torch.no_grad():
        layer.weight.copy_(w)


def batch(B: int = 4, F: int = 4, K: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, F, generator=g), torch.arange(B) % K, torch.randn(B, F, generator=g),
            (torch.arange(B) + 1) % K)


# ------------------------------------------------------------------------------------------------------ hand values
@pytest.mark.parametrize("name", ["ac", "ac-mod"])
def test_ac_zero_logits_give_ln2_times_weight(name):
    head = make_head(name, weight=0.5, g_weight=2.0)
    zero_weights(head.classifier)
    real, yr, fake, yf = batch()
    d = term_of(head).d_terms(context(head, real, yr, fake, yf, "D"))
    g = term_of(head).g_terms(context(head, real, yr, fake, yf, "G"))
    assert d["ac_real"].item() == pytest.approx(0.5 * math.log(2), abs=1e-6)  # 0.5 * 0.6931
    assert ("ac_fake" in d) == (name == "ac")
    if name == "ac":
        assert d["ac_fake"].item() == pytest.approx(0.5 * math.log(2), abs=1e-6)
    assert g["ac_g"].item() == pytest.approx(2.0 * math.log(2), abs=1e-6)


def test_ac_default_weights_are_one():
    head = make_head("ac")
    assert head.weight == 1.0 and head.g_weight == 1.0
    zero_weights(head.classifier)
    real, yr, fake, yf = batch()
    d = term_of(head).d_terms(context(head, real, yr, fake, yf))
    assert d["ac_real"].item() == pytest.approx(0.6931, abs=1e-4)


def test_ac_d_loss_depends_on_fakes_ac_mod_does_not():
    real, yr, fake, yf = batch()
    other = fake + 3.0  # a different fake batch
    for name, depends in (("ac", True), ("ac-mod", False)):
        head = make_head(name)
        term = term_of(head)
        a = sum(term.d_terms(context(head, real, yr, fake, yf)).values())
        b = sum(term.d_terms(context(head, real, yr, other, yf)).values())
        assert (not torch.allclose(a, b)) == depends, name


def test_adc_zero_logits():
    """K = 2 (a 4-way head), zero logits: D aux = w (ln 4 + ln 4) = 2.7726 w; G aux = w_g (ln 4 - ln 4) = 0."""
    head = make_head("adc", weight=0.5)
    zero_weights(head.classifier)
    real, yr, fake, yf = batch()
    d = term_of(head).d_terms(context(head, real, yr, fake, yf, "D"))
    g = term_of(head).g_terms(context(head, real, yr, fake, yf, "G"))
    assert sum(d.values()).item() == pytest.approx(0.5 * 2.7726, abs=1e-4)
    assert d["adc_real"].item() == pytest.approx(0.5 * math.log(4), abs=1e-6)
    assert g["adc_g"].item() == 0.0


def test_adc_label_mapping_real_2y_fake_2y_plus_1():
    """C_d = 5 I (4 x 4), h one-hot: a real of class y placed on column 2y and a fake of class y on column 2y + 1.

    Each is then classified right: CE = log(e^5 + 3) - 5 = log(1 + 3 e^-5). G's term on a fake sitting on column
    2y + 1: CE(., 2y) - CE(., 2y + 1) = log(e^5 + 3) - (log(e^5 + 3) - 5) = 5.
    """
    head = make_head("adc", weight=1.0, g_weight=0.5)
    set_weights(head.classifier, 5.0 * torch.eye(4))
    eye = torch.eye(4)
    yr, yf = torch.tensor([0, 1]), torch.tensor([1, 0])
    real, fake = eye[2 * yr], eye[2 * yf + 1]  # real class 0 -> col 0, class 1 -> col 2; fake 1 -> col 3, 0 -> col 1
    term = term_of(head)
    d = term.d_terms(context(head, real, yr, fake, yf, "D"))
    right = math.log(1 + 3 * math.exp(-5))
    assert d["adc_real"].item() == pytest.approx(right, abs=1e-6)
    assert d["adc_fake"].item() == pytest.approx(right, abs=1e-6)
    g = term.g_terms(context(head, real, yr, fake, yf, "G"))
    assert g["adc_g"].item() == pytest.approx(0.5 * 5.0, abs=1e-5)
    # the swapped placement (reals on 2y + 1) is classified wrong: CE = log(e^5 + 3) = 5.0201
    d_wrong = term.d_terms(context(head, eye[2 * yr + 1], yr, fake, yf, "D"))
    assert d_wrong["adc_real"].item() == pytest.approx(math.log(math.exp(5) + 3), abs=1e-5)


def test_tac_identical_classifiers_cancel_in_g_only():
    """C = C_mi: G's aux CE(C) - CE(C_mi) is exactly 0, D's (CE of C on reals + CE of C_mi on fakes) is not."""
    head = make_head("tac")
    set_weights(head.twin, head.classifier.weight)
    real, yr, fake, yf = batch()
    term = term_of(head)
    g = term.g_terms(context(head, real, yr, fake, yf, "G"))
    d = term.d_terms(context(head, real, yr, fake, yf, "D"))
    assert g["tac_g"].item() == 0.0
    assert d["tac_real"].item() > 0.0 and d["tac_fake"].item() > 0.0


def test_tac_different_classifiers_do_not_cancel():
    """C = 0 (CE = ln 2); C_mi gives logits (5, 0) to a fake of class 0 at h = e0: CE = log(1 + e^-5).

    G's aux = w_g (ln 2 - log(1 + e^-5)) = 0.6864 w_g, not 0 (StudioGAN's HEAD, whose twin is unused, gives 0).
    """
    head = make_head("tac", weight=1.0, g_weight=2.0)
    zero_weights(head.classifier)
    twin = torch.zeros(2, 4)
    twin[0, 0] = 5.0
    set_weights(head.twin, twin)
    real, yr = torch.eye(4)[:2], torch.tensor([0, 1])
    fake, yf = torch.eye(4)[[0, 0]], torch.tensor([0, 0])
    term = term_of(head)
    g = term.g_terms(context(head, real, yr, fake, yf, "G"))
    assert g["tac_g"].item() == pytest.approx(2.0 * (math.log(2) - math.log(1 + math.exp(-5))), abs=1e-5)
    d = term.d_terms(context(head, real, yr, fake, yf, "D"))
    assert d["tac_real"].item() == pytest.approx(math.log(2), abs=1e-6)  # the main classifier on reals
    assert d["tac_fake"].item() == pytest.approx(math.log(1 + math.exp(-5)), abs=1e-6)  # the twin on fakes


# ------------------------------------------------------------------------------------------------------- gradients
# The layers the fake-side D term must train, and those it must leave alone.
FAKE_SIDE = {"ac": ("ac_fake", ["classifier"], []), "tac": ("tac_fake", ["twin"], ["classifier"]),
             "adc": ("adc_fake", ["classifier"], [])}


@pytest.mark.parametrize("name", sorted(FAKE_SIDE))
def test_fake_side_d_term_trains_the_classifier(name):
    key, trained, untouched = FAKE_SIDE[name]
    head = make_head(name)
    real, yr, fake, yf = batch()
    value = term_of(head).d_terms(context(head, real, yr, fake, yf, "D"))[key]
    layers = [getattr(head, n).weight for n in trained + untouched]
    grads = torch.autograd.grad(value, layers, allow_unused=True)
    for n, g in zip(trained, grads):
        assert g is not None and g.abs().sum() > 0, f"{key} does not train {n}"
    for n, g in zip(untouched, grads[len(trained):]):
        assert g is None or g.abs().sum() == 0, f"{key} trains {n}"


def test_tac_real_side_trains_the_main_classifier_only():
    head = make_head("tac")
    real, yr, fake, yf = batch()
    value = term_of(head).d_terms(context(head, real, yr, fake, yf, "D"))["tac_real"]
    g_main, g_twin = torch.autograd.grad(value, [head.classifier.weight, head.twin.weight], allow_unused=True)
    assert g_main.abs().sum() > 0 and (g_twin is None or g_twin.abs().sum() == 0)


@pytest.mark.parametrize("name", HEADS)
def test_g_term_has_gradient_wrt_fakes(name):
    head = make_head(name)
    real, yr, z, yf = batch()
    ctx = context(head, real, yr, z, yf, "G")
    value = sum(term_of(head).g_terms(ctx).values())
    (g,) = torch.autograd.grad(value, [ctx.fake])
    assert g.abs().sum() > 0


# ---------------------------------------------------------------------------------------------- outputs, options
@pytest.mark.parametrize("name", HEADS)
def test_head_provides_what_its_term_requires(name):
    head = make_head(name, K=3, F=5)
    out = head(torch.randn(2, 5), torch.tensor([0, 2]))
    assert out.adv.shape == (2,)
    assert set(head.provides) == {k for k in out.extras}
    assert term_of(head).requires <= head.provides and term_of(head).uses_labels and head.uses_labels
    width = {"cls_logits": 3, "cls_twin_logits": 3, "adc_logits": 6}
    for key in head.provides:
        assert out.get(key).shape == (2, width[key])


@pytest.mark.parametrize("name", HEADS)
def test_adv_is_psi_of_h(name):
    head = make_head(name)
    h = torch.randn(3, 4)
    expected = h @ head.psi.weight[0] + head.psi.bias[0]
    assert torch.allclose(head(h, torch.tensor([0, 1, 1])).adv, expected, atol=1e-6)


def test_adc_projection_adds_the_inner_product():
    head = make_head("adc", projection=True)
    h, y = torch.randn(3, 4), torch.tensor([1, 0, 1])
    expected = h @ head.psi.weight[0] + head.psi.bias[0] + (head.embed.weight[y] * h).sum(1)
    assert torch.allclose(head(h, y).adv, expected, atol=1e-6)
    assert make_head("adc").embed is None  # the authors' default: no projection


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize("num_classes", [0, 1])
def test_needs_two_classes(name, num_classes):
    with pytest.raises(GanforgeError) as err:
        D_HEADS.build(name, {}, in_features=4, num_classes=num_classes)
    msg = str(err.value)
    assert f"conditioning.d '{name}'" in msg and "num_classes" in msg and "\n" not in msg


@pytest.mark.parametrize("name", HEADS)
def test_needs_labels(name):
    head = make_head(name)
    with pytest.raises(GanforgeError) as err:
        head(torch.randn(2, 4), None)
    msg = str(err.value)
    assert f"conditioning.d '{name}'" in msg and "labels" in msg and "\n" not in msg


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize("key", ["weight", "g_weight"])
def test_negative_weight_is_refused(name, key):
    with pytest.raises(GanforgeError, match=f"conditioning.d '{name}': {key} must be"):
        D_HEADS.build(name, {key: -1}, in_features=4, num_classes=2)


# ----------------------------------------------------------------------------------------------------- end to end
E2E = {
    "seed": 0,
    "data": {"name": "digits", "resolution": 8},
    "model": {"name": "dcgan", "z_dim": 8, "g_ch": 4, "d_ch": 4},
    "conditioning": {"g": {"name": "cbn"}},
    "loss": {"name": "hinge"},
    "train": {"steps": 3, "batch_size": 16, "log_every": 1, "sample_every": 0, "ckpt_every": 0, "mode_every": 0,
              "tensorboard": False, "threads": 1},
}


@pytest.mark.parametrize("name", HEADS)
def test_trains_and_logs_its_terms(name, tmp_path):
    raw = copy.deepcopy(E2E)
    raw["conditioning"]["d"] = {"name": name}
    tr = Trainer(from_dict(raw), tmp_path / "run", progress=False, dist=DistInfo(), device=torch.device("cpu"))
    classifier = tr.D.head.classifier.weight.detach().clone()
    d_names, g_names = TERM_NAMES[name]
    for _ in range(raw["train"]["steps"]):
        logs = tr.train_step()
        assert d_names | g_names <= set(logs), sorted(logs)
        assert all(math.isfinite(v) for v in logs.values())
    assert not torch.equal(classifier, tr.D.head.classifier.weight.detach())  # the D optimizer steps the classifier
