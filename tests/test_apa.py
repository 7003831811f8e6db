"""APA: reals replaced row by row by this D step's fakes with probability p (labels too), only in D phases; p adapted
by ADA's rule on E[sign D(x~_r)]; an inner image augmentation; state; options; a tiny training run."""
from __future__ import annotations

import copy
import io
import json
import math

import pytest
import torch
from torch import nn

from helpers import TINY_DIGITS, last_state

from ganforge.augment.ada import ADA
from ganforge.augment.apa import APA
from ganforge.augment.diffaugment import DiffAugment
from ganforge.conditioning.base import DOutput
from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.objectives import Context
from ganforge.objectives.base import StepInfo
from ganforge.registries import AUGMENTATIONS, REGULARIZERS
from ganforge.training.rng import SampleRNG
from ganforge.training.stats import StatsWindow

KEY = (0, "phase", "Dmain", 3)


class TableG(nn.Module):
    """G(z) = z + shift: the latents are the fakes (shifted so they differ from the reals), no randomness."""

    def __init__(self, shift: float = -10.0):
        super().__init__()
        self.shift = nn.Parameter(torch.tensor(shift))

    def forward(self, z, y=None):
        return z + self.shift


class SquareD(nn.Module):
    """D(x, y) = sum(x^2) + y: reads the labels, so a fake's label must travel with it."""

    def forward(self, x, y=None):
        adv = x.flatten(1).pow(2).sum(1)
        return DOutput(adv=adv if y is None else adv + y.float())


def batch(b: int, shape=(2,), classes: int = 0, seed: int = 0):
    """Reals in (0, 1), latents in (0, 1) (fakes in (-10, -9)), and labels when `classes` > 0."""
    g = torch.Generator().manual_seed(seed)
    real, z = torch.rand(b, *shape, generator=g), torch.rand(b, *shape, generator=g)
    y_real = torch.randint(0, classes, (b,), generator=g) if classes else None
    y_fake = torch.randint(0, classes, (b,), generator=g) if classes else None
    return real, z, y_real, y_fake


def ctx_of(real, z, y_real=None, y_fake=None, phase="D", rows=None, total=None) -> Context:
    return Context(G=TableG(), D=SquareD(), real=real, y_real=y_real, z=z, y_fake=y_fake, phase=phase,
                   info=StepInfo(batch_size=total or len(real)), rows=rows, rng_key=KEY)


def replaced(ctx: Context, real: torch.Tensor) -> torch.Tensor:
    """(B,) bool: rows whose real became a fake (fakes are < -8, reals > 0)."""
    return (ctx.real.flatten(1) < -8).all(1)


# ------------------------------------------------------------------------------------------------ the substitution
def test_p_zero_returns_the_real_batch_unchanged_and_makes_no_fakes():
    real, z, y, yf = batch(16, classes=3)
    ctx = ctx_of(real, z, y, yf)
    APA(p=0.0).prepare(ctx)
    assert ctx.real is real and ctx.y_real is y
    assert ctx.cached("fake") is None and ctx._rng_calls == 0  # no G forward, no random draw


def test_p_one_gives_only_this_steps_fakes_with_their_labels_and_d_sees_them_as_reals():
    real, z, y, yf = batch(16, shape=(1, 3, 3), classes=5)
    ctx = ctx_of(real, z, y, yf)
    d_fake_before = ctx.d_fake  # a term's prepare might already have run D on the fakes ...
    stale = ctx.d_real  # ... and on the old reals
    APA(p=1.0).prepare(ctx)
    assert torch.equal(ctx.real, z - 10.0) and torch.equal(ctx.y_real, yf)
    assert ctx.cached("fake") is not None and torch.equal(ctx.real, ctx.cached("fake"))
    assert not ctx.real.requires_grad  # the fakes are detached in the D phase
    assert ctx.cached("d_real") is None  # dropped: it described the old reals
    assert ctx.cached("d_fake") is d_fake_before  # kept, with the very same fakes
    assert not torch.equal(ctx.d_real.adv, stale.adv)
    assert torch.equal(ctx.d_real.adv, ctx.d_fake.adv)  # D(x~_r, y~_r) = D(x_f, y_f) row by row


def test_about_a_fraction_p_of_the_rows_is_replaced_by_the_same_rows_fakes():
    b, p = 8192, 0.3
    real, z, _, _ = batch(b)
    ctx = ctx_of(real, z)
    APA(p=p).prepare(ctx)
    swap = replaced(ctx, real)
    assert swap.double().mean().item() == pytest.approx(p, abs=0.02)  # std sqrt(0.21 / 8192) = 0.005
    assert torch.equal(ctx.real[swap], z[swap] - 10.0)  # a row's own fake
    assert torch.equal(ctx.real[~swap], real[~swap])  # other rows untouched
    # The flags are the context's first per-sample draw, Bernoulli(p) per row.
    assert torch.equal(swap, SampleRNG((*KEY, 1), slice(0, b), b).bernoulli(p, b))


def test_the_same_rows_are_replaced_in_any_shard_of_the_global_batch():
    """One process, 2 ranks or 4 accumulation rounds: a row's flag (and label) depends only on its global row."""
    b = 32
    real, z, y, yf = batch(b, classes=4, seed=1)
    whole = ctx_of(real, z, y, yf)
    APA(p=0.5).prepare(whole)
    assert 0 < replaced(whole, real).sum() < b
    for parts in (2, 4):
        n = b // parts
        pieces = []
        for i in range(parts):
            rows = slice(i * n, (i + 1) * n)
            ctx = ctx_of(real[rows], z[rows], y[rows], yf[rows], rows=rows, total=b)
            APA(p=0.5).prepare(ctx)
            pieces.append(ctx)
        assert torch.equal(torch.cat([c.real for c in pieces]), whole.real)
        assert torch.equal(torch.cat([c.y_real for c in pieces]), whole.y_real)
    other = Context(G=TableG(), D=SquareD(), real=real, y_real=None, z=z, y_fake=None, rng_key=(1, "phase", "Dmain", 3))
    APA(p=0.5).prepare(other)
    assert not torch.equal(other.real, whole.real)  # the key decides the draw


def test_the_g_phase_is_untouched():
    real, z, y, yf = batch(8, classes=3)
    ctx = ctx_of(real, z, y, yf, phase="G")
    APA(p=1.0).prepare(ctx)
    assert ctx.real is real and ctx.y_real is y and ctx.cached("fake") is None


def test_r1_is_taken_on_the_substituted_batch():
    real, z, _, _ = batch(8)
    ctx = ctx_of(real, z)
    APA(p=1.0).prepare(ctx)
    # D = sum(x^2): grad = 2x, so R1 = gamma/2 * mean(4 ||x~_r||^2) with x~_r = the fakes.
    got = REGULARIZERS.build("r1", {"gamma": 2.0}).d_terms(ctx)["r1"]
    expected = (4 * (z - 10.0).pow(2).sum(1)).mean()
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    assert got.item() != pytest.approx((4 * real.pow(2).sum(1)).mean().item(), rel=1e-2)


# ------------------------------------------------------------------------------------------------------ the p rule
def window_of(aug: APA, r_t: float, b: int = 64, progress: float = 0.25) -> dict:
    """`interval` D phases with mean sign D(x~_r) = r_t, through a StatsWindow as the trainer feeds it."""
    window = StatsWindow(aug.update_every)
    for _ in range(aug.update_every):
        window.add({"d_real_sign": (r_t * b, b), "d_real": (0.0, b)})
    return window.release(step=10, d_step=10, nimg=11 * b, batch_size=b, progress=progress,
                          window_nimg=window.runs * b)


@pytest.mark.parametrize("p0,r_t,expected", [
    (0.0, 1.0, 5.12e-4),  # over-confident D: p rises by 64 * 4 / 500000
    (0.0, 0.2, 0.0),  # confused D: p would fall, stays at 0
    (0.5, -1.0, 0.5 - 5.12e-4),
    (0.5, 0.6, 0.5),  # at the target: no move
    (1.0, 0.9, 1.0),  # clamped at 1
])
def test_p_moves_by_adas_step_toward_the_target(p0, r_t, expected):
    aug = AUGMENTATIONS.build("apa", {"p": p0}, where="augment")
    assert (aug.update_every, aug.target, aug.apa_kimg) == (4, 0.6, 500.0)  # the paper's defaults
    aug.update(window_of(aug, r_t))
    assert aug.log_values() == {"apa_p": pytest.approx(expected, abs=1e-12), "apa_rt": pytest.approx(r_t)}
    assert float(aug.p) == aug.log_values()["apa_p"]


def test_fixed_and_linear_schedules_and_lambda_r_is_logged_in_both():
    fixed = APA(p=0.5, schedule="fixed")
    fixed.update(window_of(fixed, 1.0))
    assert fixed.log_values() == {"apa_p": 0.5, "apa_rt": 1.0}
    linear = APA(p=0.1, schedule="linear", p_end=0.5, interval=2)
    linear.update(window_of(linear, -0.5, progress=0.5))
    assert linear.log_values() == {"apa_p": pytest.approx(0.3), "apa_rt": -0.5}  # halfway from 0.1 to 0.5
    with pytest.raises(GanforgeError, match="d_real_sign|sign D"):
        APA().update({"window_nimg": 256, "progress": 0.0})  # adaptive without E[sign D(real)]


# ---------------------------------------------------------------------------------------- the inner augmentation
def test_the_inner_augmentation_is_applied_and_adapted_and_apa_is_refused_inside_apa():
    x = torch.rand(8, 3, 8, 8) * 2 - 1
    rng = lambda: SampleRNG(("k",), slice(0, 8), 8)  # noqa: E731
    diff = APA(augment={"name": "diffaugment", "policy": "translation,cutout"})
    assert torch.equal(diff(x, rng()), DiffAugment(policy="translation,cutout")(x, rng()))
    assert not torch.equal(diff(x, rng()), x)
    assert torch.equal(APA()(x, rng()), x)  # default: none
    ada = APA(p=0.2, augment={"name": "ada", "p": 0.4})
    assert torch.equal(ada(x, rng()), ADA(p=0.4)(x, rng()))
    ada.update(window_of(ada, 1.0))  # both p's rise by one step, each kept in its own state
    assert ada.log_values() == {"apa_p": pytest.approx(0.2 + 5.12e-4), "apa_rt": 1.0,
                                "aug_p": pytest.approx(0.4 + 5.12e-4), "aug_rt": 1.0}
    assert set(ada.state_dict()) == {"p", "rt", "inner.p", "inner.rt"}
    diff.update(window_of(diff, 1.0))  # a stateless inner one is simply not updated
    with pytest.raises(GanforgeError, match=r"^augment.augment: APA cannot wrap APA"):
        AUGMENTATIONS.build("apa", {"augment": {"name": "apa"}}, where="augment")


def test_the_build_context_reaches_the_inner_augmentation():
    with pytest.raises(GanforgeError, match=r"^augment.augment.pipe: ADA's color ops need 1- or 3-channel"):
        AUGMENTATIONS.build("apa", {"augment": {"name": "ada"}}, where="augment", img_shape=(4, 8, 8))


# ------------------------------------------------------------------------------------------------------------ state
def test_state_dict_round_trip_restores_p_the_inner_state_and_the_substitution():
    aug = APA(p=0.4, augment={"name": "ada", "p": 0.3})
    for _ in range(3):
        aug.update(window_of(aug, 0.9))
    buf = io.BytesIO()
    torch.save(aug.state_dict(), buf)
    buf.seek(0)
    restored = APA(augment={"name": "ada"})
    restored.load_state_dict(torch.load(buf, weights_only=True))
    assert restored.log_values() == aug.log_values()
    assert restored.log_values()["apa_p"] == pytest.approx(0.4 + 3 * 5.12e-4, abs=1e-12)
    real, z, _, _ = batch(64, shape=(3, 4, 4))
    a, b = ctx_of(real, z), ctx_of(real, z)
    aug.prepare(a)
    restored.prepare(b)
    assert torch.equal(a.real, b.real) and not torch.equal(a.real, real)


# ----------------------------------------------------------------------------------------------------- bad options
@pytest.mark.parametrize("options,message", [
    ({"p": 1.5}, "augment.p: expected a probability in [0, 1], got 1.5"),
    ({"p": -0.1}, "augment.p: expected a probability in [0, 1], got -0.1"),
    ({"target": 1.2}, "augment.target: expected a value of E[sign D(real)] in [0, 1], got 1.2"),
    ({"target": -0.5}, "augment.target: expected a value of E[sign D(real)] in [0, 1], got -0.5"),
    ({"apa_kimg": 0}, "augment.apa_kimg: expected a positive number of kimg, got 0.0"),
    ({"apa_kimg": -5}, "augment.apa_kimg: expected a positive number of kimg, got -5.0"),
    ({"interval": 0}, "augment.interval: expected a whole number of D steps >= 1, got 0"),
    ({"interval": 2.5}, "augment.interval: expected an integer, got 2.5"),
    ({"schedule": "cosine"}, "augment.schedule: expected one of 'adaptive', 'fixed', 'linear', got 'cosine'"),
    ({"schedule": "linear"}, "augment.p_end: schedule 'linear' needs p_end"),
    ({"p_end": 0.5}, "augment.p_end: only used with schedule 'linear', but schedule is 'adaptive'"),
    ({"augment": {"policy": "color"}}, "augment.augment.name: expected the name of an augmentation"),
    ({"augment": {"name": "mixup"}}, "augment.augment: unknown augmentation 'mixup'"),
    ({"augment": {"name": "diffaugment", "rate": 1}}, "augment.augment.rate: unknown option"),
    ({"augment": {"name": "ada", "interval": 2}}, "augment.augment.interval: the inner augmentation adapts every 2"),
])
def test_bad_options_are_one_line_errors_naming_the_key(options, message):
    with pytest.raises(GanforgeError) as err:
        AUGMENTATIONS.build("apa", options, where="augment")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------------------------------- training
def spy_on_windows(monkeypatch) -> list[dict]:
    """Record every statistics window the trainer hands to APA."""
    seen, update = [], APA.update

    def spy(self, stats):
        seen.append(dict(stats))
        update(self, stats)

    monkeypatch.setattr(APA, "update", spy)
    return seen


def events_of(run) -> list[dict]:
    return [e for e in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if e["event"] == "train"]


def test_training_at_p_one_shows_d_only_fakes_as_reals(tmp_path, monkeypatch):
    from ganforge.training.trainer import train

    seen = spy_on_windows(monkeypatch)
    raw = copy.deepcopy(TINY_DIGITS)  # class-conditional: projection D reads the (swapped) labels
    raw["augment"] = {"name": "apa", "p": 1.0, "schedule": "fixed", "interval": 1}
    train(from_dict(raw), tmp_path / "run", progress=False)
    assert len(seen) == 3
    for stats in seen:  # D(x~_r, y~_r) and D(x_f, y_f) are the same numbers: every real was this step's fake
        assert stats["d_real"] == pytest.approx(stats["d_fake"], rel=1e-6, abs=1e-7)
    events = events_of(tmp_path / "run")
    assert all(e["apa_p"] == 1.0 and -1 <= e["apa_rt"] <= 1 for e in events)
    assert all(math.isfinite(v) for e in events for v in e.values() if isinstance(v, float))


def test_training_substitutes_adapts_logs_and_checkpoints_p(tmp_path, monkeypatch):
    from ganforge.training.trainer import train

    seen = spy_on_windows(monkeypatch)
    raw = copy.deepcopy(TINY_DIGITS)
    # batch 16, one D step per window, apa_kimg 0.16: every step moves p by 16 / 160 = 0.1; lazy R1 sees x~_r too.
    raw["augment"] = {"name": "apa", "p": 0.5, "interval": 1, "apa_kimg": 0.16}
    raw["regularizers"] = [{"name": "r1", "gamma": 1.0, "every": 2}]
    raw["train"].update(steps=4, ckpt_every=4)
    run = tmp_path / "run"
    train(from_dict(raw), run, progress=False)
    events = events_of(run)
    trace = [0.5] + [e["apa_p"] for e in events]
    assert len(trace) == 5 and len(seen) == 4
    assert all(abs(abs(b - a) - 0.1) < 1e-9 for a, b in zip(trace, trace[1:]))  # p never hits 0 or 1 here
    assert [e["apa_rt"] for e in events] == pytest.approx([s["d_real_sign"] for s in seen])
    assert all(math.copysign(1, b - a) == math.copysign(1, s["d_real_sign"] - 0.6)
               for a, b, s in zip(trace, trace[1:], seen))
    assert all(math.isfinite(v) for e in events for v in e.values() if isinstance(v, float))
    assert float(last_state(run)["augment"]["p"]) == pytest.approx(trace[-1], abs=1e-12)
