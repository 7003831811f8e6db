"""GAN Dissection (explore dissect) and the shapes segmenter: IoU, IQR thresholds, ablation, ground truth, errors."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from ganforge.cli.main import main
from ganforge.config import from_dict
from ganforge.data.shapes_captioned import COLOURS, SHAPES, render, sample_layout
from ganforge.errors import GanforgeError
from ganforge.explore import explore
from ganforge.explore.dissect import ablated, resolve_layer
from ganforge.explore.dissect_scores import (IQR_FRACTIONS, information_quality_ratio, iqr_choice, level_counts,
                                             unit_iou)
from ganforge.registries import ARCHITECTURES, G_CONDITIONING


def tiny_G(arch: str, shape=(3, 16, 16), **opts):
    g_cond = G_CONDITIONING.build("none", {}, num_classes=0, text_dim=0)
    torch.manual_seed(0)
    defaults = {"dcgan": {"z_dim": 8, "g_ch": 8, "d_ch": 8}, "resnet": {"z_dim": 8, "g_ch": 8, "d_ch": 8},
                "mlp": {"z_dim": 8, "hidden": 16, "layers": 2},
                "style-mlp": {"z_dim": 4, "w_dim": 8, "hidden": 16, "layers": 2},
                "projected": {"backbone": "digits-classifier", "backbone_weights": "random"}}  # offline D
    return ARCHITECTURES.build(arch, {**defaults.get(arch, {}), **opts}, img_shape=shape, num_classes=0,
                               g_cond=g_cond).G.eval()


CHANNELS = ["r", "g", "b"]


def colour_segmenter() -> torch.nn.Module:
    """An exact per-pixel segmenter (images in [0, 1]): concept "r" / "g" / "b" where that channel is > 0.5."""

    class Channels(torch.nn.Module):
        def forward(self, x):
            return (x > 0.5).float()

    return Channels()


class PaintingG(torch.nn.Module):
    """z -> 4 unit maps (4, 8, 8) at module `units`; unit 0 alone paints red, unit 1 alone green, units 2 and 3
    reach no pixel: red = tanh(10 relu(u0) - 1) etc., so a pixel is red exactly where u0 > 0.1."""

    def __init__(self):
        super().__init__()
        self.z_dim, self.num_classes, self.text_dim, self.img_shape = 4, 0, 0, (3, 8, 8)
        self.lin = torch.nn.Linear(4, 4 * 64)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(256, 4, generator=torch.Generator().manual_seed(0)))
            self.lin.bias.zero_()
        self.units = torch.nn.Identity()
        self.to_img = torch.nn.Conv2d(4, 3, 1)
        with torch.no_grad():
            self.to_img.weight.zero_()
            self.to_img.weight[0, 0] = self.to_img.weight[1, 1] = 10.0
            self.to_img.bias.fill_(-1.0)

    def sample_z(self, n, generator=None, truncation=None):
        return torch.randn(n, 4, generator=generator)

    def forward(self, z, y=None):
        u = self.units(self.lin(z).view(-1, 4, 8, 8))
        return torch.tanh(self.to_img(torch.relu(u)))


# ------------------------------------------------------------------------------------------------------- the math
def test_unit_iou_of_4_active_pixels_2_inside_a_4_pixel_mask_is_2_over_6():
    maps = torch.zeros(1, 1, 4, 4)
    maps[0, 0, 0, :4] = 1.0  # active: the top row
    masks = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    masks[0, 0, 0, 2:] = masks[0, 0, 1, 2:] = True  # a 2x2 block; 2 of its pixels are active
    assert unit_iou(maps, masks, 0.5).item() == pytest.approx(2 / 6)
    # thresholds per unit and concept: above every value nothing is active (IoU 0); the mask itself gives 1
    two = torch.cat([masks, masks.clone().fill_(False)], dim=1)
    got = unit_iou(torch.cat([maps, masks.float()], dim=1), two, torch.tensor([[0.5, 5.0], [0.5, 0.5]]))
    torch.testing.assert_close(got, torch.tensor([[2 / 6, 0.0], [1.0, 0.0]], dtype=torch.float64))
    # the same counts through the bucketed counter the IQR uses: 4 above 0.5, 2 of them in the mask
    active, inter = level_counts(maps.reshape(-1), masks.reshape(-1, 1), torch.tensor([0.5, -1.0]))
    assert active.tolist() == [4, 16] and inter.tolist() == [[2, 4]]


def test_information_quality_ratio_is_1_for_equal_sets_and_0_for_independent_ones():
    assert information_quality_ratio(torch.tensor(30.0), torch.tensor(30.0), torch.tensor(30.0), 100).item() == \
        pytest.approx(1.0)
    # |A| = |B| = 50 of 100 and |A ∧ B| = 25 = 100 * 0.5 * 0.5: independent, I(A; B) = 0
    assert information_quality_ratio(torch.tensor(25.0), torch.tensor(50.0), torch.tensor(50.0), 100).item() == \
        pytest.approx(0.0, abs=1e-12)


def test_iqr_picks_the_quantile_level_that_separates_the_concept_perfectly():
    values = torch.arange(1000, dtype=torch.float32)  # one unit over 1,000 pixels
    masks = (values >= 900)[:, None]  # the concept: exactly the top 10% of the unit's values
    assert float(IQR_FRACTIONS[66]) == pytest.approx(0.1)  # 10^(-3 + 3 * 66 / 99): one of the candidate levels
    t, iou, frac, iqr = iqr_choice(values, masks)
    assert t.item() == pytest.approx(899.1)  # the 0.9 quantile of 0..999 (linear interpolation)
    assert frac.item() == pytest.approx(0.1) and iou.item() == pytest.approx(1.0) and iqr.item() == pytest.approx(1.0)
    # the classifier default (top 0.5%) instead: 5 active pixels, all inside the 100-pixel mask -> IoU 5/100
    maps = values.view(1, 1, 10, 100)
    from ganforge.explore.dissect_scores import quantiles

    assert unit_iou(maps, masks.view(1, 1, 10, 100), quantiles(values, torch.tensor([0.995]))).item() == \
        pytest.approx(0.05)


def test_iqr_ignores_a_concept_rarer_than_a_thousandth_and_levels_at_or_below_zero():
    values = torch.arange(-1000, 1000, dtype=torch.float32)
    rare = torch.zeros(2000, 1, dtype=torch.bool)
    rare[-1] = True  # 1 pixel in 2,000 < 0.1%
    assert iqr_choice(values, rare)[3].item() == 0.0
    negative = (values < -500)[:, None]  # only thresholds below 0 could isolate it; none may compete
    assert iqr_choice(values, negative)[3].item() == 0.0


# ------------------------------------------------------------------------------------------------------ ablation
def test_ablation_zeroes_the_chosen_units_of_the_hooked_layer_and_leaves_the_others():
    G = tiny_G("dcgan")
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    seen = []
    hook = G.ups[1].register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))  # relu(norms.0(...))
    plain = G(z)
    with ablated(G, "norms.0", [1, 4]):
        G(z)
    after = G(z)
    hook.remove()
    before, off = seen[0], seen[1]
    assert before[:, [1, 4]].abs().sum() > 0 and torch.equal(off[:, [1, 4]], torch.zeros_like(off[:, [1, 4]]))
    keep = [c for c in range(before.shape[1]) if c not in (1, 4)]
    assert torch.equal(off[:, keep], before[:, keep])
    assert torch.equal(after, plain)  # the hook is gone after the block


def test_switching_off_the_unit_that_paints_a_concept_removes_all_of_it(tmp_path):
    G = PaintingG()
    out = explore(G, "dissect", {"segmenter": "module", "module": "test_explore_dissect:colour_segmenter",
                                 "concepts": CHANNELS, "n": 64, "n_ace": 32, "ablate_k": 1, "random_draws": 3,
                                 "top": 2, "show": 2}, out=tmp_path / "d", progress=False)
    res = json.loads((out / "result.json").read_text())["results"]
    assert res["layer"] == "units" and res["unit_concept"][:2] == ["r", "g"]
    assert res["unit_iou"][0] > 0.9 and res["unit_iou"][1] > 0.9  # red is u0 > 0.1; IQR's level lands near it
    ace = res["ace"]
    assert ace["absent"] == ["b"]  # no unit reaches blue
    red, green = ace["concepts"]["r"], ace["concepts"]["g"]
    assert red["units"] == [0] and green["units"] == [1]
    assert red["base_area"] > 0.1 and red["ace_top_area"] == pytest.approx(red["base_area"])  # all red gone
    assert green["ace_top_area"] == pytest.approx(green["base_area"])
    assert red["ace_random_area_mean"] <= red["ace_top_area"]
    assert (out / "units.png").is_file() and (out / "iou.png").is_file() and (out / "ablation-r.png").is_file()


# -------------------------------------------------------------------------------------------- shapes segmenter
def test_ground_truth_masks_are_exactly_the_rendered_shapes_pixels():
    from ganforge.data.shapes_segmenter import CONCEPTS, layout_masks

    lay = {"shapes": [{"shape": "square", "colour": "red", "size": "small", "box": (2, 3, 4)}], "relation": None}
    m = layout_masks(lay, 16)
    red = np.zeros((16, 16), bool)
    red[3:7, 2:6] = True  # rows y 3..6, columns x 2..5
    assert (m[CONCEPTS.index("red")] == red).all() and (m[CONCEPTS.index("square")] == red).all()
    assert m[CONCEPTS.index("background")].sum() == 256 - 16 and m[CONCEPTS.index("circle")].sum() == 0
    rng = np.random.default_rng(3)
    for resolution in (16, 32, 64):
        for _ in range(30):
            lay = sample_layout(rng, resolution, 0.5)
            img, m = render(lay, resolution).transpose(1, 2, 0), layout_masks(lay, resolution)
            lit = img.any(axis=2)
            kinds = m[[CONCEPTS.index(s) for s in SHAPES]]
            assert (kinds.sum(0) == lit).all()  # every lit pixel is exactly one shape kind; no unlit one is any
            assert (m[CONCEPTS.index("background")] == ~lit).all()
            for name, rgb in COLOURS.items():
                assert (m[CONCEPTS.index(name)] == (img == rgb).all(axis=2)).all()
            for s in lay["shapes"]:  # each shape's kind mask holds its own pixels
                x, y, side = s["box"]
                drawn = (img[y:y + side, x:x + side] == COLOURS[s["colour"]]).all(axis=2)
                assert (m[CONCEPTS.index(s["shape"]), y:y + side, x:x + side] >= drawn).all()


@pytest.fixture(scope="module")
def segmenter_cache(tmp_path_factory):
    """A cache holding a shapes segmenter at 16 px trained on a small budget (the full one takes ~15 CPU-s)."""
    import ganforge.data.shapes_segmenter as seg_mod

    cache = tmp_path_factory.mktemp("segcache")
    tiny = seg_mod.train_shapes_segmenter(16, n_train=1000, epochs=3, n_test=200)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(seg_mod, "train_shapes_segmenter", lambda *a, **k: tiny)
        mp.setattr(seg_mod, "MIN_IOU", 0.0)
        seg_mod.load_shapes_segmenter(16, cache)
    return cache, tiny


def test_segmenter_held_out_iou_and_cache(segmenter_cache, monkeypatch):
    import ganforge.data.shapes_segmenter as seg_mod

    cache, tiny = segmenter_cache
    iou = tiny.heldout_iou
    assert set(iou) == {*seg_mod.CONCEPTS, "mean"}
    # a small budget (1,000 renders x 3 epochs) already reads colour and background; the full one reaches ~1.0
    assert min(iou[c] for c in ("red", "green", "blue", "yellow", "background")) > 0.9 and iou["mean"] > 0.75
    monkeypatch.setattr(seg_mod, "train_shapes_segmenter", lambda *a, **k: pytest.fail("retrained"))
    again = seg_mod.load_shapes_segmenter(16, cache)
    assert again.heldout_iou == iou and again.heldout_iou_noisy == tiny.heldout_iou_noisy
    x = torch.rand(4, 3, 16, 16)
    torch.testing.assert_close(again.probabilities(x), tiny.probabilities(x))
    path = seg_mod.segmenter_path(16, cache)
    path.write_bytes(b"not a safetensors file")
    monkeypatch.setattr(seg_mod, "train_shapes_segmenter", lambda *a, **k: tiny)
    monkeypatch.setattr(seg_mod, "MIN_IOU", 0.0)
    seg_mod.load_shapes_segmenter(16, cache)  # a corrupt file is rebuilt
    assert seg_mod._load_cached(path, 16) is not None


def test_segmenter_training_is_deterministic():
    from ganforge.data.shapes_segmenter import train_shapes_segmenter

    a, b = (train_shapes_segmenter(16, n_train=64, epochs=1, n_test=16) for _ in range(2))
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert a.heldout_iou == b.heldout_iou


# ---------------------------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("arch", ARCHITECTURES.names())
def test_dissect_runs_on_every_conv_generator_and_names_the_reason_otherwise(arch, segmenter_cache, tmp_path,
                                                                             monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(segmenter_cache[0]))
    G = tiny_G(arch)
    # a convolutional family declares channels_last (its convs may be functional, e.g. StyleGAN2's modulated ones)
    convs = G.channels_last or any(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) for m in G.modules())
    opts = {"n": 12, "n_ace": 6, "random_draws": 2, "top": 2, "show": 2}  # segmenter: the bundled shapes one
    if not convs:
        with pytest.raises(GanforgeError, match="has no convolutional feature maps") as e:
            explore(G, "dissect", opts, out=tmp_path / "d", progress=False)
        assert "\n" not in str(e.value) and not (tmp_path / "d").exists()
        return
    out = explore(G, "dissect", opts, out=tmp_path / "d", progress=False)
    res = json.loads((out / "result.json").read_text())["results"]
    assert res["layer"] == resolve_layer(G, None).name and res["segmenter"] == "shapes"
    assert res["segmenter_accuracy"]["heldout_iou"] == segmenter_cache[1].heldout_iou
    n_units, n_concepts = res["units"], len(res["concepts"])
    assert np.array(res["iou"]).shape == (n_units, n_concepts) and len(res["unit_concept"]) == n_units
    assert 0 <= min(res["unit_iou"]) and max(res["unit_iou"]) <= 1


def test_cli_dissect_writes_the_page_of_a_trained_shapes_run(tmp_path, capsys):
    from helpers import TINY_DIGITS

    from ganforge.training.trainer import train

    raw = copy.deepcopy(TINY_DIGITS)
    raw.pop("conditioning")
    raw["data"] = {"name": "shapes-captions", "resolution": 16, "n": 64}
    raw["model"] = {"name": "dcgan", "z_dim": 8, "g_ch": 8, "d_ch": 8}
    raw["train"].update(steps=2, ckpt_every=2)
    train(from_dict(raw), tmp_path / "run", progress=False)
    rc = main(["explore", str(tmp_path / "run"), "dissect", "segmenter=module", "concepts=[r, g, b]",
               "module=test_explore_dissect:colour_segmenter", "n=16", "n_ace=8", "random_draws=2", "top=2",
               "show=2", "method=quantile", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    out = tmp_path / "run" / "explore" / "dissect"
    record = json.loads((out / "result.json").read_text())
    assert record["options"]["method"] == "quantile" and record["results"]["layer"] == "norms.0"
    assert {"units.png", "iou.png"} <= set(record["files"])
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == len([f for f in record["files"] if f.endswith(".png")])


# --------------------------------------------------------------------------------------------------------- errors
def test_bad_layer_non_image_G_and_bad_segmenters_are_one_line_errors(tmp_path):
    G = tiny_G("dcgan")
    cases = [
        (G, {"layer": "no.such"}, "layer 'no.such' is not a module of DCGANGenerator; valid names include: norm0"),
        (G, {"layer": "linear"}, "layer 'linear' does not give a \\(C, H, W\\) feature map"),
        (tiny_G("mlp", shape=(2,)), {}, "needs a generator of images"),
        (G, {"segmenter": "module"}, "segmenter=module needs module="),
        (G, {"segmenter": "module", "module": "test_explore_dissect:colour_segmenter", "concepts": ["r", "g"]},
         "segmenter module returned \\(4, 3, 16, 16\\); expected \\(B, K, H, W\\) = \\(4, 2, 16, 16\\)"),
        (G, {"segmenter": "module", "module": "test_explore_dissect:colour_segmenter"}, "concepts="),
        (tiny_G("dcgan", shape=(1, 16, 16)), {}, "segmenter shapes needs RGB square images"),
        (G, {"method": "median"}, "method"),
    ]
    for gen, opts, match in cases:
        with pytest.raises(GanforgeError, match=match) as e:
            explore(gen, "dissect", {"n": 4, "n_ace": 2, **opts}, out=tmp_path / "x", progress=False)
        assert "\n" not in str(e.value)
        assert not (tmp_path / "x").exists()
