"""Projected GAN's D (Sauer et al. 2021): the feature network and the random mixing are frozen (never step, not in the
optimizer, gradients still reach G through them), the multi-scale mini-Ds judge parts whose per-logit losses are
averaged, the feature pyramid of every backbone that names its stages, and one-line errors for bad options."""
from __future__ import annotations

import copy

import pytest
import torch

from helpers import TINY_DIGITS, last_state, torchrun, write_config

from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.metrics.backbones.pyramid import feature_pyramid, pyramid_backbones
from ganforge.models.base import Discriminator
from ganforge.models.projected import FeatureMixer, disc_width
from ganforge.registries import ARCHITECTURES, BACKBONES, D_HEADS, G_CONDITIONING, LOSSES, load_all
from ganforge.training.distributed import DistInfo
from ganforge.training.trainer import Trainer

load_all()
pytestmark = pytest.mark.usefixtures("one_torch_thread")
OFFLINE = {"backbone": "digits-classifier", "backbone_weights": "random", "z_dim": 8, "g_ch": 4, "d_ch": 4,
           "proj_ch": 4, "cmap_dim": 8}


def pair(shape=(1, 16, 16), num_classes: int = 0, **options):
    g_cond = G_CONDITIONING.build("none", {}, num_classes=num_classes, text_dim=0)
    return ARCHITECTURES.build("projected", {**OFFLINE, **options}, img_shape=shape, num_classes=num_classes,
                               g_cond=g_cond)


def ids(modules) -> set[int]:
    return {id(p) for m in modules for p in m.parameters()}


def projected_trainer(tmp_path, **sections) -> Trainer:
    raw = copy.deepcopy(TINY_DIGITS)
    raw.update(model={"name": "projected", **OFFLINE}, conditioning={"g": {"name": "none"}, "d": {"name": "linear"}},
               regularizers=[{"name": "r1", "gamma": 1.0}], **sections)
    return Trainer(from_dict(raw), tmp_path / "run", progress=False, dist=DistInfo(), device=torch.device("cpu"))


# ---- frozen means frozen --------------------------------------------------------------------------------------------

def test_the_feature_network_and_mixing_never_step_while_the_mini_ds_and_g_train(tmp_path):
    """R1 differentiates D through the frozen network w.r.t. the input; BN statistics of the frozen net must not
    move either (it stays in eval mode); the mini-Ds and G do move, G's gradient flowing through the frozen net."""
    tr = projected_trainer(tmp_path)
    D = tr.D.backbone
    assert ids(tr.frozen) == ids([D.net, D.mixer]) and ids([D.net, D.mixer])
    in_opt = {id(p) for g in tr.opt["D"].param_groups for p in g["params"]}
    assert not in_opt & ids(tr.frozen) and ids([D.discs, tr.D.head]) <= in_opt
    frozen0 = {k: v.clone() for m in tr.frozen for k, v in m.state_dict().items()}
    discs0 = {k: v.clone() for k, v in D.discs.state_dict().items()}
    g0 = {k: v.clone() for k, v in tr.G.state_dict().items()}
    for _ in range(3):
        tr.train_step()
    frozen1 = {k: v for m in tr.frozen for k, v in m.state_dict().items()}
    assert frozen0.keys() == frozen1.keys() and all(torch.equal(v, frozen1[k]) for k, v in frozen0.items())
    assert all(p.grad is None and not p.requires_grad for p in D.net.parameters())
    assert not any(id(p) in ids(tr.frozen) for p in tr.opt["D"].state)
    assert any(not torch.equal(v, D.discs.state_dict()[k]) for k, v in discs0.items() if v.is_floating_point())
    assert any(not torch.equal(v, tr.G.state_dict()[k]) for k, v in g0.items() if v.is_floating_point())


def test_under_two_gloo_ranks_the_frozen_parts_stay_bit_identical_and_the_mini_ds_train(tmp_path):
    """Frozen parameters never require grad, so DDP does not register them for the gradient all-reduce (a frozen
    parameter it did reduce would still be skipped by the optimizer; this checks the run works and nothing moves).
    The mini-Ds' BatchNorm uses each rank's batch (no SyncBN, as the paper's code), so the trained parts are not
    compared with one process."""
    raw = copy.deepcopy(TINY_DIGITS)
    raw.update(model={"name": "projected", **OFFLINE}, conditioning={"g": {"name": "none"}, "d": {"name": "linear"}})
    raw["train"].update(steps=2, ckpt_every=2)
    init = Trainer(from_dict(raw), tmp_path / "fresh", progress=False, dist=DistInfo(),
                   device=torch.device("cpu")).D.state_dict()
    torchrun(write_config(tmp_path, raw), tmp_path / "ddp")
    ddp = last_state(tmp_path / "ddp")["D"]
    frozen = [k for k in init if k.startswith(("backbone.net.", "backbone.mixer."))]
    assert frozen and all(torch.equal(ddp[k], init[k]) for k in frozen)
    trained = [k for k in init if k.startswith("backbone.discs.") and k.endswith("weight.original")]
    assert trained and all(not torch.equal(ddp[k], init[k]) for k in trained)


def test_frozen_parts_stay_in_eval_mode_when_d_trains_and_g_gets_a_gradient_through_them():
    G, D = pair()
    D.train()
    assert not any(m.training for m in [*D.net.modules(), *D.mixer.modules()])
    assert all(m.training for m in D.discs.modules())
    z = G.sample_z(2)
    D.features(G(z)).square().sum().backward()
    assert all(p.grad is None for p in D.net.parameters())
    assert sum(float(p.grad.abs().sum()) for p in G.parameters() if p.grad is not None) > 0


# ---- parts, scales and the loss over them -------------------------------------------------------------------------

def test_each_scale_contributes_its_patch_logits_and_the_features_are_part_major():
    """digits-classifier at its 8 px protocol: stages 8x8 and 4x4, doubled by the CSM to 16x16 and 8x8; mini-D 0
    halves once to end_side 8, and each 4x4 output conv leaves 5x5 = 25 parts per scale."""
    _, D = pair(cmap_dim=8)
    assert D.scale_sides == [(16, 16), (8, 8)] and D.parts == 50 and D.feature_dim == 8
    assert len(D.discs[0].down) == 3 and len(D.discs[1].down) == 0  # conv + BN + LeakyReLU once, then none
    x = torch.randn(3, 1, 16, 16)
    D.eval()
    feats = D.features(x).reshape(3, D.parts, D.feature_dim)
    mixed = D.mixer(feature_pyramid(D.net, x))
    first = D.discs[0](mixed[0])  # (3, 8, 5, 5): its parts come first, row-major over positions
    assert first.shape == (3, 8, 5, 5) and torch.equal(feats[:, :25], first.flatten(2).transpose(1, 2))
    assert torch.equal(feats[:, 25:], D.discs[1](mixed[1]).flatten(2).transpose(1, 2))


def test_hinge_on_a_projected_d_is_the_mean_of_the_per_logit_hinge_over_every_part():
    """Hand values: real parts [[2, -1], [0.5, 3]] -> relu(1 - x) mean (0 + 2 + 0.5 + 0) / 4 = 0.625; fake parts
    [[-2, 1], [0, 0.5]] -> relu(1 + x) mean (0 + 2 + 1 + 1.5) / 4 = 1.125; D loss 1.75 (the hinge of the mean
    logit per image would give 1.125). G: -mean(fake parts) = 0.125."""
    from types import SimpleNamespace

    from ganforge.conditioning.base import DOutput

    real_parts, fake_parts = torch.tensor([[2.0, -1.0], [0.5, 3.0]]), torch.tensor([[-2.0, 1.0], [0.0, 0.5]])
    real = DOutput(real_parts.mean(1), adv_parts=real_parts)
    fake = DOutput(fake_parts.mean(1), adv_parts=fake_parts)
    loss = LOSSES.build("hinge", {})
    ctx = SimpleNamespace(d_real=real, d_fake=fake)
    assert torch.allclose(loss.d_terms(ctx)["d_loss"], torch.tensor(1.75))
    assert torch.allclose(loss.g_terms(ctx)["g_loss"], torch.tensor(0.125))
    torch.manual_seed(0)  # and a real projected D hands the losses its (B, parts) logits with adv their mean
    _, backbone = pair()
    D = Discriminator(backbone, D_HEADS.build("linear", {}, in_features=backbone.feature_dim, num_classes=0)).eval()
    out = D(torch.randn(4, 1, 16, 16))
    assert out.adv_parts.shape == (4, 50) and torch.allclose(out.adv, out.adv_parts.mean(1))


def test_projection_conditioning_projects_every_part_on_its_images_class_embedding():
    torch.manual_seed(0)
    _, backbone = pair(num_classes=3)
    head = D_HEADS.build("projection", {}, in_features=backbone.feature_dim, num_classes=3)
    D = Discriminator(backbone, head).eval()
    x, y = torch.randn(2, 1, 16, 16), torch.tensor([2, 0])
    parts = backbone.features(x).reshape(2, backbone.parts, -1)
    by_hand = head(parts.reshape(2 * backbone.parts, -1), y.repeat_interleave(backbone.parts)).adv
    assert torch.allclose(D(x, y).adv_parts, by_hand.reshape(2, -1))
    assert not torch.allclose(D(x, y).adv_parts, D(x, torch.tensor([1, 1])).adv_parts)


def test_mini_d_widths_follow_the_papers_table_and_ccm_csm_channels_match_its_projector():
    """The paper's channel_dict at ndf 64 (non-powers of two: the nearest entry); CCM cout x1/x2/x4/x8 with expand,
    the CSM halving all but level 0 (so [c, c, 2c, 4c] as its projector's CHANNELS)."""
    assert [disc_width(64, s) for s in (256, 128, 64, 32, 16, 8, 4)] == [32, 64, 64, 128, 256, 512, 512]
    assert disc_width(64, 7) == 512 and disc_width(64, 28) == 128 and disc_width(8, 16) == 32
    mixer = FeatureMixer([24, 40, 112, 320], proj_ch=64, expand=True)
    assert [m.out_channels for m in mixer.ccm] == [64, 128, 256, 512] and mixer.out_chs == [64, 64, 128, 256]
    assert FeatureMixer([32, 64], 16, expand=False).out_chs == [16, 16]
    maps = mixer([torch.randn(1, c, s, s) for c, s in zip([24, 40, 112, 320], [56, 28, 14, 7])])
    assert [tuple(m.shape[1:]) for m in maps] == [(64, 112, 112), (64, 56, 56), (128, 28, 28), (256, 14, 14)]


def test_cross_scale_mixing_carries_the_deepest_scale_into_the_shallowest_but_not_the_reverse():
    torch.manual_seed(0)
    mixer = FeatureMixer([4, 6, 8], proj_ch=4, expand=True).eval()
    feats = [torch.randn(1, 4, 8, 8), torch.randn(1, 6, 4, 4), torch.randn(1, 8, 2, 2)]
    base = mixer(feats)
    deep = mixer([feats[0], feats[1], feats[2] + 1.0])
    shallow = mixer([feats[0] + 1.0, feats[1], feats[2]])
    assert not torch.allclose(deep[0], base[0])  # top-down: the deepest map reaches scale 0
    assert torch.equal(shallow[1], base[1]) and torch.equal(shallow[2], base[2])  # and nothing flows upward


# ---- the feature pyramid of each backbone ---------------------------------------------------------------------------

PYRAMIDS = {  # (input side, [(channels, side)] input side first): the stage strides of each network
    "resnet50": (64, [(256, 16), (512, 8), (1024, 4), (2048, 2)]),
    "inception-fid": (299, [(192, 71), (288, 35), (768, 17), (2048, 8)]),
    "digits-classifier": (8, [(32, 8), (64, 4)]),
    "stacked-digits-classifier": (8, [(96, 8), (192, 4)]),  # each channel's maps, side by side
    "efficientnet-lite0": (64, [(24, 16), (40, 8), (112, 4), (320, 2)]),
}


@pytest.mark.parametrize("name", pyramid_backbones(BACKBONES.names()))
def test_every_pyramid_backbone_gives_its_documented_stages_differentiably_and_stops_after_the_last(name):
    size, stages = PYRAMIDS[name]  # a new pyramid backbone must document its stages here
    net = BACKBONES.build(name, {}, "test", weights="random", device="cpu")
    modules = dict(net.named_modules())
    after = [n for n, m in modules.items() if n and not list(m.children())][-1]  # the network's last leaf module
    ran = []
    hook = modules[after].register_forward_hook(lambda *_: ran.append(after))
    x = torch.rand(1, 3, 20, 20, requires_grad=True) * 2 - 1
    maps = feature_pyramid(net, x, (size, size))
    hook.remove()
    assert [(m.shape[1], m.shape[2], m.shape[3]) for m in maps] == [(c, s, s) for c, s in stages]
    assert not ran and after not in net.pyramid_layers  # nothing after the last stage was computed
    (grad,) = torch.autograd.grad(maps[0].sum() + maps[-1].sum(), x)
    assert grad.abs().sum() > 0


def test_a_backbone_without_stages_or_bad_options_are_one_line_errors():
    plain = next(n for n in BACKBONES.names() if n not in pyramid_backbones(BACKBONES.names()))
    cases = [({"backbone": plain}, f"backbone {plain!r} exposes no multi-scale feature maps"),
             ({"input_size": 2}, "option input_size must be a side >= 4"),
             ({"generator": "projected"}, "option generator must name another family"),
             ({"g_options": {"nope": 1}}, "generator 'fastgan' has no option"),
             ({"backbone": "no-such-net"}, "no-such-net"),
             ({"backbone": "resnet50", "backbone_weights": "/no/such/swav.pth"}, "model.backbone_weights: PATH")]
    cases.append(({"backbone": plain}, "choose one of: " + ", ".join(pyramid_backbones(BACKBONES.names()))))
    for options, expected in cases:
        with pytest.raises(GanforgeError) as err:
            pair(**options)
        assert expected in str(err.value) and "\n" not in str(err.value), str(err.value)
    with pytest.raises(GanforgeError, match=r"^architecture 'projected' \(generator 'fastgan'\): .*9x9"):
        pair(shape=(3, 9, 9))
