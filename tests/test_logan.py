"""LOGAN latent optimisation (Wu et al. 2019, StudioGAN version): the natural-gradient latent step, its mask, its
differentiability in each phase, the transport cost, and training / resume with it."""
from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from helpers import TINY_POINTS, last_state
from toy_nets import FnD, ScaleG

from ganforge.conditioning.base import DOutput
from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.objectives import Context
from ganforge.objectives.base import StepInfo
from ganforge.registries import REGULARIZERS

DZ = torch.tensor([0.9 * 3 / 25.1, 0.9 * 4 / 25.1])  # alpha g / (beta + ||g||^2) for g = (3, 4): (0.10757, 0.14343)


def linear_d() -> FnD:
    """D(x) = <v, x>, v = (3, 4): g = v for every latent under the identity G."""
    return FnD(lambda m, x: x @ m.p["v"], v=[3.0, 4.0])


def ctx_of(z, phase="D", D=None, G=None, **kw) -> Context:
    return Context(G=G or ScaleG(), D=D or linear_d(), real=torch.zeros_like(z), y_real=None, z=z, y_fake=None,
                   phase=phase, **kw)


def logan(**options):
    return REGULARIZERS.build("logan", options)


def test_one_step_is_the_methods_value_and_the_cost_its_squared_norm():
    z = torch.randn(4, 2)
    term, ctx = logan(rate=1.0), ctx_of(z.clone())
    term.prepare(ctx)
    torch.testing.assert_close(ctx.z - z, DZ.expand(4, 2))  # dz = (0.10757, 0.14343) for every sample
    assert DZ.tolist() == pytest.approx([0.10757, 0.14343], abs=1e-5)
    # C = ||dz||^2 = 0.81 * 25 / 25.1^2 = 0.032142, times the default weight 0.1
    assert term.d_terms(ctx)["logan_cost"].item() == pytest.approx(0.1 * 20.25 / 25.1 ** 2, rel=1e-5)
    torch.testing.assert_close(ctx.fake, ctx.z)  # the phase's fake is G(z') (identity G)


def test_steps_k_performs_k_updates_each_at_the_new_latent():
    quad = lambda: FnD(lambda m, x: -0.5 * x.pow(2).sum(1) * m.p["s"], s=1.0)  # g = -z: depends on z
    z = torch.randn(5, 2)
    D = quad()
    term, ctx = logan(steps=3, rate=1.0, weight=1.0), ctx_of(z.clone(), D=D)
    term.prepare(ctx)
    assert D.calls == 3  # StudioGAN's early `return` would make this 1
    ref = z.clone()
    for _ in range(3):  # the hand loop: z <- z + alpha (-z) / (beta + ||z||^2)
        ref = ref - 0.9 * ref / (0.1 + ref.pow(2).sum(1, keepdim=True))
    torch.testing.assert_close(ctx.z, ref)
    assert term.d_terms(ctx)["logan_cost"].item() == pytest.approx((ref - z).pow(2).sum(1).mean().item(), rel=1e-5)
    lin = linear_d()
    term3, ctx3 = logan(steps=3, rate=1.0), ctx_of(z.clone(), D=lin)
    term3.prepare(ctx3)
    assert lin.calls == 3
    torch.testing.assert_close(ctx3.z - z, 3 * DZ.expand(5, 2))


def test_rate_zero_leaves_z_and_costs_nothing_rate_one_moves_every_sample():
    z = torch.randn(64, 2)
    term, ctx = logan(rate=0.0), ctx_of(z.clone())
    term.prepare(ctx)
    assert torch.equal(ctx.z, z) and term.d_terms(ctx)["logan_cost"].item() == 0.0
    term, ctx = logan(rate=1.0), ctx_of(z.clone())
    term.prepare(ctx)
    assert ((ctx.z - z).abs().sum(1) > 0).all()
    term, ctx = logan(rate=0.5), ctx_of(z.clone())  # a per-sample mask: each row moves by dz or not at all
    term.prepare(ctx)
    moved = (ctx.z - z).abs().sum(1) > 0
    torch.testing.assert_close((ctx.z - z)[moved], DZ.expand(int(moved.sum()), 2))
    assert 0 < moved.sum() < 64
    expected = 0.1 * moved.float().mean().item() * DZ.pow(2).sum().item()  # unmoved samples count, with cost 0
    assert term.d_terms(ctx)["logan_cost"].item() == pytest.approx(expected, rel=1e-5)


def test_masks_are_the_same_for_a_sample_in_any_micro_batch():
    z = torch.randn(8, 2)
    key = (0, "phase", "Dmain", 3)
    info = StepInfo(batch_size=8)
    whole = ctx_of(z.clone(), rng_key=key, rows=slice(0, 8), info=info)
    logan(rate=0.5).prepare(whole)
    for a, b in ((0, 3), (3, 8)):  # two accumulation rounds (or two ranks) of the same global batch
        part = ctx_of(z[a:b].clone(), rng_key=key, rows=slice(a, b), info=info)
        logan(rate=0.5).prepare(part)
        assert torch.equal(part.z, whole.z[a:b])


def test_clamp_bounds_the_latents():
    term, ctx = logan(rate=1.0, clamp=0.05), ctx_of(torch.zeros(3, 2))
    term.prepare(ctx)
    torch.testing.assert_close(ctx.z, torch.tensor([[0.05, 0.05]]).expand(3, 2))  # dz = (0.108, 0.143) clamped


def test_g_phase_gradient_flows_through_the_latent_step():
    z = torch.randn(6, 2)
    grads = []
    for detach in (False, True):
        G, D = ScaleG(1.0), linear_d().requires_grad_(False)  # D frozen in the G phase, as the phase runner does
        term, ctx = logan(rate=1.0), ctx_of(z.clone(), phase="G", G=G, D=D)
        term.prepare(ctx)
        if detach:
            ctx.z = ctx.z.detach()
            ctx.reset()
        ctx.D_raw(ctx.fake, None).adv.sum().backward()  # the G loss's path: D(G(z'))
        grads.append(G.w.grad.item())
    # D(G(z')) = w <v, z> + alpha w^2 s / (beta + w^2 s) with s = ||v||^2 = 25, so through the step d/dw at w = 1 is
    # <v, z> + 2 alpha s beta / (beta + s)^2; with z' detached it is <v, z'> = <v, z> + alpha s / (beta + s)
    assert grads[0] - grads[1] == pytest.approx(6 * (4.5 / 25.1 ** 2 - 22.5 / 25.1), rel=1e-4)


def test_g_phase_cost_trains_g_and_not_d():
    G, D = ScaleG(1.0), linear_d()  # D left trainable: the step itself must hold it constant
    term, ctx = logan(rate=1.0, weight=1.0), ctx_of(torch.randn(4, 2), phase="G", G=G, D=D)
    term.g_terms(ctx)["logan_cost_g"].backward()  # stand-alone use: the term takes the step itself
    # C(w) = alpha^2 w^2 s / (beta + w^2 s)^2, dC/dw = 2 alpha^2 s w (beta - w^2 s) / (beta + w^2 s)^3
    assert G.w.grad.item() == pytest.approx(2 * 0.81 * 25 * (0.1 - 25) / 25.1 ** 3, rel=1e-4)
    assert D.p["v"].grad is None and D.p["v"].requires_grad


def test_d_phase_cost_trains_d_not_g_and_d_sees_a_constant_fake():
    G, D = ScaleG(1.0), linear_d()
    term, ctx = logan(rate=1.0, weight=1.0), ctx_of(torch.randn(4, 2), G=G, D=D)
    term.prepare(ctx)
    assert not ctx.z.requires_grad and not ctx.fake.requires_grad
    cost = term.d_terms(ctx)["logan_cost"]
    cost.backward()
    # C = alpha^2 ||v||^2 / (beta + ||v||^2)^2; dC/dv = 2 alpha^2 v (beta - ||v||^2) / (beta + ||v||^2)^3
    expected = 2 * 0.81 * torch.tensor([3.0, 4.0]) * (0.1 - 25) / 25.1 ** 3
    torch.testing.assert_close(D.p["v"].grad, expected)
    assert G.w.grad is None


class SmallD(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, x, y=None):
        return DOutput(adv=self.net(x).squeeze(1))


class SmallG(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 4))

    def forward(self, z, y=None):
        return self.net(z)


def test_the_step_runs_in_float32_under_autocast():
    torch.manual_seed(0)
    G, D, z = SmallG(), SmallD(), torch.randn(5, 3)
    plain = ctx_of(z.clone(), G=G, D=D)
    logan(rate=1.0).prepare(plain)
    mixed = ctx_of(z.clone(), G=G, D=D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logan(rate=1.0).prepare(mixed)
    assert mixed.z.dtype == torch.float32 and torch.equal(mixed.z, plain.z)  # bf16 forwards would differ
    assert not torch.equal(mixed.z, z)


@pytest.mark.parametrize("options, key", [
    ({"steps": 0}, "logan.steps"), ({"rate": 1.5}, "logan.rate"), ({"rate": -0.1}, "logan.rate"),
    ({"weight": -1.0}, "logan.weight"), ({"alpha": -0.9}, "logan.alpha"), ({"beta": 0.0}, "logan.beta"),
    ({"clamp": 0.0}, "logan.clamp"),
])
def test_bad_options_give_one_line_errors_naming_the_key(options, key):
    with pytest.raises(GanforgeError, match=key) as info:
        logan(**options)
    assert "\n" not in str(info.value)


def _run(steps: int) -> dict:
    raw = copy.deepcopy(TINY_POINTS)
    raw["regularizers"] = [{"name": "logan"}]
    raw["train"].update(steps=steps, log_every=1, ckpt_every=3)
    return raw


def test_training_logs_a_finite_cost_and_resumes_bit_exactly(tmp_path):
    from ganforge.training.trainer import train

    train(from_dict(_run(6)), tmp_path / "straight", progress=False)
    events = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    logged = [e for e in events if e["event"] == "train"]
    assert [e["step"] for e in logged] == [1, 2, 3, 4, 5, 6]
    for e in logged:
        assert all(torch.isfinite(torch.tensor(e[k])) for k in ("d_loss", "g_loss", "logan_cost", "logan_cost_g"))
        assert e["logan_cost"] > 0 and e["logan_cost_g"] > 0
    train(from_dict(_run(3)), tmp_path / "resumed", progress=False)
    train(from_dict(_run(6)), tmp_path / "resumed", progress=False, allow_config_change=True)
    a, b = last_state(tmp_path / "straight"), last_state(tmp_path / "resumed")
    assert a["step"] == b["step"] == 6
    for net in ("G", "D"):
        assert a[net].keys() == b[net].keys() and all(torch.equal(a[net][k], b[net][k]) for k in a[net]), net


def test_two_accumulation_rounds_train_like_one(tmp_path):
    from safetensors.torch import load_file

    from ganforge.training.trainer import train

    for k in (1, 2):
        raw = _run(4)
        raw["train"].update(accumulate=k, ckpt_every=4)
        train(from_dict(raw), tmp_path / f"acc{k}", progress=False)
    a, b = (load_file(str(tmp_path / f"acc{k}" / "export" / "generator.safetensors")) for k in (1, 2))
    for name in a:  # C is a mean over samples and each step is per sample, so the rounds add up to one batch
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5)
