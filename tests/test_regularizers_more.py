"""DRAGAN, MaxGP, CR / bCR / zCR, BigGAN's orthogonal regularization and top-k training, each checked against the
value or property that defines it (hand values from the papers' formulas, METHODS.md §2)."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import TINY_POINTS
from toy_nets import FnD, ScaleG

from ganforge.augment.base import Augment
from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.objectives import Context
from ganforge.objectives.base import StepInfo
from ganforge.objectives.consistency import flip_translate
from ganforge.objectives.topk import topk_k
from ganforge.registries import AUGMENTATIONS, LOSSES, REGULARIZERS
from ganforge.registry import Entry
from ganforge.training.phases import build_phases
from ganforge.training.rng import SampleRNG


def linear_d():
    """D(x) = <w, x> with w = (3, 4): ||grad D|| = 5 everywhere."""
    return FnD(lambda m, x: x @ m.p["w"], w=[3.0, 4.0])


def ctx_of(D, real, fake=None, phase="D", G=None, **kw) -> Context:
    fake = real.clone() if fake is None else fake
    return Context(G=G or ScaleG(), D=D, real=real, y_real=None, z=fake, y_fake=None, phase=phase, **kw)


def points_cfg(**changes) -> dict:
    raw = copy.deepcopy(TINY_POINTS)
    for section, value in changes.items():
        raw[section] = {**raw[section], **value} if isinstance(value, dict) else value
    return raw


# ---- DRAGAN ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("noise", ["one_sided", "two_sided"])
def test_dragan_on_a_linear_d_is_weight_times_norm_gap_squared(noise):
    D = linear_d()
    ctx = ctx_of(D, torch.randn(6, 2))
    term = REGULARIZERS.build("dragan", {"weight": 1.0, "noise": noise})
    out = term.d_terms(ctx)["dragan"]
    assert out.item() == pytest.approx(16.0, rel=1e-6)  # (||(3, 4)|| - 1)^2 at any perturbation
    out.backward()  # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w|| = 8/5 (3, 4)
    torch.testing.assert_close(D.p["w"].grad, torch.tensor([4.8, 6.4]))
    assert REGULARIZERS.build("dragan").d_terms(ctx)["dragan"].item() == pytest.approx(160.0, rel=1e-6)  # lambda 10


@pytest.mark.parametrize("noise", ["one_sided", "two_sided"])
def test_dragan_perturbs_reals_by_a_times_half_the_batch_std_times_u(noise):
    # D(x) = 0.5 ||x||^2 has grad x_hat, so the penalty reveals the perturbed points.
    D = FnD(lambda m, x: 0.5 * x.pow(2).sum(1))
    real = torch.tensor([[0.0, 0.0], [2.0, 2.0]])  # population std of {0, 0, 2, 2} is 1 (the unbiased one 1.155)
    ctx = ctx_of(D, real)
    torch.manual_seed(7)
    got = REGULARIZERS.build("dragan", {"weight": 1.0, "noise": noise}).d_terms(ctx)["dragan"]
    torch.manual_seed(7)
    u, a = torch.rand(2, 2), torch.rand(2, 1)
    u = u if noise == "one_sided" else 2 * u - 1
    x_hat = real + a * 0.5 * 1.0 * u
    assert got.item() == pytest.approx(((x_hat.norm(dim=1) - 1) ** 2).mean().item(), rel=1e-5)
    # Offsets are at most 0.5 std in size; one-sided noise moves every coordinate up (u in [0, 1)).
    term = REGULARIZERS.build("dragan", {"noise": noise})
    many = torch.randn(4000, 2)
    delta = term.perturb(ctx_of(D, many)) - many
    std = many.std(correction=0).item()
    assert delta.abs().max().item() <= 0.5 * std
    assert (delta.min().item() >= 0) == (noise == "one_sided")


def test_dragan_std_is_that_of_the_global_batch():
    # This rank holds [0, 0]; the other rank [2, 2]: the gathered batch's std is 1, this rank's alone 0.
    ctx = ctx_of(FnD(lambda m, x: x.sum(1)), torch.zeros(1, 2))
    ctx.all_gather = lambda t: torch.cat([t, torch.full_like(t, 2.0)])
    torch.manual_seed(3)
    step = REGULARIZERS.build("dragan").perturb(ctx)
    torch.manual_seed(3)
    u, a = torch.rand(1, 2), torch.rand(1, 1)
    torch.testing.assert_close(step, a * 0.5 * 1.0 * u)


def test_dragan_is_batch_level_and_validates_its_options():
    with pytest.raises(GanforgeError, match="regularizers.0: 'dragan' .* set train.accumulate=1"):
        from_dict(points_cfg(regularizers=[{"name": "dragan"}], train={"accumulate": 2}))
    with pytest.raises(GanforgeError, match="noise"):
        REGULARIZERS.build("dragan", {"noise": "gaussian"})
    with pytest.raises(GanforgeError, match="dragan.weight: expected a number >= 0, got -1"):
        REGULARIZERS.build("dragan", {"weight": -1})


# ---- WGAN-GP vs MaxGP -------------------------------------------------------------------------------------------

def test_maxgp_and_gp_on_a_linear_d():
    ctx = ctx_of(linear_d(), torch.randn(5, 2), torch.randn(5, 2))
    assert REGULARIZERS.build("gp", {"weight": 1.0}).d_terms(ctx)["gp"].item() == pytest.approx(16.0, rel=1e-6)
    assert REGULARIZERS.build("maxgp", {"weight": 1.0}).d_terms(ctx)["maxgp"].item() == pytest.approx(25.0, rel=1e-6)
    assert REGULARIZERS.build("maxgp").d_terms(ctx)["maxgp"].item() == pytest.approx(250.0, rel=1e-6)


def test_maxgp_is_the_batch_maximum_and_only_its_sample_gets_gradient():
    # D(x) = 0.5 a ||x||^2: ||grad||^2 = a^2 ||x||^2; with reals == fakes every interpolate is the real sample.
    D = FnD(lambda m, x: 0.5 * m.p["a"] * x.pow(2).sum(1), a=1.0)
    real = torch.tensor([[3.0, 4.0], [0.0, 0.5]])
    out = REGULARIZERS.build("maxgp", {"weight": 1.0}).d_terms(ctx_of(D, real))["maxgp"]
    assert out.item() == pytest.approx(25.0, rel=1e-6)  # max(25, 0.25); the mean would be 12.625
    out.backward()
    assert D.p["a"].grad.item() == pytest.approx(50.0, rel=1e-6)  # d/da a^2 * 25; the mean's would be 25.25
    with pytest.raises(GanforgeError, match="regularizers.0: 'maxgp' .* set train.accumulate=1"):
        from_dict(points_cfg(regularizers=[{"name": "maxgp"}], train={"accumulate": 2}))


# ---- CR and bCR -------------------------------------------------------------------------------------------------

def mean_d():
    """D(x) = a * mean(x) per sample."""
    return FnD(lambda m, x: m.p["a"] * x.flatten(1).mean(1), a=1.0)


def test_cr_is_weight_times_mse_of_d_outputs_and_both_branches_train_d():
    D = mean_d()
    term = REGULARIZERS.build("cr")
    term.transform = lambda x, rng: x + 2.0  # a fixed T: D(x) = 1, D(T x) = 3
    out = term.d_terms(ctx_of(D, torch.ones(4, 1, 4, 4)))["cr"]
    assert out.item() == pytest.approx(40.0, rel=1e-6)  # 10 * (1 - 3)^2
    out.backward()  # 10 * (a - 3a)^2 = 40 a^2 -> 80; with either branch detached it would be -40 or 120
    assert D.p["a"].grad.item() == pytest.approx(80.0, rel=1e-6)


def test_bcr_adds_the_fake_pair_with_its_own_weight_and_fakes_stay_detached():
    D, G = mean_d(), ScaleG()
    term = REGULARIZERS.build("bcr", {"real_weight": 10.0, "fake_weight": 1.0})
    term.transform = lambda x, rng: x + 2.0
    ctx = ctx_of(D, torch.ones(4, 1, 4, 4), torch.zeros(4, 1, 4, 4), G=G)
    out = term.d_terms(ctx)["bcr"]
    assert out.item() == pytest.approx(10 * 4.0 + 1 * 4.0, rel=1e-6)  # reals 1 vs 3, fakes 0 vs 2
    out.backward()
    assert G.w.grad is None


def reflect_shift(x: torch.Tensor, flip: bool, dy: int, dx: int, s: int) -> torch.Tensor:
    """Independent reference: out[i, j] = reflect_pad(flip?(x))[i - dy, j - dx]."""
    src = x.flip(-1) if flip else x
    p = F.pad(src, (s, s, s, s), mode="reflect")
    h, w = x.shape[-2:]
    return p[..., s - dy:s - dy + h, s - dx:s - dx + w]


def test_builtin_cr_transform_is_a_random_flip_and_reflect_padded_shift_of_up_to_an_eighth():
    img = torch.arange(64.0).view(1, 1, 8, 8)
    # Hand value of one candidate: row 0 of [0..7] shifted right by 1 with reflect padding is [1, 0, 1, ..., 6].
    assert reflect_shift(img, False, 0, 1, 1)[0, 0, 0].tolist() == [1, 0, 1, 2, 3, 4, 5, 6]
    x = img.expand(400, 1, 8, 8).contiguous()
    out = flip_translate(x, SampleRNG(("cr-test",), slice(0, 400), 400))
    candidates = {(f, dy, dx): reflect_shift(img, f, dy, dx, 1)[0]
                  for f in (False, True) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}  # int(8 / 8) = 1 pixel
    seen = []
    for o in out:
        match = [k for k, c in candidates.items() if torch.equal(o, c)]
        assert len(match) == 1
        seen.append(match[0])
    assert set(seen) == set(candidates)  # every flip x shift combination occurs
    assert 140 < sum(f for f, _, _ in seen) < 260  # p(flip) = 0.5
    big = flip_translate(torch.randn(50, 3, 32, 32), SampleRNG(("cr-test",), slice(0, 50), 50))
    assert big.shape == (50, 3, 32, 32)  # up to 4 px at 32x32


def test_builtin_cr_transform_jitters_non_images_and_named_augmentations_are_used():
    term = REGULARIZERS.build("cr", {"jitter": 0.1})
    x = torch.zeros(4000, 2)
    assert term.transform(x, SampleRNG()).std().item() == pytest.approx(0.1, rel=0.05)
    # A registered augmentation by name: DiffAugment with an empty policy is the identity, so CR is exactly 0.
    ident = REGULARIZERS.build("cr", {"transform": "diffaugment", "transform_options": {"policy": ""}})
    assert ident.d_terms(ctx_of(mean_d(), torch.randn(3, 1, 8, 8)))["cr"].item() == 0.0
    with pytest.raises(GanforgeError, match="cr.transform: unknown transform 'nope'; choose one of: flip_translate"):
        REGULARIZERS.build("cr", {"transform": "nope"})
    with pytest.raises(GanforgeError, match="policy"):
        REGULARIZERS.build("bcr", {"transform": "diffaugment", "transform_options": {"policy": "spin"}})


def test_an_adaptive_augmentation_is_refused_as_cr_transform(monkeypatch):
    class Adaptive(Augment):
        def update(self, stats):
            pass

    monkeypatch.setitem(AUGMENTATIONS._entries, "tmp-adaptive", Entry("tmp-adaptive", Adaptive, "", ()))
    with pytest.raises(GanforgeError, match="bcr.transform: augmentation 'tmp-adaptive' adapts to training"):
        REGULARIZERS.build("bcr", {"transform": "tmp-adaptive"})


# ---- zCR --------------------------------------------------------------------------------------------------------

def fixed_shift(term, shift: float):
    term.perturbed_latents = lambda ctx: ctx.z + shift  # z' = z + 0.1 in every coordinate (instead of sigma * eps)
    return term


def test_zcr_g_term_pushes_images_of_nearby_latents_apart():
    G = ScaleG(1.0)
    term = fixed_shift(REGULARIZERS.build("zcr"), 0.1)
    ctx = ctx_of(linear_d(), torch.zeros(4, 2), torch.ones(4, 2), phase="G", G=G)
    out = term.g_terms(ctx)["zcr_g"]
    assert out.item() == pytest.approx(-0.5 * 0.01, rel=1e-5)  # G(z) - G(z') = -0.1 in every pixel
    out.backward()  # -0.5 * mean((w z - w (z + 0.1))^2) = -0.005 w^2 -> -0.01 (0.1 if G(z') were detached)
    assert G.w.grad.item() == pytest.approx(-0.01, rel=1e-5)


def test_zcr_d_term_is_consistency_of_d_on_the_two_fakes_and_fakes_stay_detached():
    G = ScaleG(1.0)
    D = FnD(lambda m, x: m.p["a"] * x.sum(1), a=1.0)
    term = fixed_shift(REGULARIZERS.build("zcr"), 0.1)
    out = term.d_terms(ctx_of(D, torch.zeros(3, 4), torch.randn(3, 4), G=G))["zcr"]
    assert out.item() == pytest.approx(20 * 0.16, rel=1e-5)  # D differs by a * 4 * 0.1; lambda_dis = 20
    out.backward()
    assert D.p["a"].grad.item() == pytest.approx(6.4, rel=1e-5) and G.w.grad is None
    names = {p.name: [type(t).__name__ for t in p.terms] for p in build_phases([term])}
    assert names == {"Dmain": ["LatentConsistencyRegularizer"], "Gmain": ["LatentConsistencyRegularizer"]}


def test_zcr_latent_perturbation_has_std_sigma():
    term = REGULARIZERS.build("zcr", {"sigma": 0.05})
    z = torch.randn(4000, 4)
    ctx = Context(G=ScaleG(), D=linear_d(), real=z, y_real=None, z=z, y_fake=None)
    assert (term.perturbed_latents(ctx) - z).std().item() == pytest.approx(0.05, rel=0.05)
    assert REGULARIZERS.build("zcr", {"g_weight": 0.0}).g_terms(ctx) == {}


# ---- BigGAN orthogonal regularization ---------------------------------------------------------------------------

class TinyG(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.embed = nn.Embedding(3, 2)  # a class embedding: left out, as BigGAN blacklists G.shared
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 1.0]]))


def test_ortho_on_a_hand_built_2x2_weight_and_its_gradient_is_twice_biggans():
    beta = 1e-4
    G = TinyG()
    ctx = Context(G=G, D=linear_d(), real=torch.zeros(1, 2), y_real=None, z=torch.zeros(1, 2), y_fake=None,
                  phase="G")
    term = REGULARIZERS.build("ortho", {"weight": beta})
    assert term.d_terms(ctx) == {}
    out = term.g_terms(ctx)["ortho"]
    assert out.item() == pytest.approx(2 * beta, rel=1e-6)  # W W^T = [[2, 1], [1, 1]]: off-diagonal 1^2 + 1^2
    out.backward()
    torch.testing.assert_close(G.fc.weight.grad, beta * torch.tensor([[0.0, 4.0], [4.0, 4.0]]))
    assert G.fc.bias.grad is None and G.embed.weight.grad is None
    # weight = beta / 2 gives BigGAN-PyTorch's added gradient 2 beta ((W W^T) ⊙ (1 - I)) W = beta [[0, 2], [2, 2]].
    G.zero_grad()
    REGULARIZERS.build("ortho", {"weight": beta / 2}).g_terms(ctx)["ortho"].backward()
    torch.testing.assert_close(G.fc.weight.grad, beta * torch.tensor([[0.0, 2.0], [2.0, 2.0]]))
    assert [p.name for p in build_phases([term])] == ["Gmain"]


def test_ortho_reads_conv_weights_as_out_by_fan_in_rows():
    G = nn.Sequential(nn.Conv2d(1, 2, (1, 3), bias=False))
    with torch.no_grad():
        G[0].weight.copy_(torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]).view(2, 1, 1, 3))
    ctx = Context(G=G, D=linear_d(), real=torch.zeros(1, 2), y_real=None, z=torch.zeros(1, 2), y_fake=None)
    # Rows (filters) (1,0,1) and (0,1,1) have dot product 1: R = 2 (the 3x3 column Gram would give 4).
    assert REGULARIZERS.build("ortho", {"weight": 1.0}).g_terms(ctx)["ortho"].item() == pytest.approx(2.0)


# ---- top-k ------------------------------------------------------------------------------------------------------

def test_topk_k_schedule():
    assert topk_k(64, 0, 0.99, 0.5) == 64
    assert topk_k(64, 1, 0.99, 0.5) == 63  # 63.36 -> 63
    assert topk_k(64, 1000, 0.99, 0.5) == 32  # the floor nu * B
    assert topk_k(3, 50, 0.5, 0.1) == 1  # never below one sample


class IdentityG(nn.Module):
    def forward(self, z, y=None):
        return z


def logits_ctx(fake: torch.Tensor, real: torch.Tensor | None = None, nimg: int = 0) -> Context:
    """G = identity, D = first coordinate: z *is* the fake logit."""
    z = fake[:, None].clone().requires_grad_(True)
    real = torch.zeros(len(fake)) if real is None else real
    return Context(G=IdentityG(), D=FnD(lambda m, x: x[:, 0]), real=real[:, None], y_real=None, z=z, y_fake=None,
                   phase="G", info=StepInfo(nimg=nimg))


@pytest.mark.parametrize("nimg,k", [(64, 64), (128, 63), (64 * 1001, 32)])
def test_topk_exactly_the_k_highest_scored_fakes_get_gradient(nimg, k):
    fake = torch.randperm(64).float() / 8 - 4  # distinct logits
    ctx = logits_ctx(fake, nimg=nimg)
    loss = LOSSES.build("topk", {"base": "vanilla"}, dataset_size=64)  # epoch = (nimg - 1) // 64
    out = loss.g_terms(ctx)["g_loss"]
    kept = fake.topk(k).indices
    assert out.item() == pytest.approx(F.softplus(-fake[kept]).mean().item(), rel=1e-6)
    out.backward()
    has_grad = ctx.z.grad[:, 0] != 0
    assert has_grad.sum().item() == k and has_grad[kept].all()
    assert loss.log_values() == {"topk_k": float(k)}


def test_topk_selects_by_logit_not_by_loss_and_keeps_relativistic_pairs():
    fake = torch.tensor([3.0, 1.0, 0.5, -3.0])
    # k = max(4 * 0.5, floor(0.5 * 4)) = 2 after one epoch: the logits 3 and 1.
    ls = LOSSES.build("topk", {"base": "lsgan", "gamma": 0.5}, dataset_size=4)
    got = ls.g_terms(logits_ctx(fake, nimg=8))["g_loss"]
    assert got.item() == pytest.approx((0.5 * 2 ** 2 + 0.0) / 2)  # 0.5 (D - 1)^2; lowest losses would give 0.0625
    real = torch.tensor([0.0, 1.0, 2.0, 3.0])
    rel = LOSSES.build("topk", {"base": "relativistic", "gamma": 0.5}, dataset_size=4)
    got = rel.g_terms(logits_ctx(fake, real, nimg=8))["g_loss"]
    assert got.item() == pytest.approx((math.log1p(math.exp(0 - 3)) + math.log1p(math.exp(1 - 1))) / 2, rel=1e-6)
    # The D step is the base loss's.
    d_ctx = Context(G=IdentityG(), D=FnD(lambda m, x: x[:, 0]), real=real[:, None], y_real=None, z=fake[:, None],
                    y_fake=None, phase="D")
    assert rel.d_terms(d_ctx)["d_loss"].item() == pytest.approx(
        LOSSES.build("relativistic").d_terms(d_ctx)["d_loss"].item())


def test_topk_options_and_declarations():
    with pytest.raises(GanforgeError, match="loss.dataset_size: unknown option"):
        LOSSES.build("topk", {"dataset_size": 10})  # the framework hands in the epoch length
    with pytest.raises(GanforgeError, match="loss.base: unknown loss 'nope'"):
        LOSSES.build("topk", {"base": "nope"})
    with pytest.raises(GanforgeError, match="loss.base_options.drift"):
        LOSSES.build("topk", {"base": "wasserstein", "base_options": {"drift": -1.0}})
    with pytest.raises(GanforgeError, match="loss.nu"):
        LOSSES.build("topk", {"nu": 0.0})
    with pytest.raises(GanforgeError, match="loss: 'topk' .* set train.accumulate=1"):
        from_dict(points_cfg(loss={"name": "topk"}, train={"accumulate": 2}))


def test_topk_in_training_counts_epochs_from_the_images_d_has_seen(tmp_path):
    from ganforge.training.distributed import DistInfo
    from ganforge.training.trainer import Trainer

    raw = points_cfg(data={"n": 64}, loss={"name": "topk", "gamma": 0.9}, train={"steps": 16})  # one epoch: 64
    tr = Trainer(from_dict(raw), tmp_path / "run", progress=False, dist=DistInfo(), device=torch.device("cpu"))
    ks = []
    for _ in range(16):
        tr.train_step()
        ks.append(tr.terms["loss:topk"].k)
    # G step s follows 32 (s + 1) real images: epoch (32 (s + 1) - 1) // 64 = s // 2; k = int(max(32 * 0.9^e, 16)).
    per_epoch = [32, 28, 25, 23, 20, 18, 17, 16]
    assert ks == [per_epoch[s // 2] for s in range(16)]


# ---- data parallelism and accumulation ----------------------------------------------------------------------------

def _generator_weights(run):
    from safetensors.torch import load_file

    return load_file(str(run / "export" / "generator.safetensors"))


def test_batch_level_terms_on_two_ranks_equal_one_process(tmp_path):
    """DRAGAN's std, MaxGP's maximum and top-k's selection are over the global batch (gathered over ranks)."""
    from helpers import torchrun, write_config
    from ganforge.training.trainer import train

    raw = points_cfg(data={"n": 64}, loss={"name": "topk", "gamma": 0.5}, train={"steps": 10, "ckpt_every": 10},
                     regularizers=[{"name": "dragan", "weight": 1.0}, {"name": "maxgp", "weight": 1.0},
                                   {"name": "bcr", "jitter": 0.05}, {"name": "zcr"}, {"name": "ortho", "weight": 0.01}])
    train(from_dict(raw), tmp_path / "single", progress=False)
    torchrun(write_config(tmp_path, raw), tmp_path / "ddp")
    a, b = _generator_weights(tmp_path / "single"), _generator_weights(tmp_path / "ddp")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)


def test_decomposable_terms_under_accumulation_equal_one_round(tmp_path):
    from ganforge.training.trainer import train

    regs = [{"name": "cr", "jitter": 0.05}, {"name": "bcr", "jitter": 0.05}, {"name": "zcr"},
            {"name": "ortho", "weight": 0.01}]
    for k in (1, 2):
        train(from_dict(points_cfg(regularizers=regs, train={"steps": 10, "accumulate": k})), tmp_path / f"acc{k}",
              progress=False)
    a, b = _generator_weights(tmp_path / "acc1"), _generator_weights(tmp_path / "acc2")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)
