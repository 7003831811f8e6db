"""`ganforge explore`: the framework (page, result.json, registry, CLI) and interpolate, spectrum and SeFa."""
from __future__ import annotations

import base64
import copy
import io
import json
import math
import re

import pytest
import torch
from PIL import Image

from helpers import TINY_DIGITS, shared_cache

from ganforge.cli.main import main
from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.explore import explore
from ganforge.explore.ganspace import pca, regress_directions
from ganforge.explore.interpolate import lerp, slerp
from ganforge.explore.neighbours import memorization, nearest
from ganforge.explore.ppl import path_lengths, trimmed_mean
from ganforge.explore.sefa import first_latent_layer, sefa_directions
from ganforge.explore.spectrum import high_frequency_gap, log_power_spectrum, radial_profile
from ganforge.explore.truncation import truncated_ws, truncated_z
from ganforge.explore.tsne import one_nn_accuracy, tsne_embed
from ganforge.registries import ARCHITECTURES, EXPLORERS, G_CONDITIONING


def tiny_G(arch: str, opts: dict, cond: str = "none", k: int = 0, shape=(1, 8, 8)):
    g_cond = G_CONDITIONING.build(cond, {}, num_classes=k, text_dim=0)
    torch.manual_seed(0)
    return ARCHITECTURES.build(arch, opts, img_shape=shape, num_classes=k, g_cond=g_cond).G.eval()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A class-conditional 8x8 digits run trained for 2 steps, with its export."""
    from ganforge.training.trainer import train

    raw = copy.deepcopy(TINY_DIGITS)
    raw["train"].update(steps=2, ckpt_every=2)
    out = tmp_path_factory.mktemp("explore") / "run"
    with shared_cache(tmp_path_factory):
        train(from_dict(raw), out, progress=False)
    return out


# ------------------------------------------------------------------------------------------------------------ SeFa
def test_sefa_on_diag_3_1_gives_e1_first_with_eigenvalue_9():
    vals, dirs = sefa_directions(torch.diag(torch.tensor([3.0, 1.0])))
    assert vals.tolist() == pytest.approx([9.0, 1.0])
    assert dirs[0].tolist() == pytest.approx([1.0, 0.0])  # sign fixed: largest coordinate positive
    assert dirs[1].tolist() == pytest.approx([0.0, 1.0])


def test_sefa_directions_maximise_the_change_of_the_first_layer():
    A = torch.randn(20, 5, generator=torch.Generator().manual_seed(1))
    vals, dirs = sefa_directions(A)
    assert (A.double() @ dirs[0]).pow(2).sum().item() == pytest.approx(vals[0].item())  # ||A n||^2 = lambda_1
    assert vals[0].item() == pytest.approx(torch.linalg.matrix_norm(A.double(), ord=2).item() ** 2)


def test_first_latent_layer_keeps_only_the_z_columns_of_a_label_concatenating_G():
    G = tiny_G("dcgan", {"z_dim": 6, "g_ch": 8, "d_ch": 8}, "concat", k=3)  # G.linear sees [z, one_hot(y)]
    layer = first_latent_layer(G)
    assert layer.space == "z" and layer.names == ["linear"]
    torch.testing.assert_close(layer.weight, G.linear.weight[:, :6], atol=1e-5, rtol=1e-4)


def test_first_latent_layer_of_a_style_G_stacks_its_style_affines():
    G = tiny_G("style-mlp", {"z_dim": 4, "w_dim": 6, "hidden": 8, "layers": 2})
    layer = first_latent_layer(G)
    assert layer.space == "w" and layer.names == ["layers.0.affine", "layers.1.affine", "out.affine"]
    want = torch.cat([G.layers[0].affine.weight, G.layers[1].affine.weight, G.out.affine.weight])
    torch.testing.assert_close(layer.weight, want, atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------------------------------- interpolation
def test_slerp_endpoints_are_exact_and_the_midpoint_of_orthogonal_unit_vectors_is_their_sum_over_sqrt2():
    a, b = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]])
    assert torch.equal(slerp(a, b, 0.0), a) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-7)
    torch.testing.assert_close(slerp(a, b, 0.5), (a + b) / math.sqrt(2))
    assert slerp(a, b, 0.5).norm().item() == pytest.approx(1.0)  # stays on the sphere, unlike lerp (1/sqrt 2)


def test_lerp_is_linear_and_slerp_falls_back_to_it_for_parallel_vectors():
    a, b = torch.tensor([[2.0, -4.0]]), torch.tensor([[6.0, 8.0]])
    torch.testing.assert_close(lerp(a, b, 0.25), torch.tensor([[3.0, -1.0]]))
    c = 3 * a  # angle 0: sin(omega) = 0
    torch.testing.assert_close(slerp(a, c, 0.5), torch.tensor([[4.0, -8.0]]))


# --------------------------------------------------------------------------------------------------------- spectrum
def test_spectrum_of_a_pure_sinusoid_peaks_at_its_frequency():
    h = w = 32
    x = torch.arange(w, dtype=torch.float64)
    img = (0.5 + 0.4 * torch.cos(2 * math.pi * 5 * x / w)).expand(h, w)[None]  # 5 cycles per image, horizontal
    spec = log_power_spectrum(img)
    spec_no_dc = spec.clone()
    spec_no_dc[h // 2, w // 2] = -math.inf
    peak = divmod(int(spec_no_dc.argmax()), w)
    assert peak in [(16, 16 - 5), (16, 16 + 5)]
    profile = radial_profile(spec)
    assert int(profile[1:].argmax()) + 1 == 5


def test_radial_profile_averages_rings_and_gap_is_the_mean_abs_difference_at_high_radius():
    spec = torch.zeros(8, 8, dtype=torch.float64)
    spec[4, 4] = 7.0  # the centre alone is ring 0
    assert radial_profile(spec)[0].item() == 7.0 and radial_profile(spec)[1:].abs().sum().item() == 0
    real = torch.zeros(8, 8, dtype=torch.float64)
    assert high_frequency_gap(real + 2.0, real, high_from=0.5) == pytest.approx(2.0)


# ------------------------------------------------------------------------------------------------ end to end (CLI)
def _decoded_images(page: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(d))) for d in re.findall(r"base64,([A-Za-z0-9+/=]+)", page)]


# small options so every method runs in seconds on the tiny run (the defaults are sized for real use)
SMALL = {"ganspace": ["n=64", "k=2", "samples=2", "steps=3", "classifier=digits", "measure_n=8"],
         "sefa": ["classifier=digits", "measure_n=8"], "truncation": ["n=40", "psis=[0.5, 1.0]", "samples=2"],
         "neighbours": ["n=16", "n_real=200", "show=2"], "tsne": ["n=40"], "ppl": ["n=24"],
         "interfacegan": ["n=200", "ratio=0.1", "samples=1", "steps=3", "conditions=[class:7]"],
         "gradctrl": ["n=200", "ratio=0.1", "samples=1", "steps=2", "exclude=[class:7]", "k=2"],
         "invert": ["n=2", "steps=5", "codes=2"], "recovery": ["n=4", "steps=3", "batch_size=4"],
         "householder": ["finetune_steps=2", "rank=3", "k=1", "samples=1", "steps=3"]}


# methods that must refuse the tiny MLP digits run (their own tests run the page on a run they can read)
REFUSES_TINY_RUN = {"dissect": "has no convolutional feature maps"}


@pytest.mark.parametrize("method", EXPLORERS.names())
def test_cli_explore_writes_figures_result_and_a_self_contained_page(method, run_dir, capsys):
    rc = main(["explore", str(run_dir), method, *SMALL.get(method, []), "--no-progress", "--seed", "3"])
    if method in REFUSES_TINY_RUN:
        assert rc == 2 and REFUSES_TINY_RUN[method] in _one_line_error(capsys)
        return
    assert rc == 0, capsys.readouterr().err
    out = run_dir / "explore" / method
    record = json.loads((out / "result.json").read_text())
    assert record["method"] == method and record["seed"] == 3 and record["results"]
    if method in ("sefa", "ganspace"):  # measured against random directions with the digits classifier
        change = record["results"]["attribute_change"]
        assert change["classifier"] == "digits" and len(change["directions"]) >= 1 and "class" in change["random"]
    figures = [f for f in record["files"] if f.endswith((".png", ".gif"))]
    assert figures and all((out / f).is_file() for f in figures)
    page = (out / "index.html").read_text()
    images = _decoded_images(page)
    assert len(images) == len(figures) and all(im.size[0] > 0 for im in images)
    assert "http://" not in page and "https://" not in page  # nothing fetched from outside
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_interpolate_grid_has_rows_by_steps_tiles_and_a_there_and_back_gif(run_dir, tmp_path):
    out = explore(run_dir, "interpolate", {"rows": 2, "steps": 3, "mode": "lerp"}, out=tmp_path / "i", progress=False)
    grid = Image.open(out / "grid.png")
    tile, pad = 64 + 2, 2  # 8 px tiles enlarged x8, 2 px padding
    assert grid.size == (3 * tile + pad, 2 * tile + pad)
    assert Image.open(out / "row0.gif").n_frames == 2 * 24 - 2


def test_sefa_result_eigenvalues_are_those_of_the_first_layer(run_dir, tmp_path):
    from ganforge.training.export import load_generator

    out = explore(run_dir, "sefa", {"k": 2, "samples": 1, "steps": 3}, out=tmp_path / "s", progress=False)
    res = json.loads((out / "result.json").read_text())["results"]
    G = load_generator(run_dir)
    A = first_latent_layer(G).weight.double()
    assert res["eigenvalues"][0] == pytest.approx(torch.linalg.matrix_norm(A, ord=2).item() ** 2, rel=1e-6)
    assert sorted(p.name for p in out.glob("direction-*.png")) == ["direction-00.png", "direction-01.png"]


# ---------------------------------------------------------------------------------------------------------- errors
def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("ganforge: error:")
    return err


def test_unknown_method_is_a_one_line_error_listing_the_choices(run_dir, capsys):
    assert main(["explore", str(run_dir), "tsne-nope"]) == 2
    err = _one_line_error(capsys)
    assert "'tsne-nope'" in err and "interpolate" in err


def test_bad_option_is_a_one_line_error_naming_the_key(run_dir, capsys):
    assert main(["explore", str(run_dir), "interpolate", "mode=cubic"]) == 2
    assert "mode" in _one_line_error(capsys)
    assert main(["explore", str(run_dir), "sefa", "alpha=2"]) == 2
    assert "alpha" in _one_line_error(capsys)


def test_a_run_without_an_export_is_a_one_line_error(tmp_path, capsys):
    assert main(["explore", str(tmp_path), "sefa"]) == 2
    assert "no exported generator" in _one_line_error(capsys)


def test_w_space_on_a_non_style_G_names_the_reason(tmp_path):
    G = tiny_G("dcgan", {"z_dim": 4, "g_ch": 8, "d_ch": 8})
    with pytest.raises(GanforgeError, match="space 'w' needs a style-based generator"):
        explore(G, "interpolate", {"space": "w"}, out=tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


def test_w_space_interpolation_runs_on_a_style_G_and_spectrum_needs_the_run_data(tmp_path):
    G = tiny_G("style-mlp", {"z_dim": 4, "w_dim": 6, "hidden": 8, "layers": 2})
    out = explore(G, "interpolate", {"space": "w", "rows": 1, "steps": 2, "frames": 2}, out=tmp_path / "w",
                  progress=False)
    assert (out / "grid.png").is_file()
    with pytest.raises(GanforgeError, match="needs the run's training data"):
        explore(G, "spectrum", out=tmp_path / "s", progress=False)


# -------------------------------------------------------------------------------------------------------- GANSpace
def test_ganspace_pca_of_a_diag_4_1_gaussian_gives_e1_first_with_std_2():
    X = torch.randn(20000, 2, generator=torch.Generator().manual_seed(0)) * torch.tensor([2.0, 1.0])
    p = pca(X, 2)
    assert abs(p.components[0, 0].item()) == pytest.approx(1.0, abs=1e-3)  # +-e1
    assert p.stds.tolist() == pytest.approx([2.0, 1.0], rel=0.03)
    assert p.explained.tolist() == pytest.approx([0.8, 0.2], abs=0.01)  # variances 4 and 1 of a total of 5


def test_ganspace_regression_on_a_linear_layer_recovers_the_top_right_singular_vector():
    gen = torch.Generator().manual_seed(2)
    A = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    Z = torch.randn(500, 4, generator=gen, dtype=torch.float64)
    Z = Z - Z.mean(0)
    Z = Z @ torch.linalg.inv(torch.linalg.cholesky(Z.t() @ Z / (len(Z) - 1))).t()  # sample covariance exactly I
    X = Z @ A.t()  # activations of the layer y = A z
    p = pca(X, 2)
    d = regress_directions(Z, X, p)
    v1 = torch.linalg.svd(A).Vh[0]  # the z direction whose image is the top PCA axis of A z
    assert abs(float(d[0] @ v1)) == pytest.approx(1.0, abs=1e-9) and d.norm(dim=1).tolist() == pytest.approx([1, 1])


def test_ganspace_bad_layer_name_is_a_one_line_error_listing_valid_names(tmp_path):
    G = tiny_G("dcgan", {"z_dim": 4, "g_ch": 8, "d_ch": 8})
    with pytest.raises(GanforgeError) as e:
        explore(G, "ganspace", {"layer": "no.such.layer"}, out=tmp_path / "g", progress=False)
    assert "no.such.layer" in str(e.value) and "linear" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "g").exists()


# ------------------------------------------------------------------------------------------------------ truncation
def test_truncation_of_z_keeps_every_coordinate_within_psi():
    G = tiny_G("dcgan", {"z_dim": 16, "g_ch": 8, "d_ch": 8})
    z, _ = truncated_z(G, 200, 0, 0.05)
    assert z.abs().max().item() <= 0.05 and z.abs().max().item() > 0.04  # resampled, not clipped to 0


def test_truncation_psi_0_of_a_style_G_gives_its_w_average_and_psi_1_leaves_w():
    G = tiny_G("style-mlp", {"z_dim": 4, "w_dim": 6, "hidden": 8, "layers": 2})
    G.w_avg.copy_(torch.arange(6.0))
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    ws = truncated_ws(G, z, None, 0.0)
    assert torch.equal(ws, torch.arange(6.0).expand(5, G.num_ws, 6))
    w = G.mapping(z, None, update_w_avg=False)
    torch.testing.assert_close(truncated_ws(G, z, None, 0.5), (w + torch.arange(6.0)) / 2)


# ------------------------------------------------------------------------------------------------------ neighbours
def test_neighbours_of_copies_of_training_images_are_at_distance_0_and_flagged_as_memorized():
    gen = torch.Generator().manual_seed(0)
    train = torch.randn(50, 8, generator=gen)
    held_out = torch.randn(30, 8, generator=gen)
    fresh = torch.randn(4, 8, generator=gen) + 100.0  # far from everything
    d, idx = nearest(torch.cat([train[[3, 7, 11, 19]], fresh]), train, k=2, chunk=3)
    assert d[:4, 0].tolist() == [0.0] * 4 and idx[:4, 0].tolist() == [3, 7, 11, 19]
    assert (d[:, 1] >= d[:, 0]).all()
    d_base, _ = nearest(held_out, train, k=1)
    res = memorization(d[:, 0], d_base[:, 0])
    assert res["memorized"] == [0, 1, 2, 3] and res["memorized_fraction"] == 0.5
    assert res["generated"]["p05"] == 0.0 and res["baseline"]["median"] > 0


# ------------------------------------------------------------------------------------------------------------ t-SNE
def test_tsne_one_nn_accuracy_is_about_half_for_one_distribution_and_1_for_separated_sets():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(80, 5, generator=gen), torch.randn(80, 5, generator=gen)
    is_real = torch.cat([torch.ones(80), torch.zeros(80)]).bool()
    same = one_nn_accuracy(tsne_embed(torch.cat([a, b]), seed=0, perplexity=20), is_real)
    apart = one_nn_accuracy(tsne_embed(torch.cat([a, b + 20.0]), seed=0, perplexity=20), is_real)
    assert 0.3 <= same <= 0.7 and apart == 1.0
    # hand-checkable: two tight pairs of one set each -> every nearest neighbour is in its own set
    assert one_nn_accuracy(torch.tensor([[0.0], [0.1], [5.0], [5.1]]), torch.tensor([1, 1, 0, 0])) == 1.0


# -------------------------------------------------------------------------------------------------------------- PPL
def test_ppl_of_a_linear_G_with_identity_features_and_lerp_is_the_squared_norm_of_A_times_the_difference():
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    z1, z2 = (torch.randn(5, 3, generator=gen, dtype=torch.float64) for _ in range(2))
    t = torch.rand(5, generator=gen, dtype=torch.float64)
    d = path_lengths(lambda z: z @ A.t(), z1, z2, t, 1e-4, lerp, lambda x: x)
    torch.testing.assert_close(d, ((z2 - z1) @ A.t()).pow(2).sum(1), rtol=1e-7, atol=0)


def test_ppl_along_a_slerp_quarter_circle_is_the_squared_angular_speed():
    # |z| = 1, omega = pi/2: the path moves at speed pi/2, so G = 2 I gives d / eps^2 -> (2 * pi / 2)^2 = pi^2
    z1, z2 = torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    d = path_lengths(lambda z: 2 * z, z1, z2, torch.tensor([0.3], dtype=torch.float64), 1e-6, slerp, lambda x: x)
    assert d.item() == pytest.approx(math.pi ** 2, rel=1e-5)


def test_ppl_trimmed_mean_drops_values_outside_the_1st_and_99th_percentiles():
    values = torch.arange(101.0)
    values[100] = 1e9  # the top outlier and the bottom value 0 are dropped: the mean of 1 .. 99
    assert trimmed_mean(values) == pytest.approx(50.0)


def test_bad_backbone_is_a_one_line_error_naming_it(run_dir, capsys):
    for method in ("tsne", "neighbours", "truncation", "ppl"):
        assert main(["explore", str(run_dir), method, "backbone=nope-net"]) == 2
        err = _one_line_error(capsys)
        assert "'nope-net'" in err and "digits-classifier" in err


# ----------------------------------------------------------------------------------------- supervised directions
def test_interfacegan_conditional_direction_of_the_paper_example_is_e2_and_orthogonal_to_every_condition():
    from ganforge.explore.interfacegan import conditional_direction

    n1, n2 = torch.tensor([1.0, 1.0]) / math.sqrt(2), torch.tensor([1.0, 0.0])
    assert conditional_direction(n1, [n2]).tolist() == pytest.approx([0.0, 1.0])  # (n1 - (n1.n2) n2) / norm
    gen = torch.Generator().manual_seed(0)
    n, conds = torch.randn(8, generator=gen), torch.randn(3, 8, generator=gen)  # 3 non-orthogonal conditions
    d = conditional_direction(n, conds)
    assert (conds.double() @ d).abs().max().item() < 1e-6 and d.norm().item() == pytest.approx(1.0)
    assert float(d @ n.double()) > 0  # still the target's direction, minus the conditions' span


def test_interfacegan_svm_on_separable_toy_latents_recovers_the_separating_normal():
    from ganforge.explore.interfacegan import svm_boundary

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(6, generator=gen, dtype=torch.float64)
    a = a / a.norm()
    z = torch.randn(4000, 6, generator=gen, dtype=torch.float64)
    normal, acc = svm_boundary(z, z @ a, ratio=0.1, val=0.3, seed=0)  # top / bottom 10% along a: separable
    assert float(normal @ a) > 0.99 and acc == 1.0


def test_gradctrl_direction_of_a_logistic_classifier_is_parallel_to_a_and_masked_channels_are_zero():
    from ganforge.explore.gradctrl import gradctrl_direction

    a = torch.tensor([1.0, -2.0, 0.5, 3.0, 1.0])
    b = torch.tensor([0.0, 4.0, 0.1, -5.0, 0.2])  # the excluded attribute leans on channels 1 and 3
    w = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    d = gradctrl_direction(lambda v: torch.sigmoid(v @ a), [], w, 0)
    torch.testing.assert_close(d, (a / a.norm()).expand(7, 5))  # sigma'(a.w) a, normalised: +a, every sample
    m = gradctrl_direction(lambda v: torch.sigmoid(v @ a), [lambda v: torch.sigmoid(v @ b)], w, 2)
    assert torch.equal(m[:, [1, 3]], torch.zeros(7, 2))  # exactly zero, not small
    torch.testing.assert_close(m.norm(dim=1), torch.ones(7))
    kept = torch.tensor([1.0, 0.0, 0.5, 0.0, 1.0])  # a with channels 1, 3 removed, normalised
    torch.testing.assert_close(m, (kept / kept.norm()).expand(7, 5))


class LinearG(torch.nn.Module):
    """G(z) = tanh(A z) as a 1x4x4 image: a known generator whose latents inversion must find again."""

    def __init__(self, z_dim: int = 3):
        super().__init__()
        self.z_dim, self.num_classes, self.text_dim, self.img_shape = z_dim, 0, 0, (1, 4, 4)
        self.lin = torch.nn.Linear(z_dim, 16, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(16, z_dim, generator=torch.Generator().manual_seed(3)) * 0.3)

    def sample_z(self, n, generator=None, truncation=None):
        return torch.randn(n, self.z_dim, generator=generator)

    def forward(self, z, y=None):
        return torch.tanh(self.lin(z)).reshape(-1, 1, 4, 4)


def test_inversion_recovers_the_latent_of_a_generators_own_sample():
    from ganforge.explore.invert import invert

    G = LinearG()
    z_true = torch.tensor([[0.8, -0.5, 0.3], [-1.0, 0.2, 0.6]])
    res = invert(G, G(z_true).detach(), space="z", steps=400, lr=0.05, seed=0)
    assert (res.latents - z_true).abs().max().item() < 1e-2 and res.mse.max().item() < 1e-5
    # the same with a feature term (pixels again as features: the optimum is unchanged)
    res = invert(G, G(z_true).detach(), steps=400, lr=0.05, features=lambda x: x.flatten(1), lam=1.0)
    assert (res.latents - z_true).abs().max().item() < 1e-2


def test_multi_code_inversion_composes_per_channel_weighted_features_at_the_layer():
    from ganforge.explore.invert import invert

    G = LinearG()
    x = G(torch.tensor([[0.8, -0.5, 0.3]])).detach()
    res = invert(G, x, steps=0, codes=2, layer="lin", seed=0)  # no step: alphas 1/2, the mean of the features
    z1, z2 = res.latents[0], res.latents[1]
    torch.testing.assert_close(res.reconstruction, torch.tanh((G.lin(z1) + G.lin(z2)) / 2).reshape(1, 1, 4, 4))
    assert res.alphas.shape == (2, 16)
    fitted = invert(G, x, steps=300, lr=0.05, codes=2, layer="lin", seed=0)
    assert fitted.mse.item() < 1e-5


def test_latent_recovery_gap_on_fixed_errors_and_the_ks_p_value_of_scipy():
    from scipy.stats import ks_2samp

    from ganforge.explore.recovery import recover, recovery_gap

    res = recovery_gap([0.1, 0.2, 0.3], [0.3, 0.4, 0.5])
    assert res["gap"] == pytest.approx(0.5)  # |0.4 - 0.2| / 0.4
    assert res["ks_pvalue"] == ks_2samp([0.1, 0.2, 0.3], [0.3, 0.4, 0.5]).pvalue
    G = LinearG()
    e = recover(G, G(torch.tensor([[0.5, -0.2, 0.1], [0.0, 0.9, -0.4]])).detach(), None, steps=50)
    assert e.max().item() < 1e-6  # L-BFGS finds a generator's own samples again


def test_gradctrl_with_one_top_k_per_excluded_attribute_runs_masked_and_unmasked(run_dir, tmp_path):
    out = explore(run_dir, "gradctrl", {"n": 200, "ratio": 0.1, "samples": 1, "steps": 2, "k": [2, 3],
                                        "exclude": ["class:7", "class:3"]}, out=tmp_path / "g", progress=False)
    res = json.loads((out / "result.json").read_text())["results"]
    assert set(res["change_per_unit_masked"]) == set(res["change_per_unit_unmasked"]) == {"class:1", "class:7",
                                                                                          "class:3"}


def test_recovery_restarts_keep_each_images_best_start_and_share_starts_between_splits(run_dir, tmp_path):
    one = explore(run_dir, "recovery", {"n": 6, "steps": 3, "restarts": 1}, out=tmp_path / "r1", progress=False)
    two = explore(run_dir, "recovery", {"n": 6, "steps": 3, "restarts": 2}, out=tmp_path / "r2", progress=False)
    r1, r2 = (json.loads((o / "result.json").read_text())["results"] for o in (one, two))
    for split in ("errors_train", "errors_test"):  # start 0 is the same, so the best of two is never worse
        assert all(b <= a + 1e-7 for a, b in zip(r1[split], r2[split]))
    assert any(b < a for a, b in zip(r1["errors_train"] + r1["errors_test"], r2["errors_train"] + r2["errors_test"]))


def test_supervised_and_inversion_bad_input_are_one_line_errors(tmp_path):
    from ganforge.explore.attributes import attribute_scorer
    from ganforge.explore.invert import invert

    G = LinearG()
    scorer = attribute_scorer("module", G, module=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)),
                              attributes={"mood": 2})
    with pytest.raises(GanforgeError, match="attribute 'mood' has 3 outputs, declared 2") as e:
        scorer(G(torch.zeros(2, 3)))
    assert "\n" not in str(e.value)
    with pytest.raises(GanforgeError, match="layer 'no.such' is not a module of LinearG; valid names include: lin"):
        invert(G, torch.zeros(1, 1, 4, 4), codes=2, layer="no.such")
    with pytest.raises(GanforgeError, match="space 'w\\+' needs a style-based generator"):
        invert(G, torch.zeros(1, 1, 4, 4), space="w+")
    D = tiny_G("dcgan", {"z_dim": 4, "g_ch": 8, "d_ch": 8})
    with pytest.raises(GanforgeError, match="space 'w\\+' needs a style-based generator"):
        explore(D, "invert", {"space": "w+"}, out=tmp_path / "i", progress=False)
    with pytest.raises(GanforgeError, match="attribute classifier digits: needs 1-channel images"):
        explore(tiny_G("dcgan", {"z_dim": 4, "g_ch": 8, "d_ch": 8}, shape=(3, 8, 8)), "interfacegan",
                out=tmp_path / "s", progress=False)
    with pytest.raises(GanforgeError, match="unknown attribute 'smile'"):
        explore(D, "gradctrl", {"target": "smile", "n": 20}, out=tmp_path / "g", progress=False)


def test_gradctrl_and_interfacegan_on_a_style_G_edit_in_w(tmp_path):
    G = tiny_G("style-mlp", {"z_dim": 4, "w_dim": 6, "hidden": 8, "layers": 2})
    out = explore(G, "gradctrl", {"n": 100, "ratio": 0.1, "samples": 1, "steps": 2, "exclude": ["class:3"],
                                  "layers": [0, 2]}, out=tmp_path / "g", progress=False)
    res = json.loads((out / "result.json").read_text())["results"]
    assert res["space"] == "w" and set(res) >= {"change_per_unit_masked", "change_per_unit_unmasked"}
    out = explore(G, "interfacegan", {"n": 100, "ratio": 0.1, "samples": 1, "steps": 2}, out=tmp_path / "i",
                  progress=False)
    assert len(json.loads((out / "result.json").read_text())["results"]["directions"]["n"]) == 6
