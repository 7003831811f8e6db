"""Adversarial losses and regularizers: each term checked against the formula that defines it."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganforge.conditioning.base import DOutput
from ganforge.errors import GanforgeError
from ganforge.objectives import AdversarialLoss, Context, ObjectiveTerm
from ganforge.models.base import DBackbone, Discriminator
from ganforge.registries import D_HEADS, LOSSES, REGULARIZERS, TEXT_ENCODERS, load_all

load_all()


class FnD(nn.Module):
    """D(x, y) = fn(x) as a DOutput; counts its calls."""

    def __init__(self, fn, params: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self.fn = fn
        self.p = nn.ParameterDict({k: nn.Parameter(v) for k, v in (params or {}).items()})
        self.calls = 0

    def forward(self, x, y=None):
        self.calls += 1
        return DOutput(adv=self.fn(self, x))


class MLPD(nn.Module):
    """A small smooth MLP discriminator on flattened inputs."""

    def __init__(self, n_in: int, hidden: int = 8):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.calls = 0

    def forward(self, x, y=None):
        self.calls += 1
        h = self.net[:3](x)  # penultimate features, as a Discriminator returns them
        return DOutput(self.net[3](h).squeeze(1), h=h)


class MLPBackbone(DBackbone):
    """A small smooth MLP trunk: features(x) = tanh(W x + b)."""

    def __init__(self, n_in: int, hidden: int = 8):
        super().__init__()
        self.feature_dim = hidden
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n_in, hidden), nn.Tanh())

    def features(self, x):
        return self.net(x)


TEXT_DIM = 6  # even: a GRU text encoder splits it between its two directions
TEXT_HEAD = next(n for n in D_HEADS.names() if D_HEADS.get(n).declares("uses_text", False))


def mlp_discriminator(n_in: int, hidden: int = 8, text: bool = False) -> Discriminator:
    """A real Discriminator (trunk + linear head, or a text-conditional head reading (B, TEXT_DIM) sentence
    embeddings), for terms that use D's parts (AdaptiveMix, MA-GP)."""
    head = D_HEADS.build(TEXT_HEAD if text else "linear", {}, in_features=hidden, num_classes=0, d_sn=False,
                         text_dim=TEXT_DIM if text else 0)
    return Discriminator(MLPBackbone(n_in, hidden), head)


class MLPG(nn.Module):
    def __init__(self, z_dim: int, n_out: int):
        super().__init__()
        self.net = nn.Linear(z_dim, n_out)

    def forward(self, z, y=None):
        return self.net(z)


class IdentityG(nn.Module):
    def forward(self, z, y=None):
        return z


def logit_d(_, x):
    return x[:, 0]  # the input's first coordinate *is* the logit


def ctx_with_logits(real: torch.Tensor, fake: torch.Tensor, phase: str) -> Context:
    """A Context whose D returns the given logits: reals/fakes are (B, 1) columns of logits."""
    return Context(G=IdentityG(), D=FnD(logit_d), real=real[:, None], y_real=None, z=fake[:, None], y_fake=None,
                   phase=phase)


def sp(t: float) -> float:
    return math.log1p(math.exp(t))


REAL = [1.0, -2.0, 0.5]
FAKE = [0.5, -1.0, 3.0]


def mean(v):
    return sum(v) / len(v)


EXPECTED = {  # name -> (D loss, G loss) on REAL / FAKE, computed by hand from each paper's formula
    "vanilla": (mean([sp(-r) for r in REAL]) + mean([sp(f) for f in FAKE]), mean([sp(-f) for f in FAKE])),
    "lsgan": (mean([0.5 * (r - 1) ** 2 for r in REAL]) + mean([0.5 * f ** 2 for f in FAKE]),
              mean([0.5 * (f - 1) ** 2 for f in FAKE])),
    "hinge": (mean([max(0, 1 - r) for r in REAL]) + mean([max(0, 1 + f) for f in FAKE]), -mean(FAKE)),
    "wasserstein": (mean(FAKE) - mean(REAL), -mean(FAKE)),
    "relativistic": (mean([sp(f - r) for r, f in zip(REAL, FAKE)]), mean([sp(r - f) for r, f in zip(REAL, FAKE)])),
}


# Losses on one D logit per sample (AdversarialLoss); class-score losses such as multi-hinge have their own tests
PER_LOGIT = [n for n in LOSSES.names() if issubclass(LOSSES.get(n).obj, AdversarialLoss)]


def test_every_loss_has_expected_values():
    assert set(EXPECTED) <= set(LOSSES.names())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loss_values_on_known_logits(name):
    real, fake = torch.tensor(REAL), torch.tensor(FAKE)
    loss = LOSSES.build(name)
    d_expected, g_expected = EXPECTED[name]
    d = loss.d_terms(ctx_with_logits(real, fake, "D"))
    g = loss.g_terms(ctx_with_logits(real, fake, "G"))
    assert set(d) == {"d_loss"} and set(g) == {"g_loss"}
    assert d["d_loss"].item() == pytest.approx(d_expected, rel=1e-5)
    assert g["g_loss"].item() == pytest.approx(g_expected, rel=1e-5)
    assert d["d_loss"].dim() == 0 and g["g_loss"].dim() == 0


def test_lsgan_targets_and_wasserstein_drift():
    real, fake = torch.tensor(REAL), torch.tensor(FAKE)
    ls = LOSSES.build("lsgan", {"real_target": 1, "fake_target": -1, "g_target": 0})
    assert ls.d_loss(real, fake).item() == pytest.approx(
        mean([0.5 * (r - 1) ** 2 for r in REAL]) + mean([0.5 * (f + 1) ** 2 for f in FAKE]), rel=1e-6)
    assert ls.g_loss(fake).item() == pytest.approx(mean([0.5 * f ** 2 for f in FAKE]), rel=1e-6)
    w = LOSSES.build("wasserstein", {"drift": 0.001})
    assert w.d_loss(real, fake).item() == pytest.approx(
        mean(FAKE) - mean(REAL) + 0.001 * mean([r * r for r in REAL]), rel=1e-6)
    with pytest.raises(GanforgeError, match="drift"):
        LOSSES.build("wasserstein", {"drift": -1.0})


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_is_an_objective_term(name):
    loss = LOSSES.build(name)
    assert isinstance(loss, ObjectiveTerm) and loss.every == 1
    # a loss that reads nothing but adv is a per-logit AdversarialLoss (what topk and the samplers rely on)
    assert isinstance(loss, AdversarialLoss) or getattr(loss, "requires", frozenset())


@pytest.mark.parametrize("name", PER_LOGIT)
def test_d_loss_decreases_as_real_logits_rise_and_fake_logits_fall(name):
    loss = LOSSES.build(name)
    fake = torch.tensor([0.2, 0.3])  # above every fake target, so D wants them lower
    low, high = torch.tensor([-0.5, 0.1]), torch.tensor([0.5, 0.6])
    d_low = loss.d_terms(ctx_with_logits(low, fake, "D"))["d_loss"]
    d_high = loss.d_terms(ctx_with_logits(high, fake, "D"))["d_loss"]
    assert d_high < d_low
    # ... and through autograd: dL_D/dD(x_r) < 0, dL_D/dD(x_f) > 0 at these logits.
    r = low.clone().requires_grad_(True)
    f = fake.clone().requires_grad_(True)
    gr, gf = torch.autograd.grad(loss.d_loss(r, f), (r, f))
    assert (gr < 0).all() and (gf > 0).all()


@pytest.mark.parametrize("name", PER_LOGIT)
def test_g_loss_gradient_pushes_fake_logits_up(name):
    loss = LOSSES.build(name)
    z = torch.tensor([[-0.7], [0.2], [0.4]], requires_grad=True)  # G = identity, D = first coordinate: z is the logit
    ctx = Context(G=IdentityG(), D=FnD(logit_d), real=torch.tensor([[0.3], [-0.1], [0.9]]), y_real=None, z=z,
                  y_fake=None, phase="G")
    (grad,) = torch.autograd.grad(loss.g_terms(ctx)["g_loss"], z)
    assert (grad < 0).all()


def test_context_caches_d_real_across_terms():
    torch.manual_seed(0)
    D, G = MLPD(4), MLPG(3, 4)
    ctx = Context(G=G, D=D, real=torch.randn(5, 4), y_real=None, z=torch.randn(5, 3), y_fake=None, phase="D")
    terms = {}
    lecam = REGULARIZERS.build("lecam")
    lecam.update({"d_real": 0.0, "d_fake": 0.0})  # anchors from a previous D step
    for term in (LOSSES.build("vanilla"), lecam):
        terms.update(term.d_terms(ctx))
    assert set(terms) == {"d_loss", "lecam"}
    assert D.calls == 2  # one D(real) and one D(fake), shared by both terms
    _ = (ctx.d_real, ctx.d_fake)
    assert D.calls == 2


@pytest.mark.parametrize("name", PER_LOGIT)
def test_d_phase_fakes_are_detached_and_g_phase_fakes_are_not(name):
    torch.manual_seed(0)
    D, G = MLPD(4), MLPG(3, 4)
    real, z = torch.randn(6, 4), torch.randn(6, 3)
    loss = LOSSES.build(name)
    d = loss.d_terms(Context(G=G, D=D, real=real, y_real=None, z=z, y_fake=None, phase="D"))["d_loss"]
    d.backward()
    assert all(p.grad is None for p in G.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in D.parameters())
    D.zero_grad()
    g = loss.g_terms(Context(G=G, D=D, real=real, y_real=None, z=z, y_fake=None, phase="G"))["g_loss"]
    g.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())


# ---- gradient penalty -------------------------------------------------------------------------------------------

def test_gp_on_linear_d_equals_weight_times_norm_gap():
    torch.manual_seed(0)
    w = torch.randn(2, 3, 4, 4)  # D(x) = <w, x> on (C, H, W) images: grad_x D = w everywhere
    D = FnD(lambda m, x: (x * m.p["w"]).flatten(1).sum(1), {"w": w})
    real, fake = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    ctx = Context(G=IdentityG(), D=D, real=real, y_real=None, z=fake, y_fake=None, phase="D")
    gp = REGULARIZERS.build("gp", {"weight": 10.0})
    out = gp.d_terms(ctx)
    assert set(out) == {"gp"}
    norms = w.flatten(1).norm(dim=1)
    assert out["gp"].item() == pytest.approx(10.0 * ((norms - 1) ** 2).mean().item(), rel=1e-5)
    # The penalty backpropagates into D: d/dw of weight * mean((||w_b|| - 1)^2).
    out["gp"].backward()
    expected = 10.0 * 2 * (norms - 1)[:, None] * w.flatten(1) / norms[:, None] / 2
    torch.testing.assert_close(D.p["w"].grad.flatten(1), expected)
    zero = REGULARIZERS.build("gp", {"weight": 2.0, "center": 0.0}).d_terms(ctx)["gp"]
    assert zero.item() == pytest.approx(2.0 * (norms ** 2).mean().item(), rel=1e-5)


def test_gp_on_quadratic_d_is_taken_at_the_interpolates():
    # D(x) = 0.5 ||x||^2 has grad x; with reals == fakes every interpolate equals the real sample.
    D = FnD(lambda m, x: 0.5 * x.flatten(1).pow(2).sum(1))
    real = torch.tensor([[3.0, 4.0], [0.0, 0.5]])
    ctx = Context(G=IdentityG(), D=D, real=real, y_real=None, z=real.clone(), y_fake=None, phase="D")
    out = REGULARIZERS.build("gp", {"weight": 1.0}).d_terms(ctx)["gp"]
    assert out.item() == pytest.approx(((5.0 - 1) ** 2 + (0.5 - 1) ** 2) / 2, rel=1e-6)
    # With reals != fakes the interpolate is t x_r + (1 - t) x_f with t ~ U(0,1) drawn from the global RNG.
    fake = torch.tensor([[-1.0, 2.0], [1.0, 1.0]])
    ctx = Context(G=IdentityG(), D=D, real=real, y_real=None, z=fake, y_fake=None, phase="D")
    torch.manual_seed(3)
    got = REGULARIZERS.build("gp", {"weight": 1.0}).d_terms(ctx)["gp"]
    torch.manual_seed(3)
    t = torch.rand(2, 1)
    x_hat = t * real + (1 - t) * fake
    assert got.item() == pytest.approx(((x_hat.norm(dim=1) - 1) ** 2).mean().item(), rel=1e-5)


# ---- R1 / R2 ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["r1", "r2"])
def test_r1_r2_equal_half_gamma_squared_input_gradient_norm(name):
    torch.manual_seed(0)
    D, G = MLPD(6), MLPG(3, 6)
    real, z = torch.randn(5, 6), torch.randn(5, 3)
    ctx = Context(G=G, D=D, real=real, y_real=None, z=z, y_fake=None, phase="D")
    term = REGULARIZERS.build(name, {"gamma": 3.0})
    out = term.d_terms(ctx)
    assert set(out) == {name}
    # Independent computation with autograd.
    x = (real if name == "r1" else G(z).detach()).clone().requires_grad_(True)
    (g,) = torch.autograd.grad(D.net(x).sum(), x, create_graph=True)
    expected = 1.5 * g.pow(2).sum(1).mean()
    assert out[name].item() == pytest.approx(expected.item(), rel=1e-5)
    # The penalty reaches D's parameters (create_graph=True) with the same gradient, and never G's.
    params = list(D.parameters())  # D's last bias does not move input gradients: its gradient is zero
    got_grads = torch.autograd.grad(out[name], params, allow_unused=True, materialize_grads=True)
    exp_grads = torch.autograd.grad(expected, params, allow_unused=True, materialize_grads=True)
    for a, b in zip(got_grads, exp_grads):
        torch.testing.assert_close(a, b)
    assert any(a.abs().sum() > 0 for a in got_grads)
    out = term.d_terms(ctx)[name]
    out.backward()
    assert all(p.grad is None for p in G.parameters())


def test_r1_goes_through_the_augmentation_to_the_raw_input():
    torch.manual_seed(0)
    D = MLPD(4)
    real = torch.randn(3, 4)
    ctx = Context(G=IdentityG(), D=D, real=real, y_real=None, z=real, y_fake=None, phase="D", augment=lambda x: 2 * x)
    got = REGULARIZERS.build("r1", {"gamma": 2.0}).d_terms(ctx)["r1"]
    x = real.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(D.net(2 * x).sum(), x)
    assert got.item() == pytest.approx(g.pow(2).sum(1).mean().item(), rel=1e-5)


def test_r1_under_autocast_is_float32_and_finite():
    torch.manual_seed(0)
    D = MLPD(4)
    ctx = Context(G=IdentityG(), D=D, real=torch.randn(4, 4), y_real=None, z=torch.randn(4, 4), y_fake=None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        r1 = REGULARIZERS.build("r1").d_terms(ctx)["r1"]
        gp = REGULARIZERS.build("gp").d_terms(ctx)["gp"]
    assert r1.dtype == torch.float32 and gp.dtype == torch.float32
    assert torch.isfinite(r1) and torch.isfinite(gp)


def test_lazy_every_is_an_option_and_not_applied_by_the_term():
    torch.manual_seed(0)
    D = MLPD(4)
    ctx = Context(G=IdentityG(), D=D, real=torch.randn(4, 4), y_real=None, z=torch.randn(4, 4), y_fake=None)
    eager, lazy = REGULARIZERS.build("r1"), REGULARIZERS.build("r1", {"every": 16})
    assert eager.every == 1 and lazy.every == 16
    assert lazy.d_terms(ctx)["r1"].item() == pytest.approx(eager.d_terms(ctx)["r1"].item(), rel=1e-6)
    assert REGULARIZERS.build("gp", {"every": 4}).every == 4
    for name in ("r1", "gp"):
        with pytest.raises(GanforgeError, match="every"):
            REGULARIZERS.build(name, {"every": 0})


def _style_g():
    """A style-based G (mapping + synthesis) with z_dim 3 and 4 outputs, for terms that need one (path length)."""
    from ganforge.registries import ARCHITECTURES, G_CONDITIONING

    g_cond = G_CONDITIONING.build("none", {}, num_classes=0)
    return ARCHITECTURES.build("style-mlp", {"z_dim": 3, "hidden": 8, "w_dim": 4, "layers": 2, "mapping_layers": 1},
                               img_shape=(4,), num_classes=0, g_cond=g_cond).G


def _image_text_encoder():
    """An untrained encoder of the registry that also embeds (4-d point) samples, frozen as after pretraining."""
    name = next(n for n in TEXT_ENCODERS.names() if hasattr(TEXT_ENCODERS.get(n).obj, "encode_images"))
    enc = TEXT_ENCODERS.build(name, {"dim": TEXT_DIM}, where="text", captions=["a red point"], vocab=None)
    enc.attach_image_encoder((4,))
    return enc.requires_grad_(False)


@pytest.mark.parametrize("name", REGULARIZERS.names())
def test_regularizers_reach_only_the_network_of_their_phase(name):
    """A D-side term is a scalar (>= 0 unless declared `may_be_negative`) whose gradient reaches D only; a G-side term (zCR's, orthogonal reg.) reaches G
    only (zCR's G term is negative by design: it rewards diverse outputs)."""
    from ganforge.training.phases import implements

    torch.manual_seed(0)
    family = REGULARIZERS.get(name).declares("needs_architecture", None)
    if family is not None:  # needs its family's D taps; the same property is checked on that D in test_<family>.py
        pytest.skip(f"{name} reads the {family!r} D's feature maps (tests/test_{family}.py checks where it reaches)")
    text = REGULARIZERS.get(name).declares("uses_text", False)  # reads sentence embeddings (MA-GP)
    context = {"text_dim": TEXT_DIM if text else 0}
    if REGULARIZERS.get(name).accepts("text_encoder"):  # reads the run's encoder itself (DAMSM's image encoder)
        context["text_encoder"] = _image_text_encoder()
    term = REGULARIZERS.build(name, {"one_sided": False} if name == "lecam" else {}, **context)
    assert isinstance(term, ObjectiveTerm) and term.every >= 1
    assert implements(term, "d_terms") or implements(term, "g_terms")
    if hasattr(term, "update"):  # a stateful term gets a previous D step's statistics (names from training/stats.py)
        term.update({"d_real": 0.5, "d_fake": -0.5, "d_real_sign": 0.0, "window_nimg": 5, "nimg": 5})
    style = REGULARIZERS.get(name).declares("needs_style_generator", False)
    for phase, method in (("D", "d_terms"), ("G", "g_terms")):
        D, G = mlp_discriminator(4, text=text), (_style_g() if style else MLPG(3, 4))
        y = torch.randn(6, TEXT_DIM) if text else None
        ctx = Context(G=G, D=D, real=torch.randn(6, 4), y_real=y, z=torch.randn(6, 3), y_fake=y, phase=phase)
        if implements(term, method) and hasattr(term, "prepare"):  # as the phase runner does before the terms
            term.prepare(ctx)
        out = getattr(term, method)(ctx)
        if not implements(term, method):
            assert out == {}
            continue
        if not out and hasattr(term, "after_step"):  # acts on the network after its step instead (weight clipping)
            continue
        assert out, f"{name} implements {method} but returned nothing"
        total = sum(out.values())
        assert total.dim() == 0
        if phase == "D" and not term.may_be_negative:  # penalties are >= 0 (entropy / cosine terms declare not)
            assert all(v.item() >= 0 for v in out.values())
        total.backward()
        mine, other = (D, G) if phase == "D" else (G, D)
        assert all(p.grad is None or not p.grad.abs().sum() for p in other.parameters())
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in mine.parameters())


# ---- LeCam ------------------------------------------------------------------------------------------------------

def test_lecam_anchors_follow_the_ema_and_round_trip_through_state_dict():
    lecam = REGULARIZERS.build("lecam", {"weight": 1.0, "decay": 0.5, "one_sided": False})
    r1, f1 = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.0])
    assert lecam.d_terms(ctx_with_logits(r1, f1, "D")) == {}  # no anchors before the first D step's statistics
    lecam.update({"d_real": 2.0, "d_fake": -0.5})  # the first update sets the anchors to the batch means
    out = lecam.d_terms(ctx_with_logits(r1, f1, "D"))["lecam"]
    # R_LC = mean((r - a_F)^2) + mean((a_R - f)^2), Eq. 3, with a_R = 2.0, a_F = -0.5.
    assert out.item() == pytest.approx(mean([1.5 ** 2, 3.5 ** 2]) + mean([3.0 ** 2, 2.0 ** 2]), rel=1e-6)
    lecam.update({"d_real": 0.0, "d_fake": 1.0})
    state = lecam.state_dict()
    assert state["ema_real"] == pytest.approx(0.5 * 2.0 + 0.5 * 0.0)
    assert state["ema_fake"] == pytest.approx(0.5 * -0.5 + 0.5 * 1.0)
    assert int(state["steps"]) == 2
    delayed = REGULARIZERS.build("lecam", {"decay": 0.5, "start": 3})
    for real_mean in (1.0, 2.0, 4.0, 8.0):  # decay 0 for the first 3 updates, then the EMA
        delayed.update({"d_real": real_mean, "d_fake": 0.0})
    assert delayed.ema_real == pytest.approx(0.5 * 4.0 + 0.5 * 8.0)
    fresh = REGULARIZERS.build("lecam", {"weight": 1.0, "decay": 0.5, "one_sided": False})
    fresh.load_state_dict(state)
    a = lecam.d_terms(ctx_with_logits(r1, f1, "D"))["lecam"]
    b = fresh.d_terms(ctx_with_logits(r1, f1, "D"))["lecam"]
    assert a.item() == pytest.approx(b.item())
    # One-sided (authors' code): reals below the fake anchor and fakes above the real anchor are not penalised.
    one = REGULARIZERS.build("lecam", {"weight": 1.0})
    one.update({"d_real": 2.0, "d_fake": -0.5})
    assert one.d_terms(ctx_with_logits(torch.tensor([-5.0, -3.0]), torch.tensor([3.0, 5.0]), "D"))["lecam"] == 0


def test_bad_options_raise_one_line_errors():
    with pytest.raises(GanforgeError, match="gamma"):
        REGULARIZERS.build("r1", {"gamma": -1.0})
    with pytest.raises(GanforgeError, match="decay"):
        REGULARIZERS.build("lecam", {"decay": 1.0})
    with pytest.raises(GanforgeError, match="unknown option"):
        REGULARIZERS.build("gp", {"lambda": 10.0})


# ---- the per-sample loss interface and the Context ----------------------------------------------------------------

@pytest.mark.parametrize("name", PER_LOGIT)
def test_batch_losses_are_the_reduced_per_sample_losses(name):
    loss = LOSSES.build(name)
    real, fake = torch.tensor(REAL), torch.tensor(FAKE)
    on_real, on_fake = loss.d_per_sample(real, fake)
    assert on_real.shape == on_fake.shape == (3,)
    assert loss.d_loss(real, fake).item() == pytest.approx((on_real.mean() + on_fake.mean()).item(), rel=1e-6)
    g = loss.g_per_sample(fake, real)
    assert g.shape == (3,) and loss.g_loss(fake, real).item() == pytest.approx(g.mean().item(), rel=1e-6)


@pytest.mark.parametrize("name", PER_LOGIT)
def test_the_reduction_hook_lets_a_wrapper_keep_the_top_k_fakes_of_any_loss(name):
    base = type(LOSSES.build(name))

    class TopTwo(base):  # top-k training (Sinha et al. 2020) in miniature: G learns from the 2 best-scored fakes
        def reduce(self, values, role):
            if role == "g":
                self.kept = values.topk(2, largest=False).indices  # lowest G loss = highest D score
                return values[self.kept].mean()
            return values.mean()

    loss = TopTwo()
    fake, real = torch.tensor(FAKE), torch.tensor(REAL)
    per = loss.g_per_sample(fake, real)
    assert loss.g_loss(fake, real).item() == pytest.approx(per.sort().values[:2].mean().item(), rel=1e-6)
    assert loss.d_loss(real, fake).item() == pytest.approx(base().d_loss(real, fake).item(), rel=1e-6)


def test_d_raw_skips_the_augmentation_and_d_of_applies_it():
    D, G = MLPD(4), MLPG(3, 4)
    x = torch.randn(5, 4)
    ctx = Context(G=G, D=D, real=x, y_real=None, z=torch.randn(5, 3), y_fake=None, augment=lambda t: t + 100.0)
    assert torch.equal(ctx.D_raw(x, None).adv, D(x).adv)
    assert torch.equal(ctx.D_of(x, None).adv, D(x + 100.0).adv)
    assert torch.equal(ctx.d_real.adv, D(x + 100.0).adv)  # the cached call is the augmented one
    assert ctx.all_gather(x) is x  # a single process: the batch itself
    ctx.record("anything", x)  # no recorder: a no-op


def test_context_records_statistics_and_draws_per_row_randomness():
    from ganforge.objectives.base import StepInfo
    from ganforge.training.stats import StatsRecorder

    rec = StatsRecorder()
    D, G = MLPD(4), MLPG(3, 4)
    x = torch.randn(8, 4)
    whole = Context(G=G, D=D, real=x, y_real=None, z=torch.randn(8, 3), y_fake=None, info=StepInfo(batch_size=8),
                    rows=slice(0, 8), rng_key=("k",), stats=rec)
    half = Context(G=G, D=D, real=x[4:], y_real=None, z=torch.randn(4, 3), y_fake=None, info=StepInfo(batch_size=8),
                   rows=slice(4, 8), rng_key=("k",))
    assert torch.equal(whole.sample_rng().rand(8)[4:], half.sample_rng().rand(4))  # same rows, same numbers
    assert not torch.equal(whole.sample_rng().rand(8), whole.sample_rng().rand(8))  # each call its own stream
    whole.record("v", torch.tensor([1.0, 2.0]))
    whole.record("v", torch.tensor([3.0]))
    assert rec.reduced(False, torch.device("cpu")) == {"v": (6.0, 3)}
