"""Conditional evaluation metrics: class consistency (`class-acc`), CAS / GAN-test linear probes (`cas`) and per-class
PRDC (`prdc-class`), on hand-built features with known answers, on the digits classifier, and end to end through
`ganforge eval` and the training hook.
"""
import copy
import json
import math
from pathlib import Path

import pytest
import torch
from scipy.optimize import brentq

from helpers import TINY_DIGITS, shared_cache

from ganforge.cli.main import main
from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.metrics.base import Features
from ganforge.metrics.cas import fit_probe, split_halves
from ganforge.metrics.evaluate import HIGHER_IS_BETTER, Evaluator, build_metrics
from ganforge.metrics.prdc import prdc
from ganforge.metrics.prdc_class import class_prdc
from ganforge.metrics.sources import from_dataset
from ganforge.models.base import Generator
from ganforge.registries import DATASETS, load_all
from ganforge.training.trainer import train

CONDITIONAL = ("class-acc", "cas", "prdc-class")
N = 200


def gaussian_classes(k: int = 4, per_class: int = 100, dim: int = 16, sep: float = 20.0, seed: int = 0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of k classes: unit Gaussians around means sep apart on the coordinate axes (no overlap at all)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(k).repeat_interleave(per_class)
    means = sep * torch.eye(k, dim)
    return means[y] + torch.randn(len(y), dim, generator=gen), y


def feats(x: torch.Tensor | None = None, y: torch.Tensor | None = None, logits: torch.Tensor | None = None
          ) -> Features:
    n = len(x) if x is not None else len(logits)
    return Features(n=n, pool=x, labels=y, logits=logits)


def metric(spec: str):
    (m,) = build_metrics([spec])
    return m


def run(m, fake: Features, real: Features | None = None) -> dict[str, float]:
    m.check_samples(fake, real)
    return m.compute(fake, real)


# ------------------------------------------------------------------------------------------------------ class-acc
def test_class_acc_counts_top1_and_top5_hits_by_hand():
    """10 images, K = 10: logits rank classes (label + shift) mod 10 first, i.e. the label is at rank `shift`."""
    k = 10
    y = torch.arange(10)
    ranks = torch.tensor([0, 0, 0, 0, 1, 2, 4, 5, 7, 9])  # where the true label lands in each image's ordering
    logits = torch.zeros(10, k)
    for i in range(10):
        order = [(int(y[i]) + j - int(ranks[i])) % k for j in range(k)]  # order[ranks[i]] == y[i]
        logits[i, order] = torch.linspace(10, 1, k)
    with pytest.warns(UserWarning, match="metric class-acc: n=10 source samples, fewer than the 100 it needs"):
        out = run(metric("class-acc"), feats(y=y, logits=logits))  # 10 images per class to mean much
    assert out["class_acc"] == pytest.approx(4 / 10)  # rank 0: four images
    assert out["class_acc_top5"] == pytest.approx(7 / 10)  # ranks 0..4: seven images


@pytest.mark.filterwarnings("ignore:metric class-acc:UserWarning")  # 3 images: below the 10 per class floor
def test_class_acc_top5_left_out_when_it_is_trivially_one_and_real_accuracy_on_request():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 2.0, 1.0], [2.0, 0.0, 1.0]])  # argmax 0, 1, 0
    fake = feats(y=torch.tensor([0, 1, 2]), logits=logits)
    real = feats(y=torch.tensor([0, 0, 2]), logits=logits)
    m = metric("class-acc:real=true")
    assert m.needs_reference and "class_acc_real" in m.keys
    out = run(m, fake, real)
    assert out == pytest.approx({"class_acc": 2 / 3, "class_acc_real": 1 / 3})  # K = 3 <= 5: no top-5


@pytest.mark.filterwarnings("ignore:metric class-acc:UserWarning")  # 3 images: below the 10 per class floor
@pytest.mark.parametrize("width, labels", [(10, torch.tensor([0, 1, 2])), (3, torch.tensor([0, 5, 9]))])
def test_class_acc_refuses_a_classifier_of_other_classes(width, labels):
    fake = feats(y=labels, logits=torch.zeros(3, width))
    with pytest.raises(GanforgeError, match=rf"class-acc: the backbone gives {width} logits .* span "
                                            rf"{int(labels.max()) + 1} classes.*--backbone"):
        run(metric("class-acc"), fake)


# ------------------------------------------------------------------------------------------------------- cas probe
def test_split_halves_is_stratified_disjoint_and_seeded():
    y = torch.tensor([0] * 7 + [1] * 4 + [2] * 1 + [1] * 3)
    a, b = split_halves(y, seed=3)
    assert sorted(torch.cat([a, b]).tolist()) == list(range(len(y)))  # a partition
    assert torch.bincount(y[a], minlength=3).tolist() == [3, 3, 0]  # floor(n_c / 2): 7 -> 3, 7 -> 3, 1 -> 0
    assert torch.equal(split_halves(y, seed=3)[0], a)
    assert any(not torch.equal(split_halves(y, seed=s)[0], a) for s in range(4, 10))


def test_probe_minimises_cross_entropy_plus_half_wd_squared_norm():
    """Two 1-D points z = -1 (class 0) and z = +1 (class 1). By symmetry the optimum has b = 0 and W = (-u/2, u/2),
    so the objective is softplus(-u) + wd u^2 / 4, stationary where sigmoid(-u) = wd u / 2."""
    wd = 0.1
    u = brentq(lambda t: 1 / (1 + math.exp(t)) - wd * t / 2, 0.0, 100.0)
    probe = fit_probe(torch.tensor([[-3.0], [5.0]]), torch.tensor([0, 1]), 2, steps=100, wd=wd)  # standardised: -1, 1
    assert probe.weight[0].tolist() == pytest.approx([-u / 2, u / 2], abs=1e-6)
    assert probe.bias.abs().max() < 1e-6


def test_cas_of_well_separated_classes_is_one():
    x, y = gaussian_classes()
    x2, y2 = gaussian_classes(seed=1)
    assert run(metric("cas"), feats(x2, y2), feats(x, y)) == pytest.approx({"cas": 1.0, "cas_real": 1.0,
                                                                            "gan_test": 1.0})


def test_a_generator_replaying_half_a_has_exactly_the_real_baseline():
    """CAS trains on generated data only; replaying the real half A, it trains the same probe as cas_real."""
    x, y = gaussian_classes(sep=2.0, per_class=150)  # overlapping classes: accuracy well below 1
    a, _ = split_halves(y, seed=0)
    out = run(metric("cas"), feats(x[a], y[a]), feats(x, y))
    assert 0.6 < out["cas_real"] < 0.98
    assert out["cas"] == out["cas_real"]


def test_shuffled_labels_give_chance_and_shifted_labels_give_zero():
    x, y = gaussian_classes(k=4, per_class=200)
    fake_x, fake_y = gaussian_classes(k=4, per_class=200, seed=1)
    shuffled = fake_y[torch.randperm(len(fake_y), generator=torch.Generator().manual_seed(0))]
    out = run(metric("cas"), feats(fake_x, shuffled), feats(x, y))
    assert out["cas_real"] == 1.0
    assert abs(out["cas"] - 0.25) < 0.1 and abs(out["gan_test"] - 0.25) < 0.1  # chance: 1/K
    shifted = (fake_y + 1) % 4  # every image of class c labelled c + 1
    out = run(metric("cas"), feats(fake_x, shifted), feats(x, y))
    assert out["cas"] == 0.0 and out["gan_test"] == 0.0 and out["cas_real"] == 1.0


@pytest.fixture(scope="module")
def digits_splits(tmp_path_factory):
    load_all()
    return tuple(DATASETS.build("digits", {}, split=s, cache_dir=None) for s in ("train", "test"))


def test_replaying_the_real_training_set_gives_cas_close_to_the_real_baseline(digits_splits):
    """METHODS.md's CAS test, on the digits classifier's features: train split replayed, test split as reference."""
    train_ds, test_ds = digits_splits
    ev = Evaluator(test_ds, ["cas"], backbone="digits-classifier", progress=False)
    out = ev(from_dataset(train_ds, None))
    assert out["cas_real"] > 0.9
    assert abs(out["cas"] - out["cas_real"]) < 0.04


@pytest.mark.parametrize("spec, needle", [("cas:wd=-1", "cas.wd: must be >= 0"), ("cas:steps=0", "cas.steps"),
                                          ("prdc-class:k_dc=0", "prdc-class.k_dc"),
                                          ("class-acc:real=3", "class-acc.real")])
def test_bad_options_are_one_line_errors_naming_the_key(spec, needle):
    with pytest.raises(GanforgeError, match=needle) as e:
        build_metrics(spec)
    assert "\n" not in str(e.value)


def test_generated_classes_beyond_the_reference_are_refused():
    x, y = gaussian_classes(k=4)
    with pytest.raises(GanforgeError, match="cas: the generated labels reach class 3 .* classes 0..1"):
        run(metric("cas"), feats(x, y), feats(x[y < 2], y[y < 2]))


# ------------------------------------------------------------------------------------------------------ prdc-class
def test_identical_per_class_sets_give_one_everywhere():
    x, y = gaussian_classes(sep=3.0)
    out = run(metric("prdc-class"), feats(x, y), feats(x.clone(), y.clone()))
    assert out == pytest.approx({"class_precision": 1.0, "class_recall": 1.0, "class_density": 1.0,
                                 "class_coverage": 1.0})


def test_shifted_labels_lose_per_class_coverage_while_global_prdc_stays_high():
    """G reproduces the reference images exactly but labels class c's images c + 1: pooled, the two sets are the same
    set (PRDC = 1); within each class they are disjoint clusters 20 apart (PRDC = 0)."""
    x, y = gaussian_classes(k=4, per_class=100)
    shifted = (y + 1) % 4
    pooled = run(metric("prdc"), feats(x, shifted), feats(x, y))
    per_class = run(metric("prdc-class"), feats(x, shifted), feats(x, y))
    assert pooled == pytest.approx({"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0})
    assert per_class == {"class_precision": 0.0, "class_recall": 0.0, "class_density": 0.0, "class_coverage": 0.0}


def test_class_prdc_is_the_unweighted_mean_of_per_class_prdc_and_skips_small_classes():
    x, y = gaussian_classes(k=3, per_class=40, sep=2.0)
    fake_x, fake_y = gaussian_classes(k=3, per_class=40, sep=2.0, seed=1)
    keep = (fake_y != 2) | (torch.arange(len(fake_y)) % 40 < 5)  # class 2: 5 generated images, k = 5 needs 6
    with pytest.warns(UserWarning, match=r"prdc-class: 1 class\(es\) \(e.g. 2\) have at most k = 5"):
        means, per_class = class_prdc(x, y, fake_x[keep], fake_y[keep])
    assert sorted(per_class) == [0, 1]
    for c in (0, 1):
        assert per_class[c] == prdc(x[y == c], fake_x[fake_y == c])
    assert means["coverage"] == pytest.approx((per_class[0]["coverage"] + per_class[1]["coverage"]) / 2)


# -------------------------------------------------------------------------------------------------- all three
@pytest.mark.parametrize("name", CONDITIONAL)
def test_unlabelled_generated_images_are_a_one_line_error(name):
    x, y = gaussian_classes()
    fake = feats(x, None, logits=torch.zeros(len(x), 4))
    with pytest.raises(GanforgeError, match=rf"metric {name}: the generated images carry no class labels; is the "
                                            rf"generator class-conditional") as e:
        run(metric(name), fake, feats(x, y))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", CONDITIONAL)
def test_every_result_is_higher_is_better_for_best_checkpoints(name):
    m = metric(name + (":real=true" if name == "class-acc" else ""))
    assert set(m.keys) <= HIGHER_IS_BETTER


class _Unconditional(Generator):
    """A generator without classes: constant grey 8x8 images."""

    def __init__(self):
        super().__init__()
        self.z_dim, self.num_classes, self.img_shape = 2, 0, (1, 8, 8)
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, z, y=None):
        return torch.zeros(len(z), *self.img_shape)


def test_an_unconditional_generator_is_refused_through_the_evaluator():
    ev = Evaluator(None, ["class-acc"], backbone="digits-classifier", progress=False)
    with pytest.raises(GanforgeError, match="class-acc: the generated images carry no class labels"):
        ev(_Unconditional(), 20)


# ------------------------------------------------------------------------------------------ CLI and training hook
METRICS = ["class-acc", "cas", "prdc-class"]
KEYS = {"class_acc", "class_acc_top5", "cas", "cas_real", "gan_test", "class_precision", "class_recall",
        "class_density", "class_coverage"}


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory) -> Path:
    """A tiny conditional digits run whose training hook evaluates the three metrics at its last step."""
    raw = copy.deepcopy(TINY_DIGITS)
    raw["train"].update(ema_decay=0.0)
    raw["eval"] = {"every": 3, "metrics": METRICS, "n": N, "backbone": "digits-classifier", "best": "class_acc"}
    out = tmp_path_factory.mktemp("cond") / "run"
    with shared_cache(tmp_path_factory):
        train(from_dict(raw), out, progress=False)
    return out


def test_cli_eval_and_the_training_hook_report_the_same_keys_and_values(conditional_run, tmp_path):
    out = tmp_path / "result.json"
    args = ["eval", conditional_run, "--ref", "digits", "--metrics", ",".join(METRICS), "--backbone",
            "digits-classifier", "--n", N, "--json", out, "--no-progress"]
    assert main([str(a) for a in args]) == 0
    result = json.loads(out.read_text())
    assert set(result) - {"n", "n_ref", "protocol"} == KEYS
    assert all(0.0 <= result[k] <= 1.0 for k in KEYS - {"class_density"}) and result["class_density"] >= 0
    events = [json.loads(line) for line in (conditional_run / "metrics.jsonl").read_text().splitlines()]
    (hook,) = [e for e in events if e["event"] == "eval"]
    assert {k: hook[k] for k in KEYS} == pytest.approx({k: result[k] for k in KEYS}, abs=1e-9)
