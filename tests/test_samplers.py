"""Sampling-time methods that use D (DDLS, DRS): D in exports, the defining property of each method on hand-made
G / D pairs with known answers, reproducibility, labels, calibration, `ganforge sample|eval --sampler`, bad input."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from helpers import TINY_DIGITS, TINY_POINTS, shared_cache

import ganforge
from ganforge.cli.main import main
from ganforge.conditioning.base import DOutput
from ganforge.config import from_dict
from ganforge.data.base import DataInfo, PointModality, TensorDataset
from ganforge.errors import GanforgeError
from ganforge.models.base import Generator
from ganforge.samplers import build_sampler
from ganforge.samplers.base import fit_logistic
from ganforge.samplers.ddls import DDLS
from ganforge.samplers.drs import DRS
from ganforge.sampling import generate, generate_batches
from ganforge.training.build import build_run, export_meta
from ganforge.training.checkpoint import list_checkpoints
from ganforge.training.export import export_generator, load_discriminator
from ganforge.training.trainer import train


class Identity(Generator):
    """G(z) = z: p_g is the latent prior N(0, I)."""

    def __init__(self, dim: int):
        super().__init__()
        self.z_dim, self.num_classes, self.img_shape = dim, 0, (dim,)

    def forward(self, z, y=None):
        return z.clone()


class LogitD(nn.Module):
    """A hand-made D whose logit is `fn(x)`."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x, y=None):
        return DOutput(self.fn(x))


# p_g = N(0, 1) (identity G on a 1-D latent), p_data = N(MU, SD^2): d = log p_data / p_g is bounded above (SD < 1)
MU, SD = 0.5, 0.6


def log_ratio(x: torch.Tensor) -> torch.Tensor:
    x = x[:, 0]
    return -(x - MU) ** 2 / (2 * SD ** 2) - math.log(SD) + x ** 2 / 2


def max_log_ratio() -> float:
    x_star = (MU / SD ** 2) / (1 / SD ** 2 - 1)  # where d/dx log_ratio = 0
    return float(log_ratio(torch.tensor([[x_star]])))


def _one_line(capsys, rc: int, *needles: str) -> str:
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and err.count("\n") == 1 and err.startswith("ganforge: error: "), err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.fixture(scope="module")
def points_run(tmp_path_factory) -> Path:
    raw = copy.deepcopy(TINY_POINTS)
    raw["train"].update(steps=20, ckpt_every=20)
    run = tmp_path_factory.mktemp("samplers") / "run"
    with shared_cache(tmp_path_factory):
        train(from_dict(raw), run, progress=False)
    return run


@pytest.fixture(scope="module")
def digits_parts():
    """G and D of the conditional digits recipe (cBN G, projection D), untrained, and the config they come from."""
    cfg = from_dict(copy.deepcopy(TINY_DIGITS))
    torch.manual_seed(0)
    return cfg, build_run(cfg)


# ------------------------------------------------------------------------------------------------------- exports
def test_export_round_trip_of_D_gives_the_same_logits(digits_parts, tmp_path):
    cfg, parts = digits_parts
    export = export_generator(parts.G, tmp_path / "export", export_meta(cfg, parts, 0), D=parts.D)
    assert sorted(p.name for p in export.iterdir()) == ["config.json", "discriminator.safetensors",
                                                       "generator.safetensors"]
    D = load_discriminator(export)
    assert not D.training and json.loads((export / "config.json").read_text())["d_head"]["name"] == "projection"
    x, y = torch.rand(16, 1, 8, 8) * 2 - 1, torch.arange(16) % 10
    with torch.no_grad():
        want = parts.D.eval()(x, y).adv
        assert torch.equal(D(x, y).adv, want)
        assert not torch.equal(D(x, (y + 1) % 10).adv, want)  # the labels reach the projection head


def test_a_trained_run_exports_its_final_D(points_run):
    exported = load_file(str(points_run / "export" / "discriminator.safetensors"))
    state = torch.load(list_checkpoints(points_run / "checkpoints")[-1], weights_only=True)
    assert state["step"] == 20 and exported.keys() == state["D"].keys()
    assert all(torch.equal(exported[k], state["D"][k].cpu()) for k in exported)


def test_an_export_without_D_is_a_one_line_error_saying_how_to_re_export(digits_parts, tmp_path, capsys):
    cfg, parts = digits_parts
    old = export_generator(parts.G, tmp_path / "old", export_meta(cfg, parts, 0))  # G only, as exports used to be
    with pytest.raises(GanforgeError, match="no discriminator.*DDLS/DRS.*re-export") as e:
        load_discriminator(old)
    assert "\n" not in str(e.value)
    G = ganforge.load_generator(old)
    with pytest.raises(GanforgeError, match="no discriminator"):
        generate(G, 4, sampler="ddls:steps=1")
    rc = main(["sample", str(old), "--n", "4", "--out", str(tmp_path / "s.png"), "--sampler", "drs"])
    _one_line(capsys, rc, "no discriminator", "re-run `ganforge train`")
    assert not (tmp_path / "s.png").exists()


# ---------------------------------------------------------------------------------------------------------- DDLS
def test_ddls_with_step_size_zero_returns_plain_G_samples(digits_parts):
    _, parts = digits_parts
    G, D = parts.G.eval(), parts.D
    plain = generate(G, 12, seed=3, batch_size=5)
    sampler = DDLS(steps=3, step_size=0.0, noise=1.0)
    assert torch.equal(generate(G, 12, seed=3, batch_size=5, sampler=sampler, D=D), plain)
    moved = generate(G, 12, seed=3, batch_size=5, sampler=DDLS(steps=3, step_size=0.05), D=D)
    assert not torch.allclose(moved, plain)  # the same call with a step does move them


def test_ddls_samples_the_energy_model_of_a_hand_made_D():
    """d(x) = -||x - c||^2 / 2 with G = identity: E(z) = ||z||^2/2 + ||z - c||^2/2, i.e. z ~ N(c/2, I/2)."""
    c = torch.tensor([2.0, -1.0])
    G, D = Identity(2), LogitD(lambda x: -0.5 * (x - c).pow(2).sum(1))
    sampler = DDLS(steps=1000, step_size=0.01)
    x = generate(G, 2000, seed=0, batch_size=1000, sampler=sampler, D=D)
    assert torch.allclose(x.mean(0), c / 2, atol=0.06)  # plain samples have mean 0
    assert torch.allclose(x.var(0), torch.full((2,), 0.5), atol=0.06)  # plain samples have variance 1
    # mean energy: E_N(0,I)[E] = 1 + (2 + ||c||^2)/2 = 4.5 before; E_N(c/2,I/2)[E] = ||c||^2/4 + 1 = 2.25 after
    assert sampler.stats["energy_start"] == pytest.approx(4.5, abs=0.15)
    assert sampler.stats["energy_end"] == pytest.approx(2.25, abs=0.15)
    descent = generate(G, 50, seed=0, sampler=DDLS(steps=1000, step_size=0.01, noise=0.0), D=D)
    assert torch.allclose(descent, (c / 2).expand(50, 2), atol=1e-3)  # noise 0: gradient descent to E's minimum


# ---------------------------------------------------------------------------------------------------------- LOGAN
def test_logan_takes_the_configured_natural_gradient_steps_on_a_linear_d():
    """d(x) = v . x with G = identity: g = v everywhere, so each step adds alpha v / (beta + ||v||^2) to every z
    (METHODS.md: v = (3, 4), alpha 0.9, beta 0.1 -> (0.10757, 0.14343)); k steps add k times that."""
    from ganforge.samplers.logan import LatentOptimisationSampler

    v = torch.tensor([3.0, 4.0])
    G, D = Identity(2), LogitD(lambda x: x @ v)
    plain = generate(G, 6, seed=1)
    step = torch.tensor([0.9 * 3 / 25.1, 0.9 * 4 / 25.1])
    assert torch.allclose(step, torch.tensor([0.10757, 0.14343]), atol=1e-5)
    for k in (1, 3, 10):
        sampler = LatentOptimisationSampler(steps=k)
        x = generate(G, 6, seed=1, sampler=sampler, D=D)
        torch.testing.assert_close(x - plain, (k * step).expand(6, 2), rtol=1e-5, atol=1e-6)
        assert sampler.stats["logit_end"] - sampler.stats["logit_start"] == pytest.approx(float(k * step @ v), rel=1e-4)
    clamped = generate(G, 6, seed=1, sampler="logan:steps=50:clamp=0.5", D=D)
    assert clamped.abs().max() <= 0.5 and torch.allclose(clamped, torch.full_like(clamped, 0.5))


def test_logan_moves_samples_toward_what_d_rates_most_real():
    c = torch.tensor([2.0, -1.0])
    G, D = Identity(2), LogitD(lambda x: -0.5 * (x - c).pow(2).sum(1))
    sampler = build_sampler("logan:steps=30")
    x = generate(G, 200, seed=0, sampler=sampler, D=D)
    assert (x - c).norm(dim=1).mean() < 0.5 * (generate(G, 200, seed=0) - c).norm(dim=1).mean()
    assert sampler.stats["logit_end"] > sampler.stats["logit_start"]


# ----------------------------------------------------------------------------------------------------------- DRS
def test_drs_with_gamma_zero_on_the_exact_log_ratio_samples_p_data_and_accepts_one_in_M():
    sampler = DRS(burn_in=10000, gamma=0.0)
    x = generate(Identity(1), 4000, seed=0, batch_size=500, sampler=sampler, D=LogitD(log_ratio))[:, 0]
    assert x.mean().item() == pytest.approx(MU, abs=0.04) and x.std().item() == pytest.approx(SD, abs=0.03)
    M = math.exp(max_log_ratio())  # ~2.03: exact rejection sampling accepts 1/M of the proposals
    assert sampler.stats["acceptance_rate"] == pytest.approx(1 / M, abs=0.03)
    assert sampler.report() == {"acceptance_rate": sampler.stats["acceptance_rate"]}
    assert sampler.stats["max_logit"] == pytest.approx(max_log_ratio(), abs=0.01)
    short = DRS(burn_in=1, gamma=0.0)  # D*_M starts from one proposal and is raised whenever one exceeds it
    x = generate(Identity(1), 2000, seed=0, batch_size=500, sampler=short, D=LogitD(log_ratio))[:, 0]
    assert short.stats["max_logit"] == pytest.approx(max_log_ratio(), abs=0.01)
    assert x.mean().item() == pytest.approx(MU, abs=0.06) and x.std().item() == pytest.approx(SD, abs=0.05)


def test_drs_default_gamma_keeps_a_smaller_fraction_and_still_moves_toward_p_data():
    sampler = DRS(burn_in=2000)  # gamma = 95th percentile of F in each batch of proposals
    x = generate(Identity(1), 2000, seed=0, batch_size=500, sampler=sampler, D=LogitD(log_ratio))[:, 0]
    M = math.exp(max_log_ratio())
    assert 0.02 < sampler.stats["acceptance_rate"] < 1 / M - 0.1
    assert x.mean().item() > 0.35 and x.std().item() < 0.75  # plain: mean 0, std 1


def test_drs_calibration_recovers_the_log_ratio_from_a_miscalibrated_D():
    gen = torch.Generator().manual_seed(1)
    reals = MU + SD * torch.randn(6000, 1, generator=gen)
    data = TensorDataset(reals, torch.zeros(6000), DataInfo((1,), 0, PointModality(3.0)), "gaussian")
    D = LogitD(lambda x: 3.0 * log_ratio(x) + 1.0)
    sampler = DRS(burn_in=5000, gamma=0.0, calibrate=True, calibration_samples=6000)
    x = generate(Identity(1), 3000, seed=0, batch_size=500, sampler=sampler, D=D, data=data)[:, 0]
    a, b = sampler.calibration
    assert a == pytest.approx(1 / 3, abs=0.03) and b == pytest.approx(-1 / 3, abs=0.06)
    assert x.mean().item() == pytest.approx(MU, abs=0.05) and x.std().item() == pytest.approx(SD, abs=0.04)
    uncalibrated = generate(Identity(1), 3000, seed=0, batch_size=500, sampler=DRS(burn_in=5000, gamma=0.0), D=D)
    assert uncalibrated[:, 0].std().item() < SD - 0.15  # a 3x logit over-sharpens the accepted distribution


def test_fit_logistic_matches_a_hand_made_logistic_population():
    gen = torch.Generator().manual_seed(0)
    d = torch.randn(20000, generator=gen) * 2
    is_real = torch.rand(20000, generator=gen) < torch.sigmoid(0.5 * d - 0.25)  # the truth: a = 0.5, b = -0.25
    a, b = fit_logistic(d[is_real], d[~is_real])
    assert a == pytest.approx(0.5, abs=0.04) and b == pytest.approx(-0.25, abs=0.05)


def test_drs_honours_requested_labels_and_accepting_all_gives_plain_samples(digits_parts):
    _, parts = digits_parts
    G, D = parts.G.eval(), parts.D
    labels = torch.tensor([3, 3, 7, 0, 9, 1, 1, 2, 5, 4, 8])
    batches = list(generate_batches(G, 11, seed=2, batch_size=4, labels=labels, sampler=DRS(burn_in=8), D=D))
    assert torch.equal(torch.cat([y for _, y in batches]), labels)
    everything = DRS(burn_in=8, gamma=-1e6)
    x = generate(G, 11, seed=2, batch_size=4, labels=labels, sampler=everything, D=D)
    assert torch.equal(x, generate(G, 11, seed=2, batch_size=4, labels=labels))
    assert everything.stats["acceptance_rate"] == 1.0


@pytest.mark.parametrize("spec", ["ddls:steps=5:step_size=0.05", "drs:burn_in=64"])
def test_the_same_seed_gives_the_same_samples(digits_parts, spec):
    _, parts = digits_parts
    G, D = parts.G.eval(), parts.D.train()
    a = generate(G, 10, seed=5, batch_size=4, sampler=spec, D=D)
    assert torch.equal(a, generate(G, 10, seed=5, batch_size=4, sampler=spec, D=D))
    assert not torch.equal(a, generate(G, 10, seed=6, batch_size=4, sampler=spec, D=D))
    assert D.training  # D's own mode is left as it was (it runs in eval mode while sampling)


# ----------------------------------------------------------------------------------------------------------- CLI
def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.mark.parametrize("spec", ["drs:burn_in=256", "ddls:steps=10:step_size=0.01"])
def test_cli_sample_with_a_sampler_writes_the_api_samples_as_png(points_run, tmp_path, capsys, spec):
    out = tmp_path / "s.png"
    capsys.readouterr()
    assert main(["sample", str(points_run), "--n", "32", "--out", str(out), "--sampler", spec, "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and printed.splitlines()[-1].startswith(spec.split(":")[0] + ": ")
    G, D = ganforge.load_generator(points_run), load_discriminator(points_run)
    x = generate(G, 32, seed=1, sampler=spec, D=D)
    assert not torch.equal(x, generate(G, 32, seed=1))
    modality = PointModality(G.export_config["modality"]["extent"])
    assert np.array_equal(_png(out), modality.render(x))


def test_cli_eval_with_a_sampler_returns_results_and_the_acceptance_rate(points_run, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["eval", str(points_run), "--ref", "ring8", "--metrics", "modes", "--sampler", "drs:burn_in=500",
                 "--json", str(out), "--no-progress"]) == 0
    res = json.loads(out.read_text())
    assert {"modes", "hq_frac", "kl", "n", "acceptance_rate"} <= set(res) and 0 < res["acceptance_rate"] < 1
    assert res["protocol"]["sampler"] == "drs:burn_in=500"
    api = ganforge.evaluate(points_run, "ring8", metrics=["modes"], sampler={"name": "drs", "burn_in": 500},
                            progress=False)
    assert api == {k: res[k] for k in api}
    plain = ganforge.evaluate(points_run, "ring8", metrics=["modes"], progress=False)
    assert "acceptance_rate" not in plain
    ddls = ganforge.evaluate(points_run, "ring8", metrics=["modes"], sampler="ddls:steps=5", progress=False)
    assert set(ddls) == set(plain)


def test_eval_from_generator_with_a_sampler_uses_D(digits_parts):
    from ganforge.metrics.sources import from_generator

    _, parts = digits_parts
    G, D = parts.G.eval(), parts.D
    plain = torch.cat([x for x, _ in from_generator(G, 8, seed=0).batches(4)])
    same = torch.cat([x for x, _ in from_generator(G, 8, seed=0, sampler="drs:gamma=-1e6:burn_in=8",
                                                   discriminator=D).batches(4)])
    moved = torch.cat([x for x, _ in from_generator(G, 8, seed=0, sampler="ddls:steps=5:step_size=0.5",
                                                    discriminator=D).batches(4)])
    assert torch.equal(plain, same) and not torch.equal(plain, moved)


# ----------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("spec,needle", [
    ("nope", "sampler: unknown sampler 'nope'; choose one of: ddls, drs"),
    ("ddls:steps=0", "ddls.steps: expected an integer >= 1, got int 0"),
    ("ddls:step_size=-1", "ddls.step_size: expected a number >= 0"),
    ("ddls:steps", "sampler ddls: option 'steps' is not KEY=VALUE"),
    ("drs:percentile=101", "drs.percentile: expected a number in [0, 100]"),
    ("drs:burn=5", "drs.burn: unknown option for sampler 'drs'; valid options:"),
    ("logan:beta=0", "logan.beta: expected a number > 0"),
])
def test_bad_sampler_names_and_options_are_one_line_errors(points_run, tmp_path, capsys, spec, needle):
    rc = main(["sample", str(points_run), "--n", "4", "--out", str(tmp_path / "s.png"), "--sampler", spec])
    _one_line(capsys, rc, needle)
    rc = main(["eval", str(points_run), "--ref", "ring8", "--metrics", "modes", "--sampler", spec, "--no-progress"])
    _one_line(capsys, rc, needle)
    with pytest.raises(GanforgeError, match=needle.split(":")[0]):
        build_sampler(spec)


def test_a_sampler_needs_a_generator_a_discriminator_and_data_to_calibrate_on(capsys):
    G = Identity(1)
    with pytest.raises(GanforgeError, match="sampler ddls: needs the discriminator"):
        generate(G, 4, sampler="ddls")
    with pytest.raises(GanforgeError, match="drs.calibrate: needs real training images"):
        generate(G, 4, sampler="drs:calibrate=true", D=LogitD(log_ratio))
    with pytest.raises(GanforgeError, match="a sampler draws from a generator"):
        ganforge.evaluate("digits", "digits", metrics=["fid"], backbone="digits-classifier", sampler="drs",
                          progress=False)
    rc = main(["eval", "digits", "--ref", "digits", "--backbone", "digits-classifier", "--sampler", "drs",
               "--no-progress"])
    _one_line(capsys, rc, "a sampler draws from a generator")


# ------------------------------------------------------------------------------------------------------ hubness
def test_hubness_k_occurrence_counts_match_the_hand_counted_nearest_neighbours():
    from ganforge.samplers.hubness import k_occurrence

    # 1-NN: 0 -> 0.1, 0.1 -> 0, 0.25 -> 0.1, 5 -> 0.25, 11 -> 5
    points = torch.tensor([[0.0], [0.1], [0.25], [5.0], [11.0]])
    assert k_occurrence(points, 1, chunk=2).tolist() == [1, 2, 1, 1, 0]
    assert int(k_occurrence(torch.randn(50, 3), 4).sum()) == 50 * 4  # every point names k neighbours


def test_hubness_keeps_the_dense_cluster_of_a_pool():
    from ganforge.samplers.hubness import k_occurrence, select_hubs

    gen = torch.Generator().manual_seed(0)
    dense = 0.01 * torch.randn(20, 50, generator=gen)  # a tight cluster at the centre
    sparse = torch.randn(80, 50, generator=gen)
    sparse = sparse / sparse.norm(dim=1, keepdim=True)  # unit radius: ~1 from the cluster, ~sqrt(2) from each other
    counts = k_occurrence(torch.cat([dense, sparse]), 5)
    # all 100 points name 5 neighbours, all in the cluster: 500 occurrences on its 20 points, none elsewhere
    assert int(counts[:20].sum()) == 500 and counts[20:].tolist() == [0] * 80
    assert select_hubs(counts, 0.2, None).tolist() == list(range(20))
    assert set(select_hubs(counts, 1.0, int(counts[:20].min())).tolist()) >= set(range(20))


def test_hubness_sampler_draws_pool_hubs_without_a_discriminator():
    from ganforge.samplers.hubness import Hubness, k_occurrence, select_hubs
    from ganforge.training.rng import generator

    G = Identity(2)
    sampler = build_sampler("hubness:k=3:pool=40:keep=0.25")
    x = torch.cat([b for b, _ in sampler.generate_batches(G, None, 25, seed=4, batch_size=7)])
    assert x.shape == (25, 2) and sampler.stats["pools"] == 3 and sampler.stats["kept_fraction"] == 0.25
    pool = G.sample_z(40, generator=generator(4, "hubness"))  # the first pool, drawn as the sampler draws it
    torch.testing.assert_close(x[:10], pool[select_hubs(k_occurrence(pool, 3), 0.25, None)])
    assert sampler.stats["mean_k_occurrence_kept"] > sampler.stats["mean_k_occurrence_pool"] == 3.0
    assert isinstance(sampler, Hubness) and "kept 30 of 120" in sampler.summary()
    with pytest.raises(GanforgeError, match="hubness.k: must be below hubness.pool"):
        build_sampler("hubness:k=10:pool=10")


def test_binding_a_sampler_that_needs_no_d_loads_none():
    from ganforge.sampling import generate
    from ganforge.samplers.base import bind

    G = Identity(2)  # no export next to it: a sampler that needs D could not find one
    with pytest.raises(GanforgeError, match="drs"):
        bind(G, "drs")
    bound = bind(G, "hubness:k=3:pool=40:keep=0.25")
    assert bound.D is None and generate(bound, 12, seed=1).shape == (12, 2)


def test_cli_sample_with_the_hubness_sampler(points_run, tmp_path, capsys):
    out = tmp_path / "h.png"
    capsys.readouterr()
    assert main(["sample", str(points_run), "--n", "16", "--out", str(out), "--sampler", "hubness:pool=64"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("hubness: kept 18 of 192")  # 6 of each 64-pool, 3 pools
    G = ganforge.load_generator(points_run)
    x = generate(G, 16, seed=0, sampler="hubness:pool=64", D=load_discriminator(points_run))
    assert np.array_equal(_png(out), PointModality(G.export_config["modality"]["extent"]).render(x))
