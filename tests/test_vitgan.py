"""ViTGAN (Lee et al., ICLR 2022): SLN, improved spectral norm, L2 attention, overlapping patches, the patch INR, the
style-based protocol, and R1's double backward through the ViT discriminator. Numbers are hand-computed."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ganforge.errors import GanforgeError
from ganforge.nn.spectral_norm import manual_power_iteration, power_iterate
from ganforge.nn.vit import (ImprovedSpectralNorm, L2Attention, OverlappingPatchEmbed, PatchINR,
                             SelfModulatedLayerNorm, apply_isn, fourier_features, patch_coordinates, patches_to_image)
from ganforge.registries import ARCHITECTURES, G_CONDITIONING

TINY = dict(z_dim=8, w_dim=8, mapping_layers=2, g_dim=8, d_dim=8, g_depth=2, d_depth=2, heads=2, inr_hidden=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build(shape=(3, 8, 8), cond="none", num_classes=0, **extra):
    g_cond = G_CONDITIONING.build(cond, {}, num_classes=num_classes)
    return ARCHITECTURES.build("vitgan", {**TINY, **extra}, img_shape=shape, num_classes=num_classes, g_cond=g_cond)


# -------------------------------------------------------------------------------------------------------------- SLN
def test_sln_with_zero_gamma_beta_is_plain_layernorm_and_modulates_per_sample():
    torch.manual_seed(0)
    sln = SelfModulatedLayerNorm(2, w_dim=3)
    h = torch.tensor([[[1.0, 3.0], [5.0, 5.0]]])  # (B=1, N=2, dim=2)
    w = torch.randn(1, 3)
    with torch.no_grad():
        for layer in (sln.gamma, sln.beta):
            layer.weight.zero_()
            layer.bias.zero_()
    ln = 1 / math.sqrt(1 + 1e-3)  # [1, 3]: mean 2, variance 1 -> [-1, 1] / sqrt(1 + eps)
    expected = torch.tensor([[[-ln, ln], [0.0, 0.0]]])
    assert torch.allclose(sln(h, w), expected, atol=1e-6)
    assert torch.allclose(sln(h, w), F.layer_norm(h, (2,), eps=1e-3), atol=1e-6)  # no affine
    with torch.no_grad():  # gamma(w) = w_0, beta(w) = 0.5: out = LN(h) (1 + w_0) + 0.5, per sample
        sln.gamma.weight[:, 0] = 1.0
        sln.beta.bias.fill_(0.5)
    w2 = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    out = sln(h.expand(2, -1, -1), w2)
    assert torch.allclose(out[0, 0], torch.tensor([-2 * ln + 0.5, 2 * ln + 0.5]), atol=1e-6)
    assert torch.allclose(out[1, 0], torch.tensor([0.5, 0.5]), atol=1e-6)  # 1 + gamma = 0 kills LN(h)


# -------------------------------------------------------------------------------------------------------------- ISN
def _isn_linear(weight: torch.Tensor) -> torch.nn.Linear:
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return apply_isn(layer)


def test_isn_is_exactly_w_at_init_when_the_estimate_is_the_true_sigma():
    torch.manual_seed(0)
    w0 = torch.randn(6, 4)
    layer = _isn_linear(w0)
    isn = layer.parametrizations.weight[0]
    assert isinstance(isn, ImprovedSpectralNorm)
    U, S, Vh = torch.linalg.svd(w0)
    assert isn.sigma_init.item() == pytest.approx(S[0].item(), rel=1e-6)
    with torch.no_grad():  # the power-iteration vectors at the top singular pair: sigma_hat = u^T W v = sigma(W_init)
        isn._u.copy_(U[:, 0])
        isn._v.copy_(Vh[0])
    layer.eval()
    assert torch.allclose(layer.weight, w0, atol=1e-6)
    layer.train()  # one power step from the exact singular vectors keeps them: still W
    assert torch.allclose(layer.weight, w0, atol=1e-5)


def test_isn_is_about_w_from_random_vectors_and_rescales_like_eq4():
    torch.manual_seed(0)
    w0 = torch.diag(torch.tensor([3.0, 1.0, 0.5]))  # sigma(W_init) = 3, a clear gap: power iteration converges fast
    layer = _isn_linear(w0)
    isn = layer.parametrizations.weight[0]
    with torch.no_grad():
        isn._u.copy_(F.normalize(torch.tensor([1.0, 1.0, 1.0]), dim=0))
        isn._v.copy_(F.normalize(torch.tensor([1.0, 1.0, 1.0]), dim=0))
    manual_power_iteration(layer)
    for _ in range(3):
        power_iterate(layer)
    assert torch.allclose(layer.weight, w0, rtol=0.01, atol=0.01)  # about W
    with torch.no_grad():  # W -> diag(6, 1, 0.5): W_ISN = 3 * W / 6 = diag(3, 0.5, 0.25)
        layer.parametrizations.weight.original.copy_(torch.diag(torch.tensor([6.0, 1.0, 0.5])))
    for _ in range(10):
        power_iterate(layer)
    assert torch.allclose(layer.weight, torch.diag(torch.tensor([3.0, 0.5, 0.25])), atol=1e-4)


def test_d_has_isn_on_every_weight_layer_and_the_option_switches_it_off():
    from ganforge.nn import weight_layers

    _, D = build()
    layers = list(weight_layers(D))
    assert len(layers) == 1 + 2 * 5  # patch window + per block (qk, v, out, 2 MLP)
    assert all(isinstance(m.parametrizations.weight[0], ImprovedSpectralNorm) for m in layers) and D.spectral_norm
    _, D_plain = build(d_isn=False)
    assert not any(hasattr(m, "parametrizations") for m in weight_layers(D_plain)) and not D_plain.spectral_norm


# -------------------------------------------------------------------------------------------------------- attention
def test_l2_attention_weights_are_a_softmax_of_negative_squared_distances():
    attn = L2Attention(2, heads=1)
    with torch.no_grad():
        for layer in (attn.qk, attn.v, attn.out):
            layer.weight.copy_(torch.eye(2))
        attn.out.bias.zero_()
    x = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])  # ||q_0 - q_1||^2 = 2, d_h = 2: logits 0 (self) and -2/sqrt(2)
    p_self = 1 / (1 + math.exp(-math.sqrt(2)))
    expected = torch.tensor([[p_self, 1 - p_self], [1 - p_self, p_self]])
    assert torch.allclose(attn.weights(x)[0, 0], expected, atol=1e-6)
    out = attn(x)[0]  # A @ V with V = X: token 0 gets (1 - p_self) * [1, 1]
    assert torch.allclose(out[0], torch.full((2,), 1 - p_self), atol=1e-6)
    assert torch.allclose(out[1], torch.full((2,), p_self), atol=1e-6)


def test_l2_attention_ties_query_and_key_in_one_parameter():
    attn = L2Attention(4, heads=2)
    names = {n for n, _ in attn.named_parameters()}
    assert names == {"qk.weight", "v.weight", "out.weight", "out.bias"}  # no separate key projection
    x = torch.randn(1, 3, 4)
    attn.weights(x).sum().backward()  # attention weights depend on W_qk only
    assert attn.qk.weight.grad is not None and attn.v.weight.grad is None


# ---------------------------------------------------------------------------------------------- overlapping patches
def test_overlapping_patch_receptive_field_is_p_plus_2o():
    torch.manual_seed(0)
    embed = OverlappingPatchEmbed(1, 4, patch=4, overlap=2)  # windows of 8 at stride 4; 8x8 image -> 2x2 tokens
    assert embed.proj.kernel_size == (8, 8)
    x = torch.randn(1, 1, 8, 8)
    base = embed(x)
    assert base.shape == (1, 4, 4)

    def changed(row: int, col: int) -> list[int]:
        y = x.clone()
        y[0, 0, row, col] += 1.0
        return [i for i in range(4) if not torch.allclose(embed(y)[0, i], base[0, i])]

    assert changed(0, 4) == [0, 1]  # cell of token 1 (cols 4..7), inside token 0's overlap (cols -2..5)
    assert changed(0, 6) == [1]  # outside token 0's window
    assert changed(3, 3) == [0, 1, 2, 3]  # within o of every neighbour's cell
    assert changed(0, 0) == [0]


# -------------------------------------------------------------------------------------------------------------- INR
def test_fourier_features_of_pixel_centres():
    coords = patch_coordinates(2, 2)  # centres at -0.5 and 0.5 on each axis, row-major (y, x)
    assert torch.allclose(coords, torch.tensor([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]]))
    ff = fourier_features(coords[1:2], num_freqs=2)  # (y, x) = (-0.5, 0.5): [sin(pi y), sin(2 pi y), sin x..., cos...]
    s = math.sin(math.pi / 2)
    expected = torch.tensor([[-s, 0.0, s, 0.0, 0.0, -1.0, 0.0, -1.0]])
    assert torch.allclose(ff, expected, atol=1e-6)


def test_inr_one_shared_mlp_makes_every_patch_and_they_tile_the_image():
    torch.manual_seed(0)
    inr = PatchINR(token_dim=5, channels=3, patch=(2, 2), hidden=8, layers=2, num_freqs=3)
    y = torch.randn(6, 5)
    y[4] = y[1]  # two tokens with the same embedding, at different grid positions
    patches = inr.patches(y)
    assert patches.shape == (6, 3, 2, 2)
    assert torch.allclose(patches[4], patches[1])  # same MLP, no position inside f: same patch
    assert torch.allclose(inr.patches(y[2:3])[0], patches[2], atol=1e-6)  # each patch depends on its own token only
    img = inr(y.unsqueeze(0), grid=(2, 3))  # 2 x 3 grid of 2x2 patches -> 4 x 6 image, row-major
    assert img.shape == (1, 3, 4, 6) and torch.equal(img, patches_to_image(patches, (2, 3)))
    assert torch.equal(img[0, :, 2:4, 2:4], patches[4]) and torch.equal(img[0, :, 0:2, 4:6], patches[2])


# ---------------------------------------------------------------------------------------------------- the generator
def test_generator_is_style_based_and_w_enters_only_through_sln():
    from ganforge.models.style import is_style_based

    torch.manual_seed(0)
    G, _ = build((3, 8, 16), g_depth=3)
    assert is_style_based(G) and ARCHITECTURES.get("vitgan").declares("style_based", False)
    G.eval()
    z = G.sample_z(2)
    ws = G.mapping(z)
    assert ws.shape == (2, 4, 8)  # num_ws = g_depth + 1 (the final SLN)
    x = G(z)
    assert x.shape == (2, 3, 8, 16) and torch.allclose(G.synthesis(ws), x) and x.abs().max() <= 1
    for k in range(G.num_ws):  # every layer's w is read
        ws2 = ws.clone()
        ws2[:, k] += 1.0
        assert not torch.allclose(G.synthesis(ws2), x)
    with torch.no_grad():  # no SLN modulation left: the output no longer depends on z
        for m in G.modules():
            if isinstance(m, SelfModulatedLayerNorm):
                for layer in (m.gamma, m.beta):
                    layer.weight.zero_()
    assert torch.allclose(G(z)[0], G(z)[1], atol=1e-6)


def test_labels_enter_through_the_mapping_and_cbn_is_refused():
    torch.manual_seed(0)
    G, _ = build(cond="concat", num_classes=3)
    G.eval()
    z = G.sample_z(1).expand(2, -1)
    x = G(z, torch.tensor([0, 2]))
    assert not torch.allclose(x[0], x[1])
    with pytest.raises(GanforgeError, match="use conditioning g=concat"):
        build(cond="cbn", num_classes=3)


@pytest.mark.parametrize("bad,match", [({"patch": 3}, "patch=3 must divide"), ({"heads": 3}, "divisible by heads"),
                                       ({"overlap": -1}, "overlap"), ({"g_depth": 0}, "g_depth")])
def test_bad_options_one_line_errors(bad, match):
    with pytest.raises(GanforgeError, match=match):
        build(**bad)


def test_points_are_refused_with_a_shape_message():
    with pytest.raises(GanforgeError, match="shape"):
        build((2,))


# ------------------------------------------------------------------------------------------------ the discriminator
def test_d_taps_are_token_grids_and_non_square_images_make_non_square_grids():
    from ganforge.models.base import Discriminator
    from ganforge.registries import D_HEADS

    _, backbone = build((1, 8, 16))
    D = Discriminator(backbone, D_HEADS.build("linear", {}, in_features=backbone.feature_dim, num_classes=0))
    out = D(torch.randn(3, 1, 8, 16), features=True)
    assert out.adv.shape == (3,) and out.h.shape == (3, 8)
    assert {k: tuple(v.shape) for k, v in out.features.items()} == {"block0": (3, 8, 2, 4), "block1": (3, 8, 2, 4)}
    assert len(backbone.block_list()) == 3  # embedding + 2 blocks; the final LayerNorm is the epilogue


def test_r1_double_backward_through_d_matches_finite_differences():
    """R1 = ||grad_x D(x)||^2 needs D's second derivatives: gradgradcheck in float64 (ISN off: its sigma is float32),
    then the ISN D once in float32: the penalty's gradient reaches every parameter and is finite."""
    torch.manual_seed(0)
    _, D = build((1, 8, 8), d_dim=4, d_depth=1, heads=2, d_isn=False)
    D = D.double().eval()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: D.features(t).sum(dim=1), (x,), atol=1e-5)

    _, D = build((1, 8, 8))
    x = torch.randn(4, 1, 8, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(D.features(x).sum(), x, create_graph=True)
    grad.pow(2).sum().backward()
    for name, p in D.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert D.embed.patches.proj.parametrizations.weight.original.grad.abs().sum() > 0
