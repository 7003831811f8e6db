"""AdaptiveMix (METHODS.md §2): the -1 hand value, the mixed logit, the stop-gradient on the target, per-sample lambda
that no sharding changes, which network each side trains, option errors, and a tiny training run that resumes bit for
bit."""
from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import TINY_DIGITS, last_state

from ganforge.conditioning.base import DHead, DOutput
from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.models.base import DBackbone, Discriminator
from ganforge.objectives import Context
from ganforge.objectives.adaptive_mix import AdaptiveMixD, mix_weights
from ganforge.objectives.base import StepInfo
from ganforge.registries import REGULARIZERS
from ganforge.training.rng import SampleRNG

W = torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, 1.0], [2.0, 0.5, -1.0], [-1.0, 0.0, 3.0]])  # (4 inputs, 3 features)
V, B0 = torch.tensor([0.5, -1.0, 2.0]), 0.25  # head: h . V + B0


class Trunk(DBackbone):
    """f(x) = x W (linear) or tanh(x W), with the Linear as its only tap."""

    feature_dim = 3

    def __init__(self, tanh: bool = False):
        super().__init__()
        self.lin = nn.Linear(4, 3, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(W.T)
        self.tanh = tanh

    def features(self, x):
        h = self.lin(x.flatten(1))
        return torch.tanh(h) if self.tanh else h

    def taps(self):
        return {"lin": self.lin}


class LinearHead(DHead):
    def __init__(self):
        super().__init__()
        self.v, self.b = nn.Parameter(V.clone()), nn.Parameter(torch.tensor(B0))

    def forward(self, h, y=None):
        return DOutput(h @ self.v + self.b)


class IdentityG(nn.Module):
    def forward(self, z, y=None):
        return z


class LinearG(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(3, 4)

    def forward(self, z, y=None):
        return self.net(z)


def disc(tanh: bool = False) -> Discriminator:
    return Discriminator(Trunk(tanh), LinearHead())


def f_of(x, tanh):
    h = x @ W
    return torch.tanh(h) if tanh else h


def wrapped(D, real, fake=None, phase="D", options=None, G=None, **kw):
    """A Context over `real` / `fake` whose D the term's prepare hook has wrapped; returns (term, ctx)."""
    term = REGULARIZERS.build("adaptive-mix", options or {})
    fake = real.clone() if fake is None else fake
    ctx = Context(G=IdentityG() if G is None else G, D=D, real=real, y_real=None, z=fake, y_fake=None,
                  phase=phase, **kw)
    term.prepare(ctx)
    assert isinstance(ctx.D, AdaptiveMixD)
    return term, ctx


# ------------------------------------------------------------------------------------------------------ hand values
def test_identical_rows_without_noise_and_a_linear_trunk_give_minus_one():
    x = torch.tensor([[0.3, -1.0, 2.0, 0.5]]).repeat(6, 1)  # x_a = x_b: x~ = x_a, f(x~) = m
    term, ctx = wrapped(disc(), x, options={"noise_std": 0.0, "weight": 0.5})
    torch.testing.assert_close(ctx.d_real.adaptive_mix, torch.full((6,), -1.0))
    assert term.d_terms(ctx)["adaptive_mix"].item() == pytest.approx(0.5 * (-1 - 1), abs=1e-6)


@pytest.mark.parametrize("tanh", [False, True])
def test_the_logit_is_head_of_the_mixed_features_plus_head_of_the_mixed_input(tanh):
    torch.manual_seed(0)
    x = torch.randn(5, 4)  # odd batch: rows (0, 1), (2, 3) are partners, row 4 is its own
    _, ctx = wrapped(disc(tanh), x)
    out = ctx.d_real
    lam = out.adaptive_mix_lambda[:, None]  # (5, 1)
    partner = x[[1, 0, 3, 2, 4]]
    mixed_features = lam * f_of(x, tanh) + (1 - lam) * f_of(partner, tanh)
    mixed_input = lam * x + (1 - lam) * partner
    expected = (mixed_features @ V + B0) + (f_of(mixed_input, tanh) @ V + B0)
    torch.testing.assert_close(out.adv, expected)
    if not tanh:  # a linear trunk maps the mixed input to the mixed features: both heads agree
        torch.testing.assert_close(out.adv, 2 * (f_of(mixed_input, tanh) @ V + B0))
    # Row 4 has no partner: mixed with itself, whatever lambda is.
    assert out.adv[4].item() == pytest.approx(2 * (f_of(x[4:], tanh) @ V + B0).item(), rel=1e-5)


def test_the_shrinkage_loss_does_not_differentiate_through_its_target():
    torch.manual_seed(1)
    x = torch.randn(4, 4)
    D = disc(tanh=True)
    _, ctx = wrapped(D, x, options={"noise_std": 0.0})
    loss = ctx.d_real.adaptive_mix
    lam = ctx.d_real.adaptive_mix_lambda[:, None].detach()
    got = torch.autograd.grad(loss.mean(), D.backbone.lin.weight)[0]

    def by_hand(stop_gradient: bool):
        f = D.backbone.features
        target = lam * f(x) + (1 - lam) * f(x[[1, 0, 3, 2]])
        target = target.detach() if stop_gradient else target
        value = -F.cosine_similarity(f(lam * x + (1 - lam) * x[[1, 0, 3, 2]]), target, dim=1)
        return value, torch.autograd.grad(value.mean(), D.backbone.lin.weight)[0]

    value, expected = by_hand(stop_gradient=True)
    torch.testing.assert_close(loss, value)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, by_hand(stop_gradient=False)[1], atol=1e-4)  # the test can tell the two apart


def test_noise_perturbs_the_target_by_noise_std():
    x = torch.tensor([[0.3, -1.0, 2.0, 0.5]]).repeat(4000, 1)  # f(x~) = f(x_a): only the noise tilts the target
    _, ctx = wrapped(disc(), x, options={"noise_std": 0.05})
    f = x[:1] @ W  # (1, 3), |f| ~ 2.7
    # For small noise, 1 - cos = |noise_perp|^2 / (2 |f|^2): mean (F - 1) sigma^2 / (2 |f|^2) with F = 3 features.
    expected = (3 - 1) * 0.05 ** 2 / (2 * f.pow(2).sum().item())
    assert (1 + ctx.d_real.adaptive_mix).mean().item() == pytest.approx(expected, rel=0.1)


# ---------------------------------------------------------------------------------------------- per-sample lambda
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_lambda_is_beta_alpha_alpha_per_sample(alpha):
    lam = mix_weights(SampleRNG(("beta",), slice(0, 40000), 40000), 40000, alpha)
    assert lam.min() >= 0 and lam.max() <= 1
    assert lam.mean().item() == pytest.approx(0.5, abs=0.01)
    assert lam.var().item() == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.05)  # Beta(a, a) variance


def test_a_row_gets_the_same_lambda_noise_and_partner_in_any_shard():
    torch.manual_seed(2)
    x, fake = torch.randn(8, 4), torch.randn(8, 4)
    key, info = ("seed", "phase", "Dmain", 3), StepInfo(batch_size=8)

    def run(rows: slice):
        _, ctx = wrapped(disc(tanh=True), x[rows], fake[rows], rows=rows, rng_key=key, info=info)
        real, fake_out = ctx.d_real, ctx.d_fake
        return [real.adv, real.adaptive_mix, real.adaptive_mix_lambda, fake_out.adaptive_mix_lambda]

    whole = run(slice(0, 8))
    lam = whole[2]
    assert lam.min() >= 0 and lam.max() <= 1 and len(set(lam.tolist())) == 8  # per sample, not one scalar
    assert not torch.equal(whole[3], lam)  # reals and fakes draw separately
    for cuts in ([0, 4, 8], [0, 2, 4, 6, 8], [0, 6, 8]):
        parts = [run(slice(a, b)) for a, b in zip(cuts, cuts[1:])]
        for i, full in enumerate(whole):
            torch.testing.assert_close(torch.cat([p[i] for p in parts]), full)
    with pytest.raises(GanforgeError, match=r"adaptive-mix: .*rows 0\.\.2.*splits a pair.*train.accumulate"):
        run(slice(0, 3))


# --------------------------------------------------------------------------------------------- which net it trains
def test_d_terms_reach_only_d_and_g_terms_only_g():
    torch.manual_seed(3)
    for phase, method in (("D", "d_terms"), ("G", "g_terms")):
        D, G = disc(tanh=True), LinearG()
        z = torch.randn(6, 3)
        term, ctx = wrapped(D, torch.randn(6, 4), z, phase=phase, G=G)
        out = getattr(term, method)(ctx)
        assert set(out) == {"adaptive_mix" if phase == "D" else "adaptive_mix_g"}
        out_value = sum(out.values())
        out_value.backward()
        mine, other = (D, G) if phase == "D" else (G, D)
        assert all(p.grad is None or not p.grad.abs().sum() for p in other.parameters())
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in mine.parameters())
        assert all(p.requires_grad for p in D.parameters())  # the G phase's freeze is undone afterwards


def test_features_and_h_are_those_of_the_unmixed_batch():
    torch.manual_seed(4)
    x = torch.randn(4, 4)
    D = disc(tanh=True)
    plain = D(x, features=True)
    _, ctx = wrapped(D, x, want_features=True)
    torch.testing.assert_close(ctx.d_real.features["lin"], plain.features["lin"])
    torch.testing.assert_close(ctx.d_real.h, plain.h)
    assert not torch.allclose(ctx.d_real.adv, plain.adv)


def test_under_bf16_autocast_the_cosine_is_float32():
    torch.manual_seed(5)
    x = torch.randn(4, 4)
    key = {"rng_key": ("k",), "rows": slice(0, 4)}
    _, ctx = wrapped(disc(tanh=True), x, **key)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, low = wrapped(disc(tanh=True), x, **key)
        shrink = low.d_real.adaptive_mix
    assert shrink.dtype == torch.float32 and torch.isfinite(shrink).all()
    torch.testing.assert_close(shrink, ctx.d_real.adaptive_mix, atol=0.03, rtol=0)


# ----------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("options, key", [({"weight": -1.0}, "adaptive-mix.weight"),
                                          ({"alpha": 0.0}, "adaptive-mix.alpha"),
                                          ({"alpha": -2.0}, "adaptive-mix.alpha"),
                                          ({"noise_std": -0.1}, "adaptive-mix.noise_std")])
def test_bad_options_are_one_line_errors_naming_the_key(options, key):
    with pytest.raises(GanforgeError) as info:
        REGULARIZERS.build("adaptive-mix", options)
    assert str(info.value).startswith(f"{key}: expected a number") and "\n" not in str(info.value)


def test_a_d_without_backbone_and_head_or_an_unwrapped_d_is_refused():
    class Plain(nn.Module):
        def forward(self, x, y=None):
            return DOutput(x.sum(1), h=x)

    term = REGULARIZERS.build("adaptive-mix")
    ctx = Context(G=IdentityG(), D=Plain(), real=torch.randn(2, 4), y_real=None, z=torch.randn(2, 4), y_fake=None)
    with pytest.raises(GanforgeError, match="adaptive-mix: needs a Discriminator"):
        term.prepare(ctx)
    with pytest.raises(GanforgeError, match="adaptive-mix: .*prepare"):
        term.d_terms(ctx)


# ------------------------------------------------------------------------------------------------------ training
def _train(tmp_path, name: str, steps: int, g_cond: str = "cbn", **train_opts) -> dict:
    from ganforge.training.trainer import train

    raw = copy.deepcopy(TINY_DIGITS)
    raw["conditioning"]["g"] = {"name": g_cond}
    raw["regularizers"] = [{"name": "adaptive-mix"}]
    raw["train"].update(steps=steps, **train_opts)
    train(from_dict(raw), tmp_path / name, progress=False)
    return last_state(tmp_path / name)


def test_training_logs_the_term_and_resumes_bit_for_bit(tmp_path):
    straight = _train(tmp_path, "straight", 6)
    _train(tmp_path, "resumed", 3)
    resumed = _train(tmp_path, "resumed", 6)
    events = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    train_events = [e for e in events if e["event"] == "train"]
    assert len(train_events) == 6
    for e in train_events:
        assert -2 <= e["adaptive_mix"] <= 2 and -1 <= e["adaptive_mix_g"] <= 1
        assert all(isinstance(v, float) and v == v and abs(v) < 1e6 for k, v in e.items() if k.endswith("loss"))
    assert straight["step"] == resumed["step"] == 6
    for key in ("G", "D", "G_ema"):
        assert all(torch.equal(straight[key][k], resumed[key][k]) for k in straight[key]), key
    for opt in ("opt_G", "opt_D"):
        for i, s in straight[opt]["state"].items():
            assert all(torch.equal(s[k], resumed[opt]["state"][i][k]) for k in s), opt


def test_gradient_accumulation_matches_one_batch(tmp_path):
    # concat conditioning: G without batch norm, whose statistics would differ per micro-batch
    one = _train(tmp_path, "one", 2, g_cond="concat", ckpt_every=2)
    two = _train(tmp_path, "two", 2, g_cond="concat", ckpt_every=2, accumulate=2)  # rows 0..7, 8..15: no split pair
    for key in ("G", "D"):
        for k in one[key]:
            torch.testing.assert_close(two[key][k], one[key][k], rtol=1e-4, atol=1e-5, msg=f"{key}.{k}")
