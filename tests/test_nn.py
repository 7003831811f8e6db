"""Layers in ganforge.nn: spectral norm, label-aware norm layers, init schemes."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ganforge.errors import GanforgeError
from ganforge.nn import (INIT_SCHEMES, ConditionalBatchNorm1d, ConditionalBatchNorm2d, UncondBatchNorm2d, has_sn,
                         init_weights, maybe_sn, top_singular_value)


LAYERS = {"linear": lambda: nn.Linear(20, 12), "conv": lambda: nn.Conv2d(4, 6, 3),
          "convT": lambda: nn.ConvTranspose2d(6, 4, 4), "embedding": lambda: nn.Embedding(5, 8)}


@pytest.mark.parametrize("kind", LAYERS)
def test_spectral_norm_top_singular_value_is_one(kind):
    torch.manual_seed(0)
    layer = LAYERS[kind]()
    with torch.no_grad():
        layer.weight.mul_(10.0)  # far from 1 before normalization
    assert top_singular_value(layer) > 2.0
    maybe_sn(layer, True)
    assert has_sn(layer)
    layer.train()
    for _ in range(20):  # power iteration: one step per training-mode access of the weight
        _ = layer.weight
    assert top_singular_value(layer).item() == pytest.approx(1.0, abs=1e-3)


def test_maybe_sn_disabled_and_container():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Conv2d(1, 2, 3)), ConditionalBatchNorm1d(8, 3))
    maybe_sn(net, False)
    assert not any(has_sn(m) for m in net.modules())
    maybe_sn(net, True)
    assert has_sn(net[0]) and has_sn(net[2][0])
    assert not has_sn(net[3].gamma) and not has_sn(net[3].beta)  # label-aware norm layers keep their embeddings


def test_uncond_batchnorm_ignores_labels():
    torch.manual_seed(0)
    bn = UncondBatchNorm2d(3)
    ref = nn.BatchNorm2d(3)
    x = torch.randn(4, 3, 5, 5)
    assert torch.allclose(bn(x, torch.tensor([0, 1, 2, 0])), ref(x))
    assert torch.allclose(bn(x), ref(x))


@pytest.mark.parametrize("cls,shape", [(ConditionalBatchNorm1d, (6, 4)), (ConditionalBatchNorm2d, (6, 4, 3, 5))])
def test_conditional_batchnorm_uses_class_gamma_beta(cls, shape):
    torch.manual_seed(0)
    cbn = cls(4, num_classes=3)
    assert torch.equal(cbn.gamma.weight, torch.ones(3, 4)) and torch.equal(cbn.beta.weight, torch.zeros(3, 4))
    gamma, beta = torch.randn(3, 4), torch.randn(3, 4)
    with torch.no_grad():
        cbn.gamma.weight.copy_(gamma)
        cbn.beta.weight.copy_(beta)
    x = torch.randn(*shape) * 3 + 1
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    dims = [0] + list(range(2, x.dim()))
    x_hat = (x - x.mean(dims, keepdim=True)) / torch.sqrt(x.var(dims, unbiased=False, keepdim=True) + cbn.bn.eps)
    view = (6, 4) + (1,) * (x.dim() - 2)
    expected = gamma[y].view(view) * x_hat + beta[y].view(view)
    assert torch.allclose(cbn(x, y), expected, atol=1e-5)


def test_conditional_batchnorm_needs_labels():
    with pytest.raises(GanforgeError, match="labels"):
        ConditionalBatchNorm1d(4, 3)(torch.randn(2, 4), None)


def _as_matrix(layer: nn.Module) -> torch.Tensor:
    return layer.weight.detach().flatten(1)


@pytest.mark.parametrize("layer", [nn.Linear(16, 32), nn.Linear(32, 16), nn.Conv2d(8, 4, 3)],
                         ids=["tall", "wide", "conv"])
def test_ortho_init_is_orthogonal(layer):
    init_weights(layer, "ortho")
    w = _as_matrix(layer)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w  # rows or columns orthonormal
    assert torch.allclose(gram, torch.eye(gram.shape[0]), atol=1e-5)
    assert torch.count_nonzero(layer.bias) == 0


def test_normal_init_std():
    torch.manual_seed(0)
    layer = init_weights(nn.Linear(256, 256), "normal")
    assert layer.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert abs(layer.weight.mean().item()) < 1e-3


def test_xavier_init_bound_and_default_keeps_weights():
    layer = init_weights(nn.Linear(30, 50), "xavier")
    bound = (6 / (30 + 50)) ** 0.5
    assert layer.weight.abs().max() <= bound and layer.weight.std() > bound / 3
    before = layer.weight.clone()
    init_weights(layer, "default")
    assert torch.equal(layer.weight, before)


def test_init_skips_label_norms_and_reaches_sn_weights():
    net = nn.Sequential(maybe_sn(nn.Linear(8, 8)), ConditionalBatchNorm1d(8, 3))
    init_weights(net, "normal")
    assert net[0].parametrizations.weight.original.std().item() < 0.05
    assert torch.equal(net[1].gamma.weight, torch.ones(3, 8))  # cBN keeps gamma = 1


def test_unknown_init_lists_choices():
    with pytest.raises(GanforgeError) as err:
        init_weights(nn.Linear(2, 2), "kaiming", where="model.init")
    message = str(err.value)
    assert "model.init" in message and "kaiming" in message
    assert all(name in message for name in INIT_SCHEMES)


def test_manual_power_iteration_steps_only_when_asked():
    from ganforge.nn import manual_power_iteration, power_iterate

    torch.manual_seed(0)
    layer = maybe_sn(nn.Linear(12, 7), True)
    sn = layer.parametrizations.weight[0]
    assert manual_power_iteration(layer) == 1
    layer.train()
    u = sn._u.clone()
    for _ in range(3):
        layer(torch.randn(2, 12))  # forwards no longer move the estimate ...
    assert torch.equal(sn._u, u)
    power_iterate(layer)  # ... one call is one power step (Miyato et al., Algorithm 1, once per update)
    w = layer.parametrizations.weight.original.detach()
    v = torch.nn.functional.normalize(w.t() @ u, dim=0)
    assert torch.allclose(sn._u, torch.nn.functional.normalize(w @ v, dim=0), atol=1e-6)


def test_sigma_is_float32_under_bf16_autocast():
    torch.manual_seed(0)
    layer = maybe_sn(nn.Linear(16, 8), True).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        w = layer.weight
    assert w.dtype == torch.float32
    assert top_singular_value(layer).item() == pytest.approx(1.0, abs=1e-3)
