"""Metric-learning D heads: ContraGAN's 2C loss and ReACGAN's D2D-CE, as pure functions, through the head and its
term, and over 2 gloo ranks (the loss of the global batch)."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from helpers import TINY_DIGITS

from ganforge.conditioning.d_contra import contrastive_2c_loss, contrastive_2c_per_sample
from ganforge.conditioning.d_d2dce import d2d_ce_loss, d2d_ce_per_sample
from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.objectives.base import Context
from ganforge.registries import D_HEADS

HEADS = ["2c", "d2d-ce"]
E1, E2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])


def rows(*vectors: torch.Tensor) -> torch.Tensor:
    return torch.stack(vectors)


def labels(*ys: int) -> torch.Tensor:
    return torch.tensor(ys)


# ---- the 2C loss (Kang & Park 2020) --------------------------------------------------------------------------------

def test_2c_same_class_identical_embeddings_and_proxy_is_zero():
    # every term of the denominator is also a positive: the ratio is 1
    e = rows(E1, E1)
    assert contrastive_2c_loss(e, e, labels(0, 0), 1.0).item() == pytest.approx(0.0, abs=1e-7)


def test_2c_orthogonal_embeddings_of_two_classes():
    # each row: -log(e^1 / (e^1 + e^0)) = ln(1 + e^-1); keeping the diagonal as a positive would give ln(1 + 1/(2e))
    e = rows(E1, E2)
    per = contrastive_2c_per_sample(e, e, labels(0, 1), 1.0)
    assert per.tolist() == pytest.approx([math.log(1 + math.exp(-1))] * 2, rel=1e-6)
    assert contrastive_2c_loss(e, e, labels(0, 1), 1.0).item() == pytest.approx(0.3133, abs=1e-4)


def test_2c_temperature_divides_the_similarities():
    e = rows(E1, E2)  # -log(e^2 / (e^2 + 1)) at tau = 0.5
    assert contrastive_2c_loss(e, e, labels(0, 1), 0.5).item() == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)


def test_2c_same_label_sample_is_a_positive():
    # three samples, 1 and 3 share a class with e3 = e1; row 1: proxy e^1 and sample 3 e^1 are positives,
    # sample 2 (e^0) is not: -log(2e / (2e + 1))
    e, y = rows(E1, E2, E1), labels(0, 1, 0)
    per = contrastive_2c_per_sample(e, e, y, 1.0)
    assert per[0].item() == pytest.approx(math.log(1 + 1 / (2 * math.e)), rel=1e-6)


def test_2c_small_temperature_stays_finite():
    # e^(1/0.01) overflows float32; the logsumexp form gives ln(1 + e^-100) ~ 0
    e = rows(E1, E2)
    value = contrastive_2c_loss(e, e, labels(0, 1), 0.01)
    assert torch.isfinite(value) and value.item() == pytest.approx(0.0, abs=1e-6)


# ---- D2D-CE (Kang et al. 2021) -------------------------------------------------------------------------------------

def test_d2d_ce_paper_value_not_studiogans():
    # positives f.v = 1 -> [1 - 0.98]_- = 0; negatives f.f = 0 -> [0 - 0.02]_+ = 0: -log(1 / 2) per row.
    # StudioGAN's row-max shift of the negatives alone would give ln(1 + e^0.04) = 0.7133.
    e = rows(E1, E2)
    value = d2d_ce_loss(e, e, labels(0, 1))
    assert value.item() == pytest.approx(math.log(2), rel=1e-6)
    assert abs(value.item() - math.log(1 + math.exp(0.04))) > 0.01


def test_d2d_ce_same_class_samples_are_not_negatives():
    # a third sample of class 0 equal to e1 (f1.f3 = 1 would add e^(0.98/0.5) to row 1's negatives) leaves row 1's
    # value at ln 2; row 2 (class 1) now has two negatives: ln 3
    e, y = rows(E1, E2), labels(0, 1)
    before = d2d_ce_per_sample(e, e, y)
    e3, y3 = rows(E1, E2, E1), labels(0, 1, 0)
    after = d2d_ce_per_sample(e3, e3, y3)
    assert after[0].item() == pytest.approx(before[0].item(), rel=1e-6) == pytest.approx(math.log(2), rel=1e-6)
    assert after[1].item() == pytest.approx(math.log(3), rel=1e-6)


def test_d2d_ce_margins():
    # row 1: f.v = 0.5 -> [0.5 - 0.98]_- / 0.5 = -0.96, its negative 0: ln(1 + e^0.96); row 2 as before: ln 2
    v = rows(torch.tensor([0.5, math.sqrt(0.75)]), E2)
    per = d2d_ce_per_sample(rows(E1, E2), v, labels(0, 1))
    assert per.tolist() == pytest.approx([math.log(1 + math.exp(0.96)), math.log(2)], rel=1e-6)
    # m_n defaults to 1 - m_p: with m_p = 0.5, f1.f2 = 0.8 gives the negative (0.8 - 0.5) / 0.5 = 0.6 and positive 0
    f = rows(E1, torch.tensor([0.8, 0.6]))
    per = d2d_ce_per_sample(f, f, labels(0, 1), m_p=0.5)
    assert per.tolist() == pytest.approx([math.log(1 + math.exp(0.6))] * 2, rel=1e-6)
    # positives closer than m_p and negatives farther than m_n are not moved: the loss is flat there
    close = rows(torch.tensor([0.99, math.sqrt(1 - 0.99 ** 2)]), E2)
    assert d2d_ce_loss(rows(E1, E2), close, labels(0, 1)).item() == pytest.approx(math.log(2), rel=1e-6)


def test_d2d_ce_small_temperature_stays_finite():
    f = rows(E1, torch.tensor([0.8, 0.6]))  # negative logit 0.78 / 0.005 = 156: e^156 overflows float32
    value = d2d_ce_loss(f, f, labels(0, 1), temperature=0.005)
    assert torch.isfinite(value) and value.item() == pytest.approx(0.78 / 0.005, rel=1e-4)


# ---- through the head and its term -----------------------------------------------------------------------------------

def identity_head(name: str, proxies: torch.Tensor, **options):
    """A head whose embedding layer is the identity on 2-D features, with the given proxy rows."""
    head = D_HEADS.build(name, {"sn": False, "embed_dim": 2, **options}, in_features=2, num_classes=len(proxies))
    with torch.no_grad():
        head.embed_layer.weight.copy_(torch.eye(2))
        head.embed_layer.bias.zero_()
        head.proxies.weight.copy_(proxies)
    return head


def context(head, h: torch.Tensor, y: torch.Tensor, phase: str, y_other: torch.Tensor | None = None) -> Context:
    """D = the head on features h; G = identity on z = h. `y_other` are the labels of the other role."""
    other = y if y_other is None else y_other
    real_y, fake_y = (y, other) if phase == "D" else (other, y)
    return Context(G=lambda z, _y: z, D=lambda x, yy: head(x, yy), real=h, y_real=real_y, z=h.clone(),
                   y_fake=fake_y, phase=phase)


@pytest.mark.parametrize("name,expected", [("2c", math.log(1 + math.exp(-1))), ("d2d-ce", math.log(2))])
def test_head_term_value_d_on_reals_g_on_fakes(name, expected):
    head = identity_head(name, rows(E1, E2, E1 + E2), weight=2.0)
    (term,) = head.terms()
    h, y = rows(3 * E1, 0.5 * E2), labels(0, 1)  # normalised by the head: e = (E1, E2), proxies v_y = (E1, E2)
    d = term.d_terms(context(head, h, y, "D", y_other=labels(2, 2)))
    g = term.g_terms(context(head, h, y, "G", y_other=labels(2, 2)))
    assert set(d) == {term.name} and set(g) == {f"{term.name}_g"}  # distinct keys in the training log
    assert d[term.name].item() == pytest.approx(2.0 * expected, rel=1e-5)  # weight 2
    assert g[f"{term.name}_g"].item() == pytest.approx(2.0 * expected, rel=1e-5)  # y_fake, not y_real, used


@pytest.mark.parametrize("name", HEADS)
def test_head_outputs_unit_embedding_and_proxy_of_the_label(name):
    torch.manual_seed(0)
    head = D_HEADS.build(name, {"embed_dim": 6}, in_features=5, num_classes=3)
    h, y = torch.randn(4, 5), labels(2, 0, 1, 2)
    out = head(h, y)
    assert out.adv.shape == (4,) and out.embed.shape == out.proxy.shape == (4, 6)
    assert out.embed.norm(dim=1).tolist() == pytest.approx([1.0] * 4, abs=1e-6)
    torch.testing.assert_close(out.adv, head.psi(h).squeeze(1))  # adv = psi(h)
    p = head.proxies.weight[y]
    torch.testing.assert_close(out.proxy, p / p.norm(dim=1, keepdim=True))


@pytest.mark.parametrize("name", HEADS)
def test_head_declarations(name):
    entry = D_HEADS.get(name)
    assert entry.declares("uses_labels") and {"embed", "proxy"} <= entry.declares("provides")
    (term,) = D_HEADS.build(name, {}, in_features=4, num_classes=3).terms()
    assert term.uses_labels and not term.decomposable and not term.may_be_negative
    assert term.requires <= entry.declares("provides")


def test_defaults_follow_the_papers_configs():
    (c,) = D_HEADS.build("2c", {}, in_features=4, num_classes=3).terms()
    (r,) = D_HEADS.build("d2d-ce", {}, in_features=4, num_classes=3).terms()
    assert (c.weight, c.temperature) == (1.0, 1.0)
    assert (r.weight, r.temperature, r.m_p, r.m_n) == (0.5, 0.5, 0.98, None)
    assert D_HEADS.get("2c").defaults()["embed_dim"] == 512


@pytest.mark.parametrize("name", HEADS)
def test_accumulation_is_refused_at_config_time(name):
    raw = copy.deepcopy(TINY_DIGITS)
    raw["conditioning"]["d"] = {"name": name}
    raw["train"]["accumulate"] = 2
    with pytest.raises(GanforgeError, match="accumulate"):
        from_dict(raw)


# ---- errors ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", HEADS)
def test_errors_name_the_head(name):
    where = f"conditioning.d '{name}'"
    with pytest.raises(GanforgeError, match=f"{where}.*num_classes"):
        D_HEADS.build(name, {}, in_features=4, num_classes=0)
    head = D_HEADS.build(name, {}, in_features=4, num_classes=3)
    with pytest.raises(GanforgeError, match=f"{where}.*labels"):
        head(torch.randn(2, 4), None)
    for key, bad in (("temperature", 0.0), ("weight", -1.0), ("embed_dim", 0)):
        with pytest.raises(GanforgeError, match=f"{where}: {key}") as err:
            D_HEADS.build(name, {key: bad}, in_features=4, num_classes=3)
        assert "\n" not in str(err.value)
    if name == "d2d-ce":
        with pytest.raises(GanforgeError, match=f"{where}: m_p"):
            D_HEADS.build(name, {"m_p": 1.5}, in_features=4, num_classes=3)


# ---- the global batch under DDP --------------------------------------------------------------------------------------

WORLD, BATCH, FEATURES, CLASSES = 2, 8, 3, 3
GLOBAL_Y = labels(0, 1, 2, 0, 1, 2, 0, 0)  # same-class pairs within and across the two halves


def fixed_head_and_batch(name: str):
    """The same head weights and global batch on every process."""
    torch.manual_seed(0)
    head = D_HEADS.build(name, {"embed_dim": 4, "sn": False, "m_p": 0.5} if name == "d2d-ce" else
                         {"embed_dim": 4, "sn": False}, in_features=FEATURES, num_classes=CLASSES)
    return head, torch.randn(BATCH, FEATURES)


def term_value_and_grads(name: str, part: slice, distributed: bool) -> dict[str, torch.Tensor]:
    """The D-phase term on rows `part` of the global batch: value, grad w.r.t. those rows' features, param grads."""
    head, h = fixed_head_and_batch(name)
    h = h[part].clone().requires_grad_(True)
    ctx = context(head, h, GLOBAL_Y[part], "D")
    ctx.distributed = distributed
    (term,) = head.terms()
    (value,) = term.d_terms(ctx).values()
    value.backward()
    grads = {f"param.{k}": p.grad.clone() for k, p in head.named_parameters() if p.grad is not None}
    return {"value": value.detach(), "grad_h": h.grad.clone(), **grads}


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        per = BATCH // WORLD
        part = slice(rank * per, (rank + 1) * per)
        torch.save({name: term_value_and_grads(name, part, True) for name in HEADS}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.barrier()
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_contrastive")
    mp.spawn(_ddp_worker, args=(str(out / "store"), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize("name", HEADS)
def test_two_gloo_ranks_equal_one_process_with_the_global_batch(name, ddp_results):
    """Each rank computes the loss of the GLOBAL batch (embeddings, proxies, labels all-gathered), so its value equals
    the single-process value on the full batch.

    Gradients: every rank holds the same global loss L, and all_gather's backward sums onto each rank's own rows the
    gradients of all W ranks' copies of L, so rank r's feature gradient is W * dL/dh[rows_r] and its parameter
    gradient W times rank r's share of dL/dtheta. The trainer averages parameter gradients over ranks
    (`all_reduce_grads`): (1/W) * sum_r W * share_r = dL/dtheta, the single-process gradient. Both are checked:
    grad_h / W against the single-process rows, and the rank mean of parameter gradients against the single-process
    ones.
    """
    single = term_value_and_grads(name, slice(None), False)
    assert single["value"].item() > 0
    per = BATCH // WORLD
    for rank, result in enumerate(ddp_results):
        r = result[name]
        torch.testing.assert_close(r["value"], single["value"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(r["grad_h"] / WORLD, single["grad_h"][rank * per:(rank + 1) * per],
                                   rtol=1e-4, atol=1e-6)
    params = [k for k in single if k.startswith("param.")]
    assert {"param.embed_layer.weight", "param.proxies.weight"} <= set(params)
    for k in params:
        mean = sum(result[name][k] for result in ddp_results) / WORLD
        torch.testing.assert_close(mean, single[k], rtol=1e-4, atol=1e-6)
