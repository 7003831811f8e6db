"""FreezeD (Mo et al. 2020, METHODS.md §2) and fine-tuning from a source run (`train.init_from`): D's block list,
the exact freeze of blocks 0..N-1 (parameters, optimizer, spectral-norm vectors), init_from's copy, errors, resume."""
from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from helpers import TINY_DIGITS, TINY_POINTS, last_state, torchrun, write_config

from ganforge.conditioning.base import DOutput
from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.models.base import DBackbone, Discriminator
from ganforge.registries import ARCHITECTURES, G_CONDITIONING, REGULARIZERS
from ganforge.training.distributed import DistInfo
from ganforge.training.trainer import Trainer, train

TINY = {"backbone": "digits-classifier", "backbone_weights": "random",
        "g_ch": 4, "d_ch": 4, "hidden": 8, "layers": 2, "z_dim": 4, "w_dim": 4, "mapping_layers": 1, "d_hidden": 8,
        "d_layers": 3}


def backbone_of(arch: str, shape: tuple = (1, 16, 16), **extra) -> DBackbone:
    options = ARCHITECTURES.get(arch).options()
    sn = {"d_sn": True} if "d_sn" in options else {}  # spectral norm's parametrization modules go in the blocks too
    opts = {**{k: v for k, v in TINY.items() if k in options}, **sn, **extra}
    g_cond = G_CONDITIONING.build("none", {}, num_classes=0)
    return ARCHITECTURES.build(arch, opts, img_shape=shape, num_classes=0, g_cond=g_cond).D


def dcgan_digits(**sections) -> dict:
    """A tiny spectrally normalized DCGAN on 8 px digits (2 D blocks: the first conv, one resolution level)."""
    raw = copy.deepcopy(TINY_DIGITS)
    raw.update(model={"name": "dcgan", "z_dim": 8, "g_ch": 4, "d_ch": 4, "d_sn": True},
               conditioning={"g": {"name": "none"}, "d": {"name": "linear"}})
    for key, value in sections.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and isinstance(raw.get(key), dict) else value
    return raw


def trainer(raw: dict, run) -> Trainer:
    return Trainer(from_dict(raw), run, progress=False, dist=DistInfo(), device=torch.device("cpu"))


def ids(modules) -> set[int]:
    return {id(p) for m in modules for p in m.parameters()}


NO_CHAIN = {"projected"}  # families whose D is not a chain of blocks: block_list is a one-line error saying so


# ---- the block list every D family provides ------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHITECTURES.names())
def test_block_list_is_disjoint_ordered_and_holds_every_parameter_but_an_epilogue(arch):
    D = backbone_of(arch)
    if arch in NO_CHAIN:  # declared: side-by-side sub-discriminators, no chain to freeze a prefix of
        with pytest.raises(GanforgeError, match=f"^architecture '{arch}': .*freeze-d") as err:
            D.block_list()
        assert "\n" not in str(err.value)
        return
    blocks = D.block_list()
    assert len(blocks) >= 2
    sets = [ids([b]) for b in blocks]
    assert all(sets) and all(not (a & b) for i, a in enumerate(sets) for b in sets[i + 1:])  # disjoint, non-empty
    owner = {m: i for i, b in enumerate(blocks) for m in b.modules()}
    calls: list[int | None] = []  # block index of each module call, None: a parameter-holding module of no block
    hooks = [m.register_forward_pre_hook(lambda mod, _a: calls.append(owner.get(mod))) for m in D.modules()
             if m is not D and (m in owner or any(True for _ in m.parameters(recurse=False)))]
    D(torch.randn(2, 1, 16, 16))
    for h in hooks:
        h.remove()
    in_blocks = [c for c in calls if c is not None]
    assert in_blocks == sorted(in_blocks) and set(in_blocks) == set(range(len(blocks)))  # block i runs before i + 1
    last = max(i for i, c in enumerate(calls) if c is not None)
    assert all(c is not None for c in calls[:last])  # modules outside the blocks only after the last one (epilogue)
    epilogue = {id(p) for m in D.modules() if m not in owner and m is not D for p in m.parameters(recurse=False)}
    assert ids([D]) - set().union(*sets) <= epilogue  # (whose modules were seen running after the blocks)


def test_a_backbone_without_a_block_list_is_a_one_line_error():
    class Plain(DBackbone):
        feature_dim = 2

        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def features(self, x):
            return self.lin(x)

    class Head(nn.Module):
        def forward(self, h, y=None):
            return DOutput(adv=h.sum(1))

    with pytest.raises(GanforgeError, match=r"^Plain does not list its blocks") as err:
        REGULARIZERS.build("freeze-d", {}).frozen_modules(Discriminator(Plain(), Head()), "regularizers.0")
    assert "\n" not in str(err.value)


def test_blocks_n_freezes_exactly_blocks_0_to_n_minus_1_not_every_name_containing_the_index():
    """An MLP D with 12 hidden layers: block 0 is `net.1`, and a name match (StudioGAN's) would also catch net.11-19."""
    D = Discriminator(backbone_of("mlp", (2,), layers=12, d_sn=False), nn.Identity())
    blocks = D.backbone.block_list()
    assert len(blocks) == 12
    for n in (1, 2, 11, 12):
        chosen = REGULARIZERS.build("freeze-d", {"blocks": n}).frozen_modules(D, "regularizers.0")
        assert ids(chosen) == ids(blocks[:n])
    names = {id(p): k for k, p in D.named_parameters()}
    frozen = {names[i] for i in ids(REGULARIZERS.build("freeze-d", {"blocks": 1}).frozen_modules(D))}
    assert frozen == {"backbone.net.1.weight", "backbone.net.1.bias"}
    assert {"backbone.net.11.weight", "backbone.net.13.weight"} <= set(names.values())  # "net.1" in them, not frozen


def test_out_of_range_blocks_are_one_line_errors_naming_the_key(tmp_path):
    with pytest.raises(GanforgeError, match=r"^freeze-d\.blocks: expected an integer >= 1, got 0$"):
        REGULARIZERS.build("freeze-d", {"blocks": 0})
    raw = dcgan_digits(regularizers=[{"name": "r1"}, {"name": "freeze-d", "blocks": 3}])
    with pytest.raises(GanforgeError, match=r"^regularizers\.1\.blocks: expected at most the 2 blocks of this D "
                                            r"\(DCGANDiscriminator\), got 3$"):
        trainer(raw, tmp_path / "run")


# ---- the freeze is exact --------------------------------------------------------------------------------------------

def test_frozen_blocks_stay_bit_identical_and_out_of_the_optimizer_while_the_rest_trains(tmp_path):
    """R1 differentiates through the frozen block w.r.t. the input; SN's u, v of frozen layers must not move."""
    raw = dcgan_digits(regularizers=[{"name": "freeze-d", "blocks": 1}, {"name": "r1", "gamma": 1.0}],
                       optim={"d_steps": 2})
    tr = trainer(raw, tmp_path / "run")
    frozen_block, other = tr.D.backbone.block_list()
    assert ids(tr.frozen) == ids([frozen_block])
    in_opt = {id(p) for g in tr.opt["D"].param_groups for p in g["params"]}
    assert not in_opt & ids([frozen_block]) and ids([other, tr.D.head]) <= in_opt
    frozen0 = {k: v.clone() for k, v in frozen_block.state_dict().items()}  # weight.original, bias, _u, _v
    other0 = {k: v.clone() for k, v in other.state_dict().items()}
    assert any(k.endswith("_u") for k in frozen0)
    for _ in range(3):
        tr.train_step()
    assert all(torch.equal(v, frozen_block.state_dict()[k]) for k, v in frozen0.items())
    assert all(not torch.equal(v, other.state_dict()[k]) for k, v in other0.items())  # weights and SN vectors move
    assert all(p.grad is None and not p.requires_grad for p in frozen_block.parameters())  # after the last D phase
    assert all(p.grad is not None for p in other.parameters())
    assert not any(id(p) in ids([frozen_block]) for p in tr.opt["D"].state)


def test_freeze_d_stops_when_another_component_changes_a_frozen_weight(tmp_path):
    raw = dcgan_digits(regularizers=[{"name": "freeze-d"}, {"name": "clip", "clip": 1e-4}])
    tr = trainer(raw, tmp_path / "run")
    with pytest.raises(GanforgeError, match=r"^regularizers\.0: a parameter of the 1 frozen D block\(s\) changed"):
        for _ in range(2):  # clip acts after freeze-d's check of step 1; the check of step 2 sees it
            tr.train_step()


def test_frozen_blocks_under_two_gloo_ranks_stay_put_and_match_one_process(tmp_path):
    raw = copy.deepcopy(TINY_POINTS)
    raw["regularizers"] = [{"name": "freeze-d", "blocks": 1}]
    raw["model"] = {**raw["model"], "d_sn": True}
    raw["train"].update(steps=4, ckpt_every=4)
    init = trainer(raw, tmp_path / "fresh").D.state_dict()  # the same seed: the runs' initial D
    train(from_dict(raw), tmp_path / "single", progress=False)
    torchrun(write_config(tmp_path, raw), tmp_path / "ddp")
    single, ddp = last_state(tmp_path / "single")["D"], last_state(tmp_path / "ddp")["D"]
    block0 = [k for k in single if k.startswith("backbone.net.1.")]  # net.0 is the Flatten, net.1 the first Linear
    assert block0 and all(torch.equal(ddp[k], init[k]) and torch.equal(single[k], init[k]) for k in block0)
    assert not torch.equal(single["backbone.net.3.bias"], init["backbone.net.3.bias"])  # block 1 trains
    for k in single:
        torch.testing.assert_close(ddp[k], single[k], rtol=1e-4, atol=1e-5)


# ---- train.init_from ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A source run of 3 steps (checkpoints at 2 and 3)."""
    run = tmp_path_factory.mktemp("source") / "run"
    train(from_dict(dcgan_digits(train={"steps": 3, "ckpt_every": 2})), run, progress=False)
    return run


def test_init_from_copies_g_d_g_ema_and_starts_at_step_0_with_fresh_optimizers(source, tmp_path):
    state = last_state(source)
    assert state["step"] == 3
    for i, where in enumerate((source, source / "checkpoints" / "ckpt-00000003.pt")):  # a run dir or a file
        tr = trainer(dcgan_digits(train={"init_from": str(where)}), tmp_path / f"run{i}")
        assert tr.step == 0 and not tr.opt["G"].state and not tr.opt["D"].state
        for name, net in (("G", tr.G), ("D", tr.D), ("G_ema", tr.G_ema)):
            mine = net.state_dict()
            assert mine.keys() == state[name].keys() and all(torch.equal(mine[k], state[name][k]) for k in mine)
    fresh = trainer(dcgan_digits(), tmp_path / "fresh").G.state_dict()  # the same seed's own init differs
    assert any(not torch.equal(fresh[k], state["G"][k]) for k in fresh)
    older = trainer(dcgan_digits(train={"init_from": str(source / "checkpoints" / "ckpt-00000002.pt")}),
                    tmp_path / "older").G.state_dict()
    assert any(not torch.equal(older[k], state["G"][k]) for k in older)


def test_init_from_a_missing_or_incompatible_source_is_a_one_line_error(source, tmp_path):
    (tmp_path / "empty").mkdir()
    cases = {str(tmp_path / "nope"): r"no such run directory or checkpoint file",
             str(tmp_path / "empty"): r"no readable checkpoint in it",
             str(source): r"its D does not fit this config's model / conditioning \(backbone\.net\.0\..*shape"}
    for path, why in cases.items():
        raw = dcgan_digits(train={"init_from": path})
        raw["model"]["d_ch"] = 8  # only the incompatible case gets that far
        with pytest.raises(GanforgeError, match=r"^train\.init_from: .*" + why) as err:
            trainer(raw, tmp_path / "run")
        assert "\n" not in str(err.value)
    with pytest.raises(GanforgeError, match=r"^train\.init_from: expected a source run directory"):
        from_dict(dcgan_digits(train={"init_from": ""}))


def test_a_fine_tune_run_trains_resumes_bit_exactly_and_ignores_init_from_on_resume(source, tmp_path):
    raw = dcgan_digits(regularizers=[{"name": "freeze-d", "blocks": 1}],
                       train={"init_from": str(source), "steps": 4, "ckpt_every": 2})
    train(from_dict(raw), tmp_path / "whole", progress=False)
    half = copy.deepcopy(raw)
    half["train"]["steps"] = 2
    train(from_dict(half), tmp_path / "halves", progress=False)
    moved = copy.deepcopy(raw)
    moved["train"]["init_from"] = str(tmp_path / "gone")  # a changed (here vanished) source: recorded, not refused
    train(from_dict(moved), tmp_path / "halves", progress=False)
    a, b = last_state(tmp_path / "whole"), last_state(tmp_path / "halves")
    assert a["step"] == b["step"] == 4
    for key in ("G", "D", "G_ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert all(torch.equal(x, y) for x, y in zip(a["opt_D"]["state"][0].values(), b["opt_D"]["state"][0].values()))
    src = last_state(source)["D"]
    frozen = [k for k in src if k.startswith("backbone.net.0.")]
    assert frozen and all(torch.equal(a["D"][k], src[k]) for k in frozen)  # the source's input-side block, as it was
    assert not torch.equal(a["D"]["head.psi.parametrizations.weight.original"],
                           src["head.psi.parametrizations.weight.original"])
    history = [json.loads(line) for line in (tmp_path / "halves" / "history.jsonl").read_text().splitlines()]
    assert history[-1]["event"] == "resume"
    assert history[-1]["config_changes"]["train.init_from"] == [str(source), str(tmp_path / "gone")]


def test_a_run_checkpointed_before_init_from_existed_resumes_without_a_recorded_change(tmp_path):
    from ganforge.training.checkpoint import list_checkpoints

    run = tmp_path / "run"
    train(from_dict(dcgan_digits(train={"steps": 2, "ckpt_every": 2})), run, progress=False)
    path = list_checkpoints(run / "checkpoints")[-1]
    state = torch.load(path, weights_only=True)
    del state["config"]["train"]["init_from"]  # as written by a ganforge without the key
    torch.save(state, path)
    train(from_dict(dcgan_digits(train={"steps": 3, "ckpt_every": 2})), run, progress=False)
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert history[-1]["event"] == "resume" and set(history[-1]["config_changes"]) == {"train.steps"}
