"""What each phase of the training step sees and does, checked by spying on the Context and against hand computations."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from helpers import TINY_DIGITS, TINY_POINTS, cli

from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.training.distributed import DistInfo
from ganforge.training.rng import generator
from ganforge.training.trainer import Trainer, train

PLUGIN = ["ganforge_testplugin"]


def cfg_of(base: dict, **sections) -> dict:
    raw = copy.deepcopy(base)
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


def trainer(raw: dict, tmp_path) -> Trainer:
    return Trainer(from_dict(raw), tmp_path / "run", progress=False, dist=DistInfo(), device=torch.device("cpu"))


def spy(tr: Trainer) -> list[tuple[str, object]]:
    """Record (phase name, Context) for every micro-batch every phase collects terms from."""
    seen = []
    for phase in tr.phases:
        def collect(ctx, _orig=phase.collect, _name=phase.name):
            seen.append((_name, ctx))
            return _orig(ctx)
        phase.collect = collect
    return seen


# ---------------------------------------------------------------------------------------------- latents and batches
def test_g_phase_draws_its_own_latents_and_labels_and_reuses_the_last_d_reals(tmp_path):
    raw = cfg_of(TINY_DIGITS, optim={"d_steps": 2})
    tr = trainer(raw, tmp_path)
    seen = spy(tr)
    for _ in range(2):
        tr.train_step()
    B = raw["train"]["batch_size"]
    by_phase = [(name, ctx) for name, ctx in seen]
    assert [n for n, _ in by_phase] == ["Dmain", "Dmain", "Gmain"] * 2
    for step in range(2):
        d0, d1, g = (ctx for _, ctx in by_phase[3 * step: 3 * step + 3])
        for k, d in enumerate((d0, d1)):  # D step k of G step `step` is global batch step * d_steps + k
            index = step * 2 + k
            x, y = tr.stream.batch(index)
            assert torch.equal(d.real, tr.modality.to_model(x)) and torch.equal(d.y_real, y)
            gen = generator(0, "latents", index)
            assert torch.equal(d.z, tr.G.sample_z(B, generator=gen))
            assert torch.equal(d.y_fake, torch.randint(0, 10, (B,), generator=gen))
        gen = generator(0, "latents-G", step)
        assert torch.equal(g.z, tr.G.sample_z(B, generator=gen))  # fresh latents from the G stream ...
        assert torch.equal(g.y_fake, torch.randint(0, 10, (B,), generator=gen))
        assert not torch.equal(g.z, d1.z) and not torch.equal(g.y_fake, d1.y_fake)  # ... not the D step's
        assert torch.equal(g.real, d1.real)  # reals are shared with the last D step
        assert g.phase == "G" and d0.phase == "D"
        assert (d0.info.d_step, d1.info.d_step, g.info.step) == (2 * step, 2 * step + 1, step)


def test_accumulation_rounds_know_their_rows_of_the_global_batch(tmp_path):
    raw = cfg_of(TINY_POINTS, train={"accumulate": 4, "batch_size": 32})
    tr = trainer(raw, tmp_path)
    seen = spy(tr)
    tr.train_step()
    d = [ctx for name, ctx in seen if name == "Dmain"]
    assert [c.rows for c in d] == [slice(0, 8), slice(8, 16), slice(16, 24), slice(24, 32)]
    whole = torch.cat([c.real for c in d])
    assert torch.equal(whole, tr.modality.to_model(tr.stream.batch(0)[0]))


# ------------------------------------------------------------------------------------------------ lazy scheduling
def test_lazy_d_terms_run_every_n_d_steps_not_in_bursts(tmp_path):
    raw = cfg_of(TINY_POINTS, optim={"d_steps": 3}, regularizers=[{"name": "r1", "gamma": 0.1, "every": 4}])
    tr = trainer(raw, tmp_path)
    seen = spy(tr)
    for _ in range(4):
        tr.train_step()
    reg_steps = [ctx.info.d_step for name, ctx in seen if name == "Dreg4"]
    assert reg_steps == [0, 4, 8]  # 12 D steps: every 4th, evenly spaced
    assert sum(name == "Dmain" for name, _ in seen) == 12 and sum(name == "Gmain" for name, _ in seen) == 4


def test_a_phase_whose_terms_return_nothing_is_skipped(tmp_path):
    raw = cfg_of(TINY_POINTS, plugins=PLUGIN, regularizers=[{"name": "test-silent", "every": 2}])
    tr = trainer(raw, tmp_path)
    seen = spy(tr)
    for _ in range(3):
        tr.train_step()
    assert [n for n, _ in seen].count("Dreg2") == 2  # it ran (steps 0 and 2) ...
    state = tr.opt["D"].state_dict()["state"]
    assert all(int(s["step"]) == 3 for s in state.values())  # ... but D's optimizer stepped only for Dmain


# ---------------------------------------------------------------------------------------- statistics for components
def test_stateful_augmentation_receives_sign_statistics_equal_to_a_hand_computation(tmp_path):
    raw = cfg_of(TINY_POINTS, plugins=PLUGIN, augment={"name": "test-recorder", "every": 2})
    tr = trainer(raw, tmp_path)
    B = raw["train"]["batch_size"]
    expected_signs, expected_real = [], []
    for step in range(4):
        D_before = copy.deepcopy(tr.D)  # D as the D step will see it (no spectral norm in this MLP)
        real = tr.modality.to_model(tr.stream.batch(step)[0])
        with torch.no_grad():
            logits = D_before(real).adv
        expected_signs.append(logits.sign().mean().item())
        expected_real.append(logits.mean().item())
        tr.train_step()
    got = tr.augment.received
    assert len(got) == 2  # every 2 D main phases
    for w, window in enumerate(got):
        assert window["d_real_sign"] == pytest.approx(sum(expected_signs[2 * w: 2 * w + 2]) / 2, abs=1e-9)
        assert window["d_real"] == pytest.approx(sum(expected_real[2 * w: 2 * w + 2]) / 2, rel=1e-5)
        assert window["d_real_sign_n"] == 2 * B and window["window_nimg"] == 2 * B
        assert window["nimg"] == (2 * w + 2) * B and window["step"] == 2 * w + 1


def test_lecam_anchors_update_once_per_d_step_with_the_global_batch_means(tmp_path):
    one = trainer(cfg_of(TINY_POINTS, regularizers=[{"name": "lecam", "decay": 0.9}]), tmp_path / "a")
    acc = trainer(cfg_of(TINY_POINTS, regularizers=[{"name": "lecam", "decay": 0.9}], train={"accumulate": 4}),
                  tmp_path / "b")
    for _ in range(5):
        one.train_step()
        acc.train_step()
    la, lb = one.terms["regularizers.0:lecam"], acc.terms["regularizers.0:lecam"]
    assert la.steps == lb.steps == 5  # once per D step, not once per accumulation round
    assert la.ema_real == pytest.approx(lb.ema_real, rel=1e-4) and la.ema_fake == pytest.approx(lb.ema_fake, rel=1e-4)


# ---------------------------------------------------------------------------------------------- declarations
def test_conditional_follows_what_components_declare_not_their_names():
    base = cfg_of(TINY_POINTS, plugins=PLUGIN)
    assert not from_dict(cfg_of(base, conditioning={"g": {"name": "none"}, "d": {"name": "test-aux"}})).conditional
    labelled = from_dict(cfg_of(base, conditioning={"g": {"name": "test-labelled"}, "d": {"name": "linear"}}))
    assert labelled.conditional and labelled.label_users() == ["conditioning.g 'test-labelled'"]
    assert from_dict(cfg_of(base, conditioning={"g": {"name": "none"}, "d": {"name": "projection"}})).conditional


def test_a_term_needing_a_d_output_the_head_lacks_is_a_one_line_error():
    raw = cfg_of(TINY_POINTS, plugins=PLUGIN, regularizers=[{"name": "test-aux-loss"}])
    with pytest.raises(GanforgeError, match=r"regularizers.0: 'test-aux-loss' needs D output\(s\) aux_logits"):
        from_dict(raw)
    from_dict(cfg_of(raw, conditioning={"d": {"name": "test-aux"}}))  # the head that provides it


def test_a_d_head_can_bring_its_own_loss_term(tmp_path):
    raw = cfg_of(TINY_POINTS, plugins=PLUGIN, conditioning={"d": {"name": "test-aux-with-loss", "aux_weight": 0.5}})
    tr = trainer(raw, tmp_path)
    assert list(tr.terms) == ["loss:vanilla", "conditioning.d:AuxLoss"] and tr.terms["conditioning.d:AuxLoss"].weight == 0.5
    dmain = next(p for p in tr.phases if p.name == "Dmain")
    assert any(t is tr.terms["conditioning.d:AuxLoss"] for t in dmain.terms)
    logs = tr.train_step()
    assert logs["aux"] > 0 and "d_loss" in logs


def test_a_batch_level_term_refuses_gradient_accumulation():
    raw = cfg_of(TINY_POINTS, plugins=PLUGIN, regularizers=[{"name": "test-batchwise"}], train={"accumulate": 2})
    with pytest.raises(GanforgeError, match="regularizers.0: 'test-batchwise' .* set train.accumulate=1"):
        from_dict(raw)


def test_terms_with_parameters_step_with_their_network_and_get_build_context(tmp_path):
    raw = cfg_of(TINY_POINTS, plugins=PLUGIN, regularizers=[{"name": "test-latent-q"}])
    tr = trainer(raw, tmp_path)
    q = tr.terms["regularizers.0:test-latent-q"]
    assert q.total_steps == raw["train"]["steps"] and q.feature_dim == tr.D.backbone.feature_dim
    assert q.q.in_features == raw["model"]["hidden"]  # sized from tap_shapes
    assert any(p is q.q.weight for p in tr.opt["G"].param_groups[0]["params"])
    assert not any(p is q.q.weight for p in tr.opt["D"].param_groups[0]["params"])
    d_phase = next(p for p in tr.phases if p.name == "Dmain")
    before = q.q.weight.detach().clone()
    tr.runner.run(d_phase, tr.runner.micro_batches(0, tr.runner.latents("latents", 0)), 0, _info(tr))
    assert torch.equal(q.q.weight, before) and q.q.weight.grad is None  # frozen in the D phase
    tr.train_step()
    assert not torch.equal(q.q.weight, before)  # trained in the G phase


def _info(tr):
    from ganforge.objectives.base import StepInfo

    return StepInfo(0, 0, tr.cfg.train.steps, tr.cfg.train.batch_size, 0)


# ------------------------------------------------------------------------------------ checkpoints and bookkeeping
def test_term_state_is_keyed_by_name_and_position_and_reordering_is_refused(tmp_path):
    regs = [{"name": "lecam"}, {"name": "r1", "gamma": 0.1}]
    train(from_dict(cfg_of(TINY_POINTS, regularizers=regs, train={"steps": 4, "ckpt_every": 2})), tmp_path / "run",
          progress=False)
    state = torch.load(sorted((tmp_path / "run" / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    assert list(state["terms"]) == ["regularizers.0:lecam"]
    reordered = from_dict(cfg_of(TINY_POINTS, regularizers=regs[::-1], train={"steps": 8}))
    with pytest.raises(GanforgeError, match=r"config differs.*regularizers.0.name 'lecam' -> 'r1'"):
        Trainer(reordered, tmp_path / "run", progress=False, dist=DistInfo(), device=torch.device("cpu"))
    with pytest.raises(GanforgeError, match=r"regularizers.0:lecam.*regularizers.1:lecam"):  # even when allowed
        Trainer(reordered, tmp_path / "run", progress=False, dist=DistInfo(), device=torch.device("cpu"),
                allow_config_change=True)


def test_kimg_counts_every_d_step(tmp_path):
    raw = cfg_of(TINY_POINTS, optim={"d_steps": 3}, train={"steps": 10, "log_every": 5})
    train(from_dict(raw), tmp_path / "run", progress=False)
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    kimg = {e["step"]: e["kimg"] for e in events if e["event"] == "train"}
    B = raw["train"]["batch_size"]
    assert kimg == {5: 5 * 3 * B / 1000, 10: 10 * 3 * B / 1000}


def test_training_mode_metrics_equal_ganforge_eval_on_the_export(tmp_path):
    raw = cfg_of(TINY_POINTS, train={"steps": 300, "ckpt_every": 300})
    summary = train(from_dict(raw), tmp_path / "run", progress=False)
    r = cli("eval", str(tmp_path / "run"), "--metrics", "modes", "--json", str(tmp_path / "modes.json"))
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "modes.json").read_text())
    assert {k: got[k] for k in ("modes", "hq_frac", "kl")} == {k: summary[k] for k in ("modes", "hq_frac", "kl")}
    assert summary["hq_frac"] > 0  # a non-trivial sample, so equal numbers mean equal samples


def test_d_head_spectral_norm_follows_the_architecture_unless_set():
    from ganforge.nn import has_sn
    from ganforge.training.build import build_run

    def psi_sn(**over):
        return has_sn(build_run(from_dict(cfg_of(TINY_POINTS, **over))).D.head.psi)

    assert not psi_sn()  # mlp: d_sn false by default
    assert psi_sn(model={"d_sn": True})
    assert psi_sn(conditioning={"d": {"name": "linear", "sn": True}})
    assert not psi_sn(model={"d_sn": True}, conditioning={"d": {"name": "linear", "sn": False}})
