"""Text-conditional components: G conditioning `text-cbn` and `dfgan`, D head `text-projection` (with DF-GAN's
mismatched-pair term) and the regularizer `ma-gp` (DF-GAN's matching-aware gradient penalty).

The condition is a float (B, text_dim) tensor of sentence embeddings; tiny G / D are built from the `dcgan` family at
8 px, or by hand where a hand-checkable D is needed (adv linear or quadratic in x and e).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.conditioning.base import DHead, DOutput
from ganforge.conditioning.d_text_concat import TextConcatHead
from ganforge.conditioning.d_text_projection import MismatchLoss, TextProjectionHead
from ganforge.conditioning.g_dfgan import DFFusion, DFGANFusion
from ganforge.conditioning.g_text_cbn import TextConditionalBN
from ganforge.errors import GanforgeError
from ganforge.models.base import DBackbone, Discriminator
from ganforge.nn import has_sn
from ganforge.nn.norms import VectorConditionalBatchNorm
from ganforge.objectives.base import Context
from ganforge.objectives.ma_gp import MatchingAwareGP
from ganforge.registries import ARCHITECTURES, D_HEADS, G_CONDITIONING, REGULARIZERS, load_all

load_all()

T, Z, B = 6, 8, 4  # text_dim, z_dim, batch


def dcgan_g(g_cond):
    """A tiny 8 px DCGAN G (two blocks: the base grid's norm and one transposed conv's) around `g_cond`."""
    return ARCHITECTURES.build("dcgan", {"z_dim": Z, "g_ch": 4, "d_ch": 4}, img_shape=(3, 8, 8), num_classes=0,
                               g_cond=g_cond).G


def norm_inputs(G: nn.Module, kind: type, z: torch.Tensor, e: torch.Tensor) -> list[torch.Tensor]:
    """The condition each norm layer of type `kind` receives in one forward pass of G, in call order."""
    seen: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, args, _out: seen.append(args[1].detach().clone()))
             for m in G.modules() if isinstance(m, kind)]
    with torch.no_grad():
        G(z, e)
    for h in hooks:
        h.remove()
    return seen


class Flat(DBackbone):
    """D backbone h = x flattened (no parameters), so a head's formula is D's formula."""

    def __init__(self, feature_dim: int):
        super().__init__()
        self.feature_dim = feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


class LinearTextHead(DHead):
    """adv = a . h + b . e, with b a parameter (so the penalty's gradient w.r.t. D's weights is checkable)."""

    def __init__(self, a: list[float], b: list[float]):
        super().__init__()
        self.register_buffer("a", torch.tensor(a))
        self.b = nn.Parameter(torch.tensor(b))

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        return DOutput(adv=h @ self.a + y @ self.b)


class QuadraticHead(DHead):
    """adv = 0.5 |h|^2 + 0.5 |e|^2: grad_x = x and grad_e = e, so the penalty tells which (x, e) it was taken at."""

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        return DOutput(adv=0.5 * h.pow(2).sum(1) + 0.5 * y.pow(2).sum(1))


class NoG(nn.Module):
    """A G that must not be called: MA-GP and the mismatch term read only real images."""

    def forward(self, z, y=None):
        raise AssertionError("G was called: the term must use the real images")


def ctx_for(D: nn.Module, real: torch.Tensor, y_real: torch.Tensor, y_fake: torch.Tensor | None = None,
            augment=None) -> Context:
    kwargs = {} if augment is None else {"augment": augment}
    return Context(G=NoG(), D=D, real=real, y_real=y_real, z=torch.randn(real.shape[0], Z),
                   y_fake=torch.randn(y_real.shape[0], T) if y_fake is None else y_fake, phase="D", **kwargs)


# --------------------------------------------------------------------------------------------------------- text-cbn
@pytest.mark.parametrize("with_z", [True, False])
def test_text_cbn_input_is_z_and_projection_and_every_norm_gets_the_block_value(with_z):
    torch.manual_seed(0)
    G = dcgan_g(TextConditionalBN(text_dim=T, dim=5, with_z=with_z))
    cond = G.g_cond
    z, e = torch.randn(B, Z), torch.randn(B, T)
    with torch.no_grad():
        p = e @ cond.proj.weight.T + cond.proj.bias  # the projected sentence vector, (B, 5)
        inp = cond.prepare(z, e)
    assert G.linear.in_features == Z + 5 and torch.allclose(inp.x, torch.cat([z, p], 1))  # G's input [z, p]
    want = torch.cat([p, z], 1) if with_z else p  # BigGAN-deep's [e, z] with p for e; or p alone
    assert cond.cond_dim == (5 + Z if with_z else 5) and len(inp.blocks) == cond.num_blocks == 2
    seen = norm_inputs(G, VectorConditionalBatchNorm, z, e)
    assert len(seen) == 2 and all(c.shape == want.shape and torch.allclose(c, want, atol=1e-6) for c in seen)


def test_text_cbn_norms_carry_the_text_once_their_maps_leave_zero():
    torch.manual_seed(0)
    G = dcgan_g(TextConditionalBN(text_dim=T, dim=5))
    with torch.no_grad():
        G.linear.weight[:, Z:] = 0  # cut the text out of G's input: only the norms can carry it now
    z, e1, e2 = torch.randn(B, Z), torch.randn(B, T), torch.randn(B, T)
    with torch.no_grad():
        assert torch.allclose(G(z, e1), G(z, e2))  # zero W_g, W_b at init: every norm is plain BatchNorm
        for m in G.modules():
            if isinstance(m, VectorConditionalBatchNorm):
                m.gain_proj.weight.normal_()
                m.bias_proj.weight.normal_()
        assert (G(z, e1) - G(z, e2)).abs().max() > 1e-3


# ------------------------------------------------------------------------------------------------------------ dfgan
@pytest.mark.parametrize("shape", [(B, 3), (B, 3, 5, 5)])
def test_dfgan_fusion_at_init_is_leaky_relu_twice_exactly(shape):
    torch.manual_seed(0)
    fusion = DFFusion(3, cond_dim=7)
    x, c = torch.randn(*shape) * 3, torch.randn(B, 7)
    # gamma = 1 and beta = 0 at init for any c (zero last layer, bias 1 / 0), so LReLU(LReLU(1 * x + 0))
    assert torch.equal(fusion(x, c), F.leaky_relu(F.leaky_relu(x, 0.2), 0.2))


def test_dfgan_fusion_is_two_affines_of_c_each_followed_by_leaky_relu():
    fusion = DFFusion(1, cond_dim=1)
    with torch.no_grad():  # every MLP: Linear(c) = c, ReLU, then gamma = 1 * relu(c) + 1, beta = 2 * relu(c) + 0
        for affine in (fusion.affine1, fusion.affine2):
            for mlp, w2, b2 in ((affine.gamma, 1.0, 1.0), (affine.beta, 2.0, 0.0)):
                mlp[0].weight.fill_(1.0), mlp[0].bias.fill_(0.0), mlp[2].weight.fill_(w2), mlp[2].bias.fill_(b2)
    x = torch.tensor([[-1.0], [1.0], [-3.0], [-1.0]])
    c = torch.tensor([[1.0], [1.0], [1.0], [-1.0]])
    # c = 1: gamma = 2, beta = 2. x=-1: 2*-1+2 = 0 -> 0 -> 2*0+2 = 2. x=1: 4 -> 4 -> 10. x=-3: -4 -> -0.8 -> 0.4.
    # c = -1: gamma = 1, beta = 0: LReLU(LReLU(-1)) = -0.04.
    assert fusion(x, c).flatten().tolist() == pytest.approx([2.0, 10.0, 0.4, -0.04])


def test_dfgan_replaces_batchnorm_feeds_z_and_text_to_every_fusion_and_starts_text_blind():
    torch.manual_seed(0)
    G = dcgan_g(DFGANFusion(text_dim=T))
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in G.modules())  # DF-GAN's G has no BN
    assert G.linear.in_features == Z  # G's input is z alone
    z, e1, e2 = torch.randn(B, Z), torch.randn(B, T), torch.randn(B, T)
    seen = norm_inputs(G, DFFusion, z, e1)
    assert len(seen) == 2 and all(torch.equal(c, torch.cat([z, e1], 1)) for c in seen)  # DF-GAN's cat(noise, sent)
    with torch.no_grad():
        assert torch.equal(G(z, e1), G(z, e2))  # identity affines at init: the text has no effect yet
        for m in G.modules():
            if isinstance(m, DFFusion):
                for p in m.parameters():
                    p.normal_(0, 0.3)
        assert (G(z, e1) - G(z, e2)).abs().max() > 1e-3  # gamma(c), beta(c) now depend on the text


def test_dfgan_text_input_feeds_z_and_text_to_the_first_layer_too():
    torch.manual_seed(0)
    G = dcgan_g(DFGANFusion(text_dim=T, text_input=True))
    assert G.linear.in_features == Z + T  # input [z, e]
    z, e1, e2 = torch.randn(B, Z), torch.randn(B, T), torch.randn(B, T)
    seen = []
    hook = G.linear.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    with torch.no_grad():
        out1, out2 = G(z, e1), G(z, e2)
    hook.remove()
    assert torch.equal(seen[0], torch.cat([z, e1], 1))
    assert (out1 - out2).abs().max() > 1e-4  # the text shapes the output from the start, through the input layer
    with pytest.raises(GanforgeError, match="text_input"):
        DFGANFusion(text_dim=T, text_input="yes")


# ------------------------------------------------------------------------------------------------- text-projection
@pytest.mark.parametrize("sn", [False, True])
def test_text_projection_logit_is_psi_plus_projected_text_dot_features(sn):
    torch.manual_seed(0)
    head = TextProjectionHead(in_features=5, text_dim=T, d_sn=sn).eval()  # eval: fixed SN weights
    assert has_sn(head.psi) == sn and has_sn(head.text_proj) == sn  # follows the backbone's d_sn
    h, e = torch.randn(B, 5), torch.randn(B, T)
    with torch.no_grad():
        psi_w, psi_b, W = head.psi.weight[0], head.psi.bias[0], head.text_proj.weight  # W: (5, T)
        manual = torch.stack([h[i] @ psi_w + psi_b + (W @ e[i]) @ h[i] for i in range(B)])
        assert torch.allclose(head(h, e).adv, manual, atol=1e-5)


# ------------------------------------------------------------------------------------------------- text-concat
@pytest.mark.parametrize("sn", [False, True])
def test_text_concat_logit_is_an_mlp_of_features_joined_with_the_text_and_not_linear_in_it(sn):
    torch.manual_seed(0)
    head = TextConcatHead(in_features=5, text_dim=T, d_sn=sn, hidden=7).eval()
    assert has_sn(head.joint) == sn and has_sn(head.out) == sn
    h, e1, e2 = torch.randn(B, 5), torch.randn(B, T), torch.randn(B, T)
    with torch.no_grad():
        W1, b1, w2, b2 = head.joint.weight, head.joint.bias, head.out.weight[0], head.out.bias[0]
        manual = torch.stack([w2 @ F.leaky_relu(W1 @ torch.cat([h[i], e1[i]]) + b1, 0.2) + b2 for i in range(B)])
        assert torch.allclose(head(h, e1).adv, manual, atol=1e-5)
        # DF-GAN's one-way output is non-linear in the text, where the projection form is linear (affine) in it
        mid = head(h, (e1 + e2) / 2).adv
        assert (mid - (head(h, e1).adv + head(h, e2).adv) / 2).abs().max() > 1e-3
        proj = TextProjectionHead(in_features=5, text_dim=T, d_sn=False)
        mid_p = proj(h, (e1 + e2) / 2).adv
        assert torch.allclose(mid_p, (proj(h, e1).adv + proj(h, e2).adv) / 2, atol=1e-5)
    (term,) = head.terms()  # the same mismatched-pair term as text-projection
    assert isinstance(term, MismatchLoss) and term.weight == 0.5
    assert TextConcatHead(in_features=5, text_dim=T, mismatch_weight=0).terms() == []
    with pytest.raises(GanforgeError, match="hidden"):
        TextConcatHead(in_features=5, text_dim=T, hidden=0)


def _projection_d(weight: float = 0.5) -> Discriminator:
    torch.manual_seed(1)
    return Discriminator(Flat(5), TextProjectionHead(in_features=5, text_dim=T, d_sn=False, mismatch_weight=weight))


def _by_hand(D: Discriminator, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """D(x_i, e_i) = psi(x_i) + (W e_i) . x_i, row by row."""
    head = D.head
    return torch.stack([x[i] @ head.psi.weight[0] + head.psi.bias[0] + (head.text_proj.weight @ e[i]) @ x[i]
                        for i in range(x.shape[0])])


def test_mismatch_term_pairs_each_real_image_with_the_previous_caption():
    D = _projection_d(0.5)
    (term,) = D.head.terms()
    assert isinstance(term, MismatchLoss) and term.uses_text and not term.uses_labels
    x, e = torch.randn(B, 5), torch.randn(B, T)
    with torch.no_grad():
        value = term.d_terms(ctx_for(D, x, e))["mismatch"]
        rolled = _by_hand(D, x, e[[3, 0, 1, 2]])  # image i with caption i-1
        matched = _by_hand(D, x, e)
    assert value.item() == pytest.approx(0.5 * torch.relu(1 + rolled).mean().item(), rel=1e-5)
    assert value.item() != pytest.approx(0.5 * torch.relu(1 + matched).mean().item(), rel=1e-3)
    assert term.g_terms(ctx_for(D, x, e)) == {}  # D-side only


def test_mismatch_term_with_one_caption_for_all_is_the_hinge_fake_side_of_the_matching_pairs():
    D = _projection_d(0.5)
    (term,) = D.head.terms()
    x, e = torch.randn(B, 5), torch.randn(1, T).expand(B, T)  # every image has the same caption
    with torch.no_grad():
        value = term.d_terms(ctx_for(D, x, e))["mismatch"]
        hinge_fake = 0.5 * torch.relu(1 + D(x, e).adv).mean()
    assert torch.allclose(value, hinge_fake)


def test_mismatch_weight_zero_brings_no_term_and_negative_is_refused():
    assert _projection_d(0.0).head.terms() == []
    with pytest.raises(GanforgeError, match="mismatch_weight"):
        TextProjectionHead(in_features=5, text_dim=T, mismatch_weight=-1.0)


# ----------------------------------------------------------------------------------------------------------- MA-GP
A, BVEC = [1.0, 2.0, 2.0], [4.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # |a|^2 = 9, |b|^2 = 16: joint norm 5


def _linear_d() -> Discriminator:
    return Discriminator(Flat(3), LinearTextHead(A, BVEC))


@pytest.mark.parametrize("weight,power,expected", [(2.0, 6.0, 2 * 5.0 ** 6), (1.0, 2.0, 25.0)])
def test_ma_gp_of_a_linear_d_is_k_times_joint_gradient_norm_to_the_p(weight, power, expected):
    D = _linear_d()
    term = MatchingAwareGP(weight=weight, power=power, text_dim=T)
    out = term.d_terms(ctx_for(D, torch.randn(B, 3), torch.randn(B, T)))
    assert set(out) == {"ma_gp"}
    assert out["ma_gp"].item() == pytest.approx(expected)  # (a, b) for every sample: k * (9 + 16)^(p/2)


def test_ma_gp_backpropagates_into_d():
    D = _linear_d()
    MatchingAwareGP(text_dim=T).d_terms(ctx_for(D, torch.randn(B, 3), torch.randn(B, T)))["ma_gp"].backward()
    # d/db of 2 * (|a|^2 + |b|^2)^3 = 2 * 3 * 25^2 * 2b = 7500 b = (30000, 0, ...)
    assert D.head.b.grad.tolist() == pytest.approx([30000.0, 0, 0, 0, 0, 0])


def test_ma_gp_takes_the_image_gradient_through_the_augmentation():
    D = _linear_d()
    ctx = ctx_for(D, torch.randn(B, 3), torch.randn(B, T), augment=lambda x: 2 * x)
    # D(aug(x), e) = 2 a . x + b . e: grad_x = 2a, |2a|^2 = 36, joint norm^2 = 52
    assert MatchingAwareGP(text_dim=T).d_terms(ctx)["ma_gp"].item() == pytest.approx(2 * 52.0 ** 3)


def test_ma_gp_is_taken_at_the_real_images_and_their_matching_captions():
    D = Discriminator(Flat(3), QuadraticHead())
    real = torch.tensor([[1.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
    y_real = torch.tensor([[4.0, 0, 0, 0, 0, 0], [0, 0, 3.0, 0, 0, 0]])
    y_fake = torch.full((2, T), 10.0)  # a caption of some other image: must not be used
    out = MatchingAwareGP(text_dim=T).d_terms(ctx_for(D, real, y_real, y_fake))["ma_gp"]
    # grad = (x_i, e_i): norms^2 = 9 + 16 = 25 and 0 + 9 = 9 -> 2 * mean(25^3, 9^3) = 15625 + 729
    assert out.item() == pytest.approx(16354.0)


def test_ma_gp_refuses_missing_or_label_conditions_and_bad_power():
    D = _linear_d()
    term = MatchingAwareGP(text_dim=T)
    with pytest.raises(GanforgeError, match="ma-gp.*y_real.*None"):
        term.d_terms(Context(G=NoG(), D=D, real=torch.randn(B, 3), y_real=None, z=torch.randn(B, Z), y_fake=None))
    with pytest.raises(GanforgeError, match="class labels are not text"):
        term.d_terms(ctx_for(D, torch.randn(B, 3), torch.zeros(B, dtype=torch.long)))
    with pytest.raises(GanforgeError, match="ma-gp.power"):
        MatchingAwareGP(power=0.5, text_dim=T)


# ------------------------------------------------------------------------------------------------ errors and flags
TEXT_COMPONENTS = [(G_CONDITIONING, "text-cbn", "conditioning.g 'text-cbn'"),
                   (G_CONDITIONING, "dfgan", "conditioning.g 'dfgan'"),
                   (D_HEADS, "text-projection", "conditioning.d 'text-projection'"),
                   (REGULARIZERS, "ma-gp", "regularizer 'ma-gp'")]


@pytest.mark.parametrize("registry,name,where", TEXT_COMPONENTS, ids=[c[1] for c in TEXT_COMPONENTS])
def test_text_components_declare_text_and_refuse_a_run_without_it(registry, name, where):
    entry = registry.get(name)
    assert entry.declares("uses_text") is True and entry.declares("uses_labels") is False
    context = {"num_classes": 0, "text_dim": 0, "in_features": 5, "d_sn": False}
    with pytest.raises(GanforgeError) as err:
        registry.build(name, {}, **context)
    msg = str(err.value)
    assert "\n" not in msg and msg == f"{where}: needs conditioning.text (a text encoder), got text_dim=0"
    assert registry.build(name, {}, **{**context, "text_dim": T}).text_dim == T


@pytest.mark.parametrize("cond", [TextConditionalBN(text_dim=T), DFGANFusion(text_dim=T)], ids=["text-cbn", "dfgan"])
def test_g_conditionings_refuse_labels_and_wrong_widths_in_one_line(cond):
    cond.bind(Z, num_blocks=2)
    z = torch.randn(B, Z)
    for bad, pattern in ((None, "got None"), (torch.arange(B), "class labels are not text"),
                         (torch.randn(B, T + 1), rf"\({B}, text_dim={T}\), got shape \({B}, {T + 1}\)")):
        with pytest.raises(GanforgeError, match=pattern) as err:
            cond.prepare(z, bad)
        assert "\n" not in str(err.value) and "conditioning.g" in str(err.value)
