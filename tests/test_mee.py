"""MEE (Liu et al., AAAI 2023): the nearest-neighbour entropy and its FIFO code buffers, DLLE and DIsoMap against
hand computations (METHODS.md §2 "MEE"), gradients per phase, the lambda_e ramp, state, options and training."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from torch import nn

from helpers import TINY_DIGITS, last_state
from toy_nets import ScaleG

from ganforge.conditioning.base import DOutput
from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.objectives import Context
from ganforge.objectives.base import StepInfo
from ganforge.objectives.mee import flip_hw, nearest_sq_distance, push_fifo
from ganforge.registries import REGULARIZERS
from ganforge.training.rng import SampleRNG


class FeatD(nn.Module):
    """A D whose penultimate features are h = fn(x.flatten(1) @ A) (A a parameter); adv = sum_k h_k."""

    def __init__(self, n_in: int, fn=lambda u: u, A: torch.Tensor | None = None):
        super().__init__()
        self.A = nn.Parameter(torch.eye(n_in) if A is None else A)
        self.fn = fn

    def forward(self, x, y=None):
        h = self.fn(x.flatten(1) @ self.A)
        return DOutput(adv=h.sum(1), h=h)


def mee(feature_dim: int, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None, n: int = 0,
        **options):
    """The registered term (dataset of `n` images), its code head set to t = weight h + bias (identity, 0 default)."""
    term = REGULARIZERS.build("mee", options, feature_dim=feature_dim, dataset_size=n)
    n = term.real_codes.shape[1]
    with torch.no_grad():
        term.code.weight.copy_(torch.eye(n, feature_dim) if weight is None else weight)
        term.code.bias.copy_(torch.zeros(n) if bias is None else bias)
    return term


def ctx_of(D, real, fake=None, phase="D", G=None, nimg=0, **kw) -> Context:
    fake = real.clone() if fake is None else fake
    return Context(G=G or ScaleG(), D=D, real=real, y_real=None, z=fake, y_fake=None, phase=phase,
                   info=StepInfo(nimg=nimg), **kw)


ONLY_ENTROPY = {"dlle_weight": 0.0, "isomap_weight": 0.0, "ramp_epochs": 0.0, "entropy_weight": 1.0}


# ----------------------------------------------------------------------------------------------- entropy estimate
def test_methods_value_buffer_zero_and_code_one_give_d_one_and_no_entropy_loss():
    assert nearest_sq_distance(torch.tensor([[1.0, 1.0]]), torch.zeros(1, 2)).tolist() == [1.0]
    term = mee(2, outcomes=2, buffer_size=1, bias=torch.ones(2), weight=torch.zeros(2, 2), **ONLY_ENTROPY)
    term.real_codes.zero_()
    out = term.d_terms(ctx_of(FeatD(2), torch.randn(1, 2)))
    assert set(out) == {"mee_entropy"} and out["mee_entropy"].item() == 0.0  # -log(1)
    with torch.no_grad():
        term.code.bias.copy_(torch.tensor([3.0, 1.0]))  # the buffer now holds [1, 1]: d = (4 + 0) / 2 = 2
    assert term.d_terms(ctx_of(FeatD(2), torch.randn(1, 2)))["mee_entropy"].item() == pytest.approx(-math.log(2))


def test_each_code_is_compared_with_its_nearest_entry_in_the_whole_buffer():
    buffer = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    codes = torch.tensor([[0.8, 0.0], [0.0, 2.5]], requires_grad=True)
    d = nearest_sq_distance(codes, buffer)  # mean_k: [0.64/2, 1.44/2, 9.64/2] and [6.25/2, 10.25/2, 0.25/2]
    torch.testing.assert_close(d, torch.tensor([0.32, 0.125]))
    d.mean().backward()  # only the nearest entry counts: d(mean d)/dt_i = (t_i - b_nn(i)) / (N B) * 2
    torch.testing.assert_close(codes.grad, torch.tensor([[0.4, 0.0], [0.0, -0.25]]))
    term = mee(2, outcomes=2, buffer_size=3, **{**ONLY_ENTROPY, "entropy_weight": 0.5})
    term.real_codes.copy_(buffer)
    out = term.d_terms(ctx_of(FeatD(2), codes.detach()))["mee_entropy"]
    assert out.item() == pytest.approx(-0.5 * math.log((0.32 + 0.125) / 2), rel=1e-6)


def test_the_mean_distance_is_over_the_global_batch_and_every_rank_pushes_all_codes():
    # This rank holds code [1, 0]; the other rank's code is [0, 2] (d = 2 against a zero buffer).
    term = mee(2, outcomes=2, buffer_size=4, **ONLY_ENTROPY)
    term.real_codes.zero_()
    ctx = ctx_of(FeatD(2), torch.tensor([[1.0, 0.0]]))
    other = {1: torch.tensor([2.0]), 2: torch.tensor([[0.0, 2.0]])}  # gathered distances (B,), codes (B, N)
    ctx.all_gather = lambda t: torch.cat([t, other[t.dim()]])
    out = term.d_terms(ctx)["mee_entropy"]
    assert out.item() == pytest.approx(-math.log((0.5 + 2.0) / 2), rel=1e-6)
    torch.testing.assert_close(term.real_codes, torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]))


# ------------------------------------------------------------------------------------------------------- buffers
def test_push_drops_the_oldest_codes_and_keeps_the_size():
    buffer = torch.arange(5.0).view(5, 1)
    torch.testing.assert_close(push_fifo(buffer, torch.tensor([[5.0], [6.0]])), torch.tensor([[2.0], [3.0], [4.0],
                                                                                              [5.0], [6.0]]))
    torch.testing.assert_close(push_fifo(buffer, torch.arange(10.0, 17.0).view(7, 1)), torch.arange(12.0, 17.0)
                               .view(5, 1))  # a batch larger than the buffer: its newest codes


def test_buffers_keep_exactly_buffer_size_codes_in_fifo_order_over_many_steps():
    term = mee(2, outcomes=2, buffer_size=5, ramp_epochs=0.0)  # the reference's cat(B[batch:], ...) would shrink
    fake_before = term.fake_codes.clone()
    pushed = []
    for step in range(10):
        real = torch.randn(2, 2)
        term.d_terms(ctx_of(FeatD(2), real, torch.randn(2, 2)))  # identity D and head: the codes are the reals
        pushed.append(real)
        assert term.real_codes.shape == (5, 2)
    torch.testing.assert_close(term.real_codes, torch.cat(pushed)[-5:])
    assert torch.equal(term.fake_codes, fake_before)  # D phases leave the generated codes' buffer alone
    z = torch.randn(3, 2)
    g_out = term.g_terms(ctx_of(FeatD(2), torch.randn(3, 2), z, phase="G", G=ScaleG(2.0)))["mee_entropy_g"]
    d = nearest_sq_distance(2.0 * z, fake_before)  # G phase: -lambda_e log(mean NN distance of G's codes)
    assert g_out.item() == pytest.approx(-5e-4 * math.log(d.mean().item()), rel=1e-5)
    torch.testing.assert_close(term.fake_codes, torch.cat([fake_before[3:], 2.0 * z]))


def test_buffers_start_uniform_in_minus_one_one_from_a_fixed_seed():
    a, b = REGULARIZERS.build("mee", feature_dim=3), REGULARIZERS.build("mee", feature_dim=3)
    assert a.real_codes.shape == a.fake_codes.shape == (4096, 16)
    assert torch.equal(a.real_codes, b.real_codes) and torch.equal(a.fake_codes, b.fake_codes)  # same on every rank
    assert not torch.equal(a.real_codes, a.fake_codes)
    assert a.real_codes.min() >= -1 and a.real_codes.max() < 1 and abs(a.real_codes.mean().item()) < 0.02


# -------------------------------------------------------------------------------------------------- DLLE, DIsoMap
def test_t_flips_each_image_along_h_or_w():
    x = torch.arange(6.0).view(1, 1, 2, 3).repeat(64, 1, 1, 1)
    out = flip_hw(x, SampleRNG(("k",), slice(0, 64), 64))
    along_h = (out == x.flip(2)).flatten(1).all(1)
    along_w = (out == x.flip(3)).flatten(1).all(1)
    assert (along_h ^ along_w).all() and 10 < along_h.sum() < 54


def test_dlle_is_the_mse_between_codes_of_x_and_the_constant_codes_of_t_x():
    torch.manual_seed(0)
    D = FeatD(6, fn=torch.square, A=torch.randn(6, 6))  # a nonlinear D, not flip-invariant
    W, b = torch.randn(2, 6), torch.randn(2)
    term = mee(6, W, b, outcomes=2)
    x = torch.randn(3, 1, 2, 3)
    ctx = ctx_of(D, x)
    torch.manual_seed(1)  # a Context without rng_key draws from torch's global RNG: replay the draws by hand
    got = term.dlle(ctx, x, None, term.codes(D(x)))
    torch.manual_seed(1)
    along_h = torch.rand(3, 1, 1, 1) < 0.5
    tx = torch.where(along_h, x.flip(2), x.flip(3)) + 0.001 * torch.randn(3, 1, 2, 3)
    t = lambda v: (v.flatten(1) @ D.A).square() @ W.T + b  # noqa: E731
    target = t(tx).detach()
    assert got.item() == pytest.approx((t(x) - target).pow(2).mean().item(), rel=1e-5)
    got.backward()  # gradient only through t(x): the target is sg t(T x)
    (want,) = torch.autograd.grad((t(x) - target).pow(2).mean(), D.A)
    torch.testing.assert_close(D.A.grad, want)
    invariant = FeatD(6, fn=lambda u: u.sum(1, keepdim=True), A=torch.ones(6, 6))  # sum of pixels: flip-invariant
    quiet = mee(1, outcomes=1, aug_noise=0.0)
    assert quiet.dlle(ctx_of(invariant, x), x, None, quiet.codes(invariant(x))).item() == pytest.approx(0, abs=1e-10)


def test_disomap_target_interpolates_codes_with_alpha_from_a_standard_normal():
    torch.manual_seed(0)
    D = FeatD(4, fn=torch.square, A=torch.randn(4, 4))
    W, b = torch.randn(3, 4), torch.randn(3)
    term = mee(4, W, b, outcomes=3)
    real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    ctx = ctx_of(D, real, fake, G=ScaleG(1.0))
    t = lambda v: (v.flatten(1) @ D.A).square() @ W.T + b  # noqa: E731
    torch.manual_seed(2)
    got = term.isomap(ctx, t(real), t(fake))
    torch.manual_seed(2)
    alpha, eps = torch.randn(5, 1), torch.randn(5, 3)  # N(0, 1): alpha leaves [0, 1] on purpose
    a = alpha.view(5, 1, 1, 1)
    m = alpha * t(real) + (1 - alpha) * t(fake) + 0.05 * eps
    assert got.item() == pytest.approx((t(a * real + (1 - a) * fake) - m).pow(2).mean().item(), rel=1e-5)
    # An affine D maps the interpolation path to the interpolated codes: without target noise L_iso = 0.
    affine, flat = FeatD(4, A=torch.randn(4, 4)), mee(4, W, b, outcomes=3, target_noise=0.0)
    codes = lambda v: flat.codes(affine(v))  # noqa: E731
    assert flat.isomap(ctx_of(affine, real, fake), codes(real), codes(fake)).item() == pytest.approx(0, abs=1e-10)


# ---------------------------------------------------------------------------------------------------- gradients
def test_d_phase_trains_d_and_the_code_head_and_g_phase_trains_g_only():
    torch.manual_seed(0)
    term = mee(4, torch.randn(16, 4), torch.randn(16), ramp_epochs=0.0, entropy_weight=1.0)
    D, G = FeatD(4, fn=torch.tanh, A=torch.randn(4, 4)), ScaleG(1.5)
    out = term.d_terms(ctx_of(D, torch.randn(6, 4), torch.randn(6, 4), G=G))
    assert set(out) == {"mee_dlle", "mee_isomap", "mee_entropy"}
    sum(out.values()).backward()
    assert D.A.grad.abs().sum() > 0 and term.code.weight.grad.abs().sum() > 0 and G.w.grad is None
    D.A.grad = None
    term.code.zero_grad(set_to_none=True)
    out = term.g_terms(ctx_of(D, torch.randn(6, 4), torch.randn(6, 4), phase="G", G=G))
    out["mee_entropy_g"].backward()
    assert G.w.grad.abs() > 0 and D.A.grad is None and term.code.weight.grad is None
    assert D.A.requires_grad and term.code.weight.requires_grad  # unfrozen again afterwards


def test_lambda_ramps_linearly_over_ramp_epochs_of_images():
    term = mee(2, outcomes=2, entropy_weight=0.5, ramp_epochs=10.0, n=100)  # one epoch = 100 images
    assert [term.entropy_lambda(n) for n in (0, 250, 500, 1000, 10**6)] == pytest.approx([0, 0.125, 0.25, 0.5, 0.5])
    assert mee(2, outcomes=2, entropy_weight=0.5, ramp_epochs=0.0, n=100).entropy_lambda(0) == 0.5
    real = torch.randn(4, 2)
    values = []
    for nimg in (250, 500):
        ramped = mee(2, outcomes=2, entropy_weight=0.5, ramp_epochs=10.0, n=100, dlle_weight=0.0, isomap_weight=0.0)
        values.append(ramped.d_terms(ctx_of(FeatD(2), real, nimg=nimg))["mee_entropy"].item())
    assert values[1] == pytest.approx(2 * values[0], rel=1e-6) and values[0] != 0


# ----------------------------------------------------------------------------------------------- state, options
def test_state_dict_round_trip_restores_buffers_and_code_head():
    torch.manual_seed(0)
    term = mee(4, torch.randn(16, 4), torch.randn(16), buffer_size=8)
    D = FeatD(4, fn=torch.tanh, A=torch.randn(4, 4))
    for _ in range(3):
        term.d_terms(ctx_of(D, torch.randn(3, 4)))
        term.g_terms(ctx_of(D, torch.randn(3, 4), phase="G"))
    state = term.state_dict()
    assert {"real_codes", "fake_codes", "code.weight", "code.bias"} == set(state)
    fresh = mee(4, buffer_size=8)
    assert not torch.equal(fresh.real_codes, term.real_codes)
    fresh.load_state_dict(state)
    real = torch.randn(3, 4)
    a, b = term.d_terms(ctx_of(D, real, rng_key=("k",))), fresh.d_terms(ctx_of(D, real, rng_key=("k",)))
    assert all(torch.equal(a[k], b[k]) for k in a) and torch.equal(term.real_codes, fresh.real_codes)


@pytest.mark.parametrize("options, message", [
    ({"outcomes": 0}, "mee.outcomes: expected an integer >= 1, got int 0"),
    ({"buffer_size": 0}, "mee.buffer_size: expected an integer >= 1, got int 0"),
    ({"entropy_weight": -1}, "mee.entropy_weight: expected a number >= 0, got -1.0"),
    ({"ramp_epochs": -2}, "mee.ramp_epochs: expected a number >= 0, got -2.0"),
    ({"dlle_weight": -1}, "mee.dlle_weight: expected a number >= 0"),
    ({"isomap_weight": -1}, "mee.isomap_weight: expected a number >= 0"),
    ({"aug_noise": -0.1}, "mee.aug_noise: expected a number >= 0"),
    ({"target_noise": -0.1}, "mee.target_noise: expected a number >= 0"),
])
def test_bad_options_are_one_line_errors_naming_the_key(options, message):
    with pytest.raises(GanforgeError) as e:
        REGULARIZERS.build("mee", options, feature_dim=4)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_gradient_accumulation_is_refused():
    raw = copy.deepcopy(TINY_DIGITS)
    raw["regularizers"] = [{"name": "mee"}]
    raw["train"]["accumulate"] = 2
    with pytest.raises(GanforgeError, match="regularizers.0: 'mee' is computed over the whole batch"):
        from_dict(raw)


# ------------------------------------------------------------------------------------------------------ training
def digits_run(steps: int) -> dict:
    raw = copy.deepcopy(TINY_DIGITS)
    raw["loss"] = {"name": "wasserstein"}  # with MEE, the reference's L_MaF on D's logit
    raw["regularizers"] = [{"name": "mee", "ramp_epochs": 0.0, "entropy_weight": 0.1, "buffer_size": 64}]
    raw["train"].update(steps=steps, ckpt_every=3)
    return raw


def test_training_logs_finite_mee_terms_and_checkpoints_the_fifo_buffers(tmp_path):
    from ganforge.training.trainer import train

    train(from_dict(digits_run(3)), tmp_path / "run", progress=False)
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [e for e in events if e["event"] == "train"]
    assert len(logged) == 3
    for e in logged:
        for key in ("mee_dlle", "mee_isomap", "mee_entropy", "mee_entropy_g"):
            assert math.isfinite(e[key]), key
    state = last_state(tmp_path / "run")["terms"]["regularizers.0:mee"]
    init = REGULARIZERS.build("mee", {"buffer_size": 64}, feature_dim=4)
    for name in ("real_codes", "fake_codes"):  # 3 steps x 16 codes pushed: the 16 newest initial rows remain first
        assert state[name].shape == (64, 16)
        assert torch.equal(state[name][:16], getattr(init, name)[48:])
        assert not torch.isclose(state[name][16:], getattr(init, name)[16:]).any()
    assert state["code.weight"].shape[0] == 16


def test_resume_is_bit_exact(tmp_path):
    from ganforge.training.trainer import train

    train(from_dict(digits_run(6)), tmp_path / "straight", progress=False)
    train(from_dict(digits_run(3)), tmp_path / "resumed", progress=False)
    train(from_dict(digits_run(6)), tmp_path / "resumed", progress=False)
    a, b = last_state(tmp_path / "straight"), last_state(tmp_path / "resumed")
    assert a["step"] == b["step"] == 6
    for key in ("G", "D"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    mine, theirs = a["terms"]["regularizers.0:mee"], b["terms"]["regularizers.0:mee"]
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
