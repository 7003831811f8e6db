"""G-side conditioning: vector-conditional BatchNorm, BigGAN's shared embedding + hierarchical z, InfoGAN's codes and
Q head, and how fake labels are drawn (conditioning.fake_labels)."""
from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ganforge.config import from_dict
from ganforge.conditioning.base import DOutput
from ganforge.conditioning.g_infogan import InfoQ
from ganforge.errors import GanforgeError
from ganforge.nn import has_sn
from ganforge.nn.norms import VectorConditionalBatchNorm, VectorConditionalBatchNorm1d, VectorConditionalBatchNorm2d
from ganforge.objectives.base import Context, StepInfo
from ganforge.registries import ARCHITECTURES, G_CONDITIONING
from ganforge.training.build import _Context, build_dataset, build_models
from ganforge.training.distributed import DistInfo
from ganforge.training.rng import generator
from ganforge.training.run_dir import config_changes
from ganforge.training.trainer import Trainer

K = 4


def build_g(arch: str, cond: str, num_classes: int = K, shape: tuple = (2,), cond_options: dict | None = None,
            **arch_options):
    g_cond = G_CONDITIONING.build(cond, cond_options or {}, num_classes=num_classes)
    return ARCHITECTURES.build(arch, arch_options, img_shape=shape, num_classes=num_classes, g_cond=g_cond).G


def norm_inputs(G: nn.Module, z: torch.Tensor, y: torch.Tensor | None) -> list[torch.Tensor]:
    """The conditioning vector c each vector-conditional norm of G receives in one forward pass, in call order."""
    seen: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, args, _out: seen.append(args[1].detach().clone()))
             for m in G.modules() if isinstance(m, VectorConditionalBatchNorm)]
    with torch.no_grad():
        G(z, y)
    for h in hooks:
        h.remove()
    return seen


# ----------------------------------------------------------------------------------------- vector-conditional BN
@pytest.mark.parametrize("cls,shape", [(VectorConditionalBatchNorm1d, (6, 3)),
                                       (VectorConditionalBatchNorm2d, (6, 3, 4, 4))])
def test_vector_cbn_with_zero_maps_is_plain_batchnorm(cls, shape):
    torch.manual_seed(0)
    norm, plain = cls(3, cond_dim=5, eps=1e-4), (nn.BatchNorm1d if len(shape) == 2 else nn.BatchNorm2d)(3, eps=1e-4)
    assert torch.count_nonzero(norm.gain_proj.weight) == 0 and torch.count_nonzero(norm.bias_proj.weight) == 0
    x, c = torch.randn(*shape) * 3 + 1, torch.randn(6, 5)
    assert torch.allclose(norm(x, c), plain(x), atol=1e-6)


def test_vector_cbn_is_gain_one_plus_wg_c_and_bias_wb_c():
    norm = VectorConditionalBatchNorm1d(1, cond_dim=1, eps=1e-12)
    with torch.no_grad():
        norm.gain_proj.weight.fill_(1.0)  # W_g = 1
        norm.bias_proj.weight.fill_(3.0)  # W_b = 3
    x = torch.tensor([[-1.0], [1.0]])  # batch mean 0, biased variance 1: x_hat = x
    c = torch.tensor([[0.5], [2.0]])
    # x_hat * (1 + W_g c) + W_b c = [-1 * 1.5 + 1.5, 1 * 3 + 6]
    assert norm(x, c).flatten().tolist() == pytest.approx([0.0, 9.0])


def test_vector_cbn_errors_and_sn():
    norm = VectorConditionalBatchNorm2d(3, cond_dim=5)
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(GanforgeError, match=r"conditioning vector.*\(2, 5\).*None"):
        norm(x, None)
    with pytest.raises(GanforgeError, match=r"\(2, 5\), got \(2, 4\)"):
        norm(x, torch.randn(2, 4))
    sn = VectorConditionalBatchNorm2d(3, cond_dim=5, sn=True)
    assert has_sn(sn.gain_proj) and has_sn(sn.bias_proj)
    assert torch.isfinite(sn(x, torch.randn(2, 5))).all()


# ---------------------------------------------------------------------------------------- BigGAN shared embedding
def test_hierarchical_z_chunks_of_20_and_first_layer_sees_only_the_first():
    torch.manual_seed(0)
    G = build_g("mlp", "shared", z_dim=120, hidden=16, layers=5)  # 5 blocks -> 6 chunks of 20 (BigGAN ImageNet)
    assert G.linears[0].in_features == 20
    assert all(norm.cond_dim == 128 + 20 for norm in G.norms)  # cBN input 148, as BigGAN's
    z, y = torch.randn(4, 120), torch.tensor([0, 1, 2, 3])
    z2 = z.clone()
    z2[:, 20:] = torch.randn(4, 100)
    first = []
    hook = G.linears[0].register_forward_hook(lambda _m, _i, out: first.append(out.detach().clone()))
    blocks_a, blocks_b = norm_inputs(G, z, y), norm_inputs(G, z2, y)
    hook.remove()
    assert torch.equal(first[0], first[1])  # the input layer's output ignores z[20:]
    assert all(not torch.equal(a, b) for a, b in zip(blocks_a, blocks_b))  # ... every block sees it


@pytest.mark.parametrize("arch,shape,z_dim", [("mlp", (2,), 8), ("dcgan", (3, 16, 16), 8), ("resnet", (3, 16, 16), 9)])
def test_each_block_norm_sees_shared_embedding_and_its_own_chunk(arch, shape, z_dim):
    torch.manual_seed(0)
    options = {"mlp": {"hidden": 16, "layers": 3}}.get(arch, {"g_ch": 4})
    G = build_g(arch, "shared", shape=shape, z_dim=z_dim, cond_options={"dim": 6}, **options)
    blocks = G.g_cond.num_blocks
    chunk = z_dim // (blocks + 1)
    z, y = torch.randn(3, z_dim), torch.tensor([2, 0, 3])
    e = G.g_cond.embed.detach()[y]
    assert torch.equal(G.g_cond.prepare(z, y).x, z[:, :chunk])  # G's input: chunk 0
    order = []
    for c in norm_inputs(G, z, y):
        assert c.shape == (3, 6 + chunk) and torch.equal(c[:, :6], e)
        matches = [i for i in range(1, blocks + 1) if torch.equal(c[:, 6:], z[:, i * chunk:(i + 1) * chunk])]
        assert len(matches) == 1
        order += matches
    assert sorted(set(order)) == list(range(1, blocks + 1)) and order == sorted(order)  # block i gets chunk i+1


def test_biggan_deep_gives_every_block_z_with_embedding():
    torch.manual_seed(0)
    G = build_g("mlp", "shared", z_dim=7, hidden=16, layers=3, cond_options={"dim": 5, "hier": False})
    assert G.linears[0].in_features == 7 + 5
    z, y = torch.randn(4, 7), torch.tensor([3, 1, 0, 2])
    zy = torch.cat([z, G.g_cond.embed.detach()[y]], dim=1)
    assert torch.equal(G.g_cond.prepare(z, y).x, zy)
    seen = norm_inputs(G, z, y)
    assert len(seen) == 3 and all(torch.equal(c, zy) for c in seen)


def test_shared_embedding_belongs_to_g_and_is_one_table_for_all_blocks():
    torch.manual_seed(0)
    G = build_g("mlp", "shared", z_dim=8, hidden=16, layers=3, cond_options={"dim": 6})
    assert "g_cond.embed" in G.state_dict() and G.g_cond.embed.shape == (K, 6)
    tables = [n for n, p in G.named_parameters() if p.shape == (K, 6)]
    assert tables == ["g_cond.embed"]  # one shared table, not one per norm layer
    with torch.no_grad():  # let the (zero-initialized) gain / bias maps act so e(y) matters
        for norm in G.norms:
            norm.gain_proj.weight.normal_()
            norm.bias_proj.weight.normal_()
    G(torch.randn(4, 8), torch.tensor([0, 1, 2, 3])).square().mean().backward()
    assert G.g_cond.embed.grad is not None and G.g_cond.embed.grad.abs().sum() > 0


def test_shared_errors_name_the_key():
    with pytest.raises(GanforgeError, match=r"model\.z_dim=8 .*num_blocks\+1=3.*multiple of 3 \(e\.g\. 9\)"):
        build_g("mlp", "shared", z_dim=8, hidden=16, layers=2)
    with pytest.raises(GanforgeError, match="num_classes"):
        G_CONDITIONING.build("shared", {}, num_classes=0)
    with pytest.raises(GanforgeError, match="labels"):
        build_g("mlp", "shared", z_dim=9, hidden=16, layers=2).g_cond.prepare(torch.randn(2, 9), None)


# ------------------------------------------------------------------------------------------------------- InfoGAN
INFO = {"discrete": [3, 4], "continuous": 2}  # code_dim 9, the last 9 coordinates of z


def test_infogan_sample_z_writes_one_hot_and_uniform_codes_after_the_noise():
    G = build_g("mlp", "infogan", num_classes=0, z_dim=16, hidden=16, layers=2, cond_options=INFO)
    z = G.sample_z(4000, generator=torch.Generator().manual_seed(0))
    noise, d1, d2, cont = z[:, :7], z[:, 7:10], z[:, 10:14], z[:, 14:]
    for block, k in ((d1, 3), (d2, 4)):
        assert torch.equal(block.sum(1), torch.ones(4000)) and set(block.unique().tolist()) == {0.0, 1.0}
        assert block.mean(0).tolist() == pytest.approx([1 / k] * k, abs=0.03)  # categories drawn uniformly
    assert cont.min() >= -1 and cont.max() <= 1 and cont.mean(0).abs().max() < 0.05
    assert cont.var(0).tolist() == pytest.approx([1 / 3, 1 / 3], abs=0.03)  # U(-1, 1) has variance 1/3
    assert noise.mean().abs() < 0.03 and noise.std().item() == pytest.approx(1.0, abs=0.03)
    same = G.sample_z(5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(same, G.sample_z(5, generator=torch.Generator().manual_seed(1)))  # seeded: reproducible
    trunc = G.sample_z(2000, generator=torch.Generator().manual_seed(2), truncation=0.5)
    assert trunc[:, :7].abs().max() <= 0.5  # truncation acts on the noise ...
    assert trunc[:, 14:].abs().max() > 0.9 and torch.equal(trunc[:, 7:10].sum(1), torch.ones(2000))  # not the codes


def test_plain_generators_sample_z_unchanged():
    G = build_g("mlp", "none", num_classes=0, z_dim=5, hidden=16, layers=2)
    assert torch.equal(G.sample_z(3, generator=torch.Generator().manual_seed(4)),
                       torch.randn(3, 5, generator=torch.Generator().manual_seed(4)))


def test_infogan_inject_concat_and_cbn():
    torch.manual_seed(0)
    G = build_g("dcgan", "infogan", num_classes=0, shape=(3, 16, 16), z_dim=16, g_ch=4, cond_options=INFO)
    assert G.linear.in_features == 16 and not norm_inputs(G, G.sample_z(2), None)  # concat: all of z, plain BN
    G = build_g("dcgan", "infogan", num_classes=0, shape=(3, 16, 16), z_dim=16, g_ch=4,
                cond_options={**INFO, "inject": "cbn"})
    assert G.linear.in_features == 7  # cbn: the noise part only ...
    z = G.sample_z(3)
    seen = norm_inputs(G, z, None)
    assert len(seen) == G.g_cond.num_blocks and all(torch.equal(c, z[:, 7:]) for c in seen)  # ... codes to the norms
    assert torch.equal(G.g_cond.prepare(z, None).x, z[:, :7])


def test_infogan_in_a_labelled_run_adds_labels_to_the_codes():
    G = build_g("mlp", "infogan", num_classes=K, z_dim=16, hidden=16, layers=2, cond_options=INFO)
    z, y = G.sample_z(2), torch.tensor([1, 3])
    assert torch.equal(G.g_cond.prepare(z, y).x, torch.cat([z, torch.eye(K)[y]], dim=1))


def test_infogan_errors_name_the_key():
    with pytest.raises(GanforgeError, match=r"model\.z_dim=9 must be larger than the code size 9"):
        build_g("mlp", "infogan", num_classes=0, z_dim=9, hidden=16, layers=2, cond_options=INFO)
    with pytest.raises(GanforgeError, match="inject"):
        G_CONDITIONING.build("infogan", {"inject": "add"}, num_classes=0)
    with pytest.raises(GanforgeError, match="discrete_weight"):
        G_CONDITIONING.build("infogan", {"discrete_weight": -1.0}, num_classes=0)
    G = build_g("mlp", "infogan", num_classes=0, z_dim=16, hidden=16, layers=2, cond_options={"inject": "cbn"})
    with pytest.raises(GanforgeError, match="inject: cbn .*norm layers"):  # mlp without g_norm has none
        G(G.sample_z(2))


def test_q_losses_take_the_reference_values():
    q = InfoQ(feature_dim=3, discrete=(10, 4), continuous=2)
    with torch.no_grad():
        for layer in (q.logits, q.mu, q.log_var):
            layer.weight.zero_()
            layer.bias.zero_()
        q.mu.bias.copy_(torch.tensor([0.25, -0.5]))
    h = torch.randn(5, 3)
    codes = torch.cat([torch.eye(10)[[0, 3, 9, 2, 2]], torch.eye(4)[[1, 0, 3, 2, 1]],
                       torch.tensor([0.25, -0.5]).expand(5, 2)], dim=1)
    out = q.losses(h, codes)
    assert out["info_discrete"].item() == pytest.approx(math.log(10) + math.log(4), abs=1e-5)  # uniform logits
    assert out["info_continuous"].item() == pytest.approx(2 * 0.9189385, abs=1e-5)  # c = mu, var = 1: 0.5 ln 2pi
    codes[:, 14:] += 1.0  # |c - mu| = 1, var = 1: + 1/2 per code
    assert q.losses(h, codes)["info_continuous"].item() == pytest.approx(2 * (0.9189385 + 0.5), abs=1e-5)
    weighted = InfoQ(feature_dim=3, discrete=(10, 4), continuous=2, discrete_weight=0.5, continuous_weight=2.0)
    weighted.load_state_dict(q.state_dict())
    ctx = SimpleNamespace(d_fake=DOutput(torch.zeros(5), h=h), z=torch.cat([torch.randn(5, 4), codes], dim=1))
    terms = weighted.g_terms(ctx)
    assert terms["info_discrete"].item() == pytest.approx(0.5 * (math.log(10) + math.log(4)), abs=1e-5)
    assert terms["info_continuous"].item() == pytest.approx(2.0 * 2 * (0.9189385 + 0.5), abs=1e-5)


def test_info_loss_reaches_g_and_q():
    torch.manual_seed(0)
    raw = infogan_run()
    cfg = from_dict(raw)
    G, D, _ = build_models(cfg, build_dataset(cfg.data))
    q = G.g_cond.terms(feature_dim=D.backbone.feature_dim)[0]
    ctx = Context(G=G, D=D, real=torch.zeros(8, 2), y_real=None, z=G.sample_z(8), y_fake=None, phase="G")
    sum(q.g_terms(ctx).values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in q.parameters())
    assert G.linears[0].weight.grad.abs().sum() > 0


def infogan_run(**options) -> dict:
    return {
        "seed": 0,
        "data": {"name": "ring8", "n": 256},
        "model": {"name": "mlp", "z_dim": 8, "hidden": 16, "layers": 2},
        "conditioning": {"g": {"name": "infogan", "discrete": [4], "continuous": 1, **options}},
        "loss": {"name": "hinge"},
        "optim": {"d_steps": 2},
        "train": {"steps": 2, "batch_size": 16, "log_every": 1, "sample_every": 0, "ckpt_every": 0, "mode_every": 0,
                  "tensorboard": False, "threads": 1},
    }


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_q_head_trains_with_g_and_is_frozen_in_d_steps(tmp_path):
    torch.manual_seed(0)
    tr = Trainer(from_dict(infogan_run()), tmp_path / "run", progress=False, dist=DistInfo(),
                 device=torch.device("cpu"))
    q = tr.terms["conditioning.g:InfoQ"]
    assert q.logits.in_features == tr.D.backbone.feature_dim  # sized from the build context given to terms()
    phases = {p.name: p for p in tr.phases}
    assert [t for t in phases["Gmain"].terms if t is q] and not [t for t in phases["Dmain"].terms if t is q]
    run, B = tr.runner, tr.cfg.train.batch_size
    q0, g0, d0 = _snapshot(q), _snapshot(tr.G), _snapshot(tr.D)
    micro = run.micro_batches(0, run.latents("latents", 0))
    run.run(phases["Dmain"], micro, 0, StepInfo(0, 0, 2, B, 0))
    assert _same(q0, _snapshot(q)) and _same(g0, _snapshot(tr.G)) and not _same(d0, _snapshot(tr.D))
    d1 = _snapshot(tr.D)
    logged = run.run(phases["Gmain"], run.with_latents(micro, run.latents("latents-G", 0)), 0, StepInfo(0, 0, 2, B, B))
    assert {"info_discrete", "info_continuous"} <= set(logged) and all(math.isfinite(v) for v in logged.values())
    assert not _same(q0, _snapshot(q)) and not _same(g0, _snapshot(tr.G)) and _same(d1, _snapshot(tr.D))
    q1 = _snapshot(q)
    for _ in range(2):  # whole steps (2 D steps each): Q keeps moving, only through G's optimizer
        tr.train_step()
    assert not _same(q1, _snapshot(q))
    in_d = {id(p) for g in tr.opt["D"].param_groups for p in g["params"]}
    in_g = {id(p) for g in tr.opt["G"].param_groups for p in g["params"]}
    assert all(id(p) in in_g and id(p) not in in_d for p in q.parameters())


# ------------------------------------------------------------------------------------------- terms() with context
def test_terms_receive_the_build_context_they_name():
    cfg = from_dict(infogan_run())
    dataset = build_dataset(cfg.data)
    G, D, _ = build_models(cfg, dataset)
    ctx = _Context(cfg, dataset, D, 0)

    def wants(*, feature_dim, dataset_size, tap_shapes):
        return feature_dim, dataset_size, tap_shapes

    feature_dim, size, taps = ctx.call(wants, "conditioning.g")
    assert feature_dim == D.backbone.feature_dim and size == 256 and list(taps) == ["block0", "block1"]
    assert ctx.call(lambda: ["no context"], "model") == ["no context"]

    def bogus(*, not_context):
        return []

    with pytest.raises(GanforgeError, match="conditioning.d: terms\\(\\) asks for not_context"):
        ctx.call(bogus, "conditioning.d")


# ----------------------------------------------------------------------------------------------- fake-label prior
COUNTS = (4, 12, 24)  # an imbalanced labelled folder: class shares 0.1, 0.3, 0.6


@pytest.fixture(scope="module")
def imbalanced_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imbalanced")
    rng = np.random.default_rng(0)
    for k, n in enumerate(COUNTS):
        (root / f"class{k}").mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / f"class{k}" / f"{i}.png")
    return root


def folder_run(root, fake_labels: str | None = None) -> dict:
    cond = {"g": {"name": "cbn"}, "d": {"name": "projection"}}
    if fake_labels is not None:
        cond["fake_labels"] = fake_labels
    return {
        "seed": 0,
        "data": {"name": "folder", "root": str(root), "channels": 1, "progress": False},
        "model": {"name": "mlp", "z_dim": 4, "hidden": 8, "layers": 1},
        "conditioning": cond,
        "train": {"steps": 1, "batch_size": 32, "sample_every": 0, "ckpt_every": 0, "tensorboard": False,
                  "threads": 1},
    }


def _drawn_labels(tr: Trainer, draws: int = 50) -> torch.Tensor:
    return torch.cat([tr.runner.latents(stream, i)[1] for i in range(draws) for stream in ("latents", "latents-G")])


def _chi2(labels: torch.Tensor, probs: list[float]) -> float:
    counts = torch.bincount(labels, minlength=len(probs)).double()
    expected = torch.tensor(probs, dtype=torch.float64) * len(labels)
    return float(((counts - expected) ** 2 / expected).sum())


def test_prior_fake_labels_follow_class_frequencies_and_uniform_stays_uniform(imbalanced_folder, tmp_path):
    prior = [n / sum(COUNTS) for n in COUNTS]
    bound = 13.8  # chi-square, 2 degrees of freedom, p = 0.001
    tr = Trainer(from_dict(folder_run(imbalanced_folder, "prior")), tmp_path / "prior", progress=False,
                 dist=DistInfo(), device=torch.device("cpu"))
    assert tr.runner.class_prior().tolist() == pytest.approx(prior)
    labels = _drawn_labels(tr)  # 3200 labels
    assert _chi2(labels, prior) < bound and _chi2(labels, [1 / 3] * 3) > 1000
    tr = Trainer(from_dict(folder_run(imbalanced_folder)), tmp_path / "uniform", progress=False, dist=DistInfo(),
                 device=torch.device("cpu"))
    labels = _drawn_labels(tr)
    assert _chi2(labels, [1 / 3] * 3) < bound and _chi2(labels, prior) > 1000
    for i in range(3):  # the default draws exactly what it always drew: randint(0, K) after z, same generator
        gen = generator(0, "latents", i)
        tr.G.sample_z(32, generator=gen)
        assert torch.equal(tr.runner.latents("latents", i)[1], torch.randint(0, 3, (32,), generator=gen))


def test_fake_labels_config_key(imbalanced_folder):
    with pytest.raises(GanforgeError, match="conditioning.fake_labels: expected one of uniform, prior, got 'zipf'"):
        from_dict(folder_run(imbalanced_folder, "zipf"))
    unconditional = infogan_run()
    unconditional["conditioning"]["fake_labels"] = "prior"
    with pytest.raises(GanforgeError, match="conditioning.fake_labels: 'prior' .*unconditional"):
        from_dict(unconditional)
    default = from_dict(folder_run(imbalanced_folder)).to_dict()
    assert "fake_labels" not in default["conditioning"]  # a config saved before the key existed reads the same
    old = copy.deepcopy(default)
    assert config_changes(old, from_dict(folder_run(imbalanced_folder, "uniform")).to_dict()) == {}
    prior = from_dict(folder_run(imbalanced_folder, "prior")).to_dict()
    assert prior["conditioning"]["fake_labels"] == "prior" and from_dict(prior).fake_labels == "prior"
    assert config_changes(old, prior) == {"conditioning.fake_labels": ("<absent>", "prior")}
