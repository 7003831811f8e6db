"""StyleGAN2-ADA's class-map projection head ('spd'): its formula, its size on CIFAR-10, its use of the label."""
from __future__ import annotations

import math

import pytest
import torch

from ganforge.errors import GanforgeError
from ganforge.registries import D_HEADS, load_all

load_all()


def _head(**opts):
    torch.manual_seed(0)
    return D_HEADS.build("spd", opts, in_features=opts.pop("in_features", 8), num_classes=3)


def test_adv_is_the_inner_product_with_the_class_map_over_sqrt_cmap_dim():
    head = _head(cmap_dim=4, mapping_layers=2)
    with torch.no_grad():  # out(h) = 1 (zero weight, bias 1); cmap = lrelu(1/sqrt 2) * sqrt 2 = 1
        head.out.weight.zero_()
        head.out.bias.fill_(1.0 / head.out.lr_mul)
        last = head.mapping.fcs[-1]
        last.weight.zero_()
        last.bias.fill_(1 / math.sqrt(2) / last.lr_mul)
    adv = head(torch.randn(5, 8), torch.tensor([0, 1, 2, 0, 1])).adv
    torch.testing.assert_close(adv, torch.full((5,), 4 / math.sqrt(4)))  # sum of four 1s over sqrt(4) = 2


def test_the_label_changes_the_verdict_and_there_is_no_unconditional_term():
    head = _head()
    h = torch.randn(4, 8)
    a, b = head(h, torch.zeros(4, dtype=torch.long)).adv, head(h, torch.full((4,), 2)).adv
    assert (a - b).abs().min() > 1e-6
    assert torch.allclose(head(torch.zeros(4, 8), torch.tensor([0, 1, 2, 0])).adv,
                          (head.out.bias * head.out.lr_mul * head.class_map(torch.tensor([0, 1, 2, 0]))).sum(1)
                          / math.sqrt(head.cmap_dim))  # h = 0: only the output bias against the class map


def test_cifar10_stylegan2_head_has_studiogans_logged_size():
    """StudioGAN's CIFAR10/StyleGAN2 log: D mapping 2,106,880 parameters and the output layer 262,656 (512 wide)."""
    with torch.device("meta"):
        head = D_HEADS.build("spd", {}, in_features=512, num_classes=10)
    assert sum(p.numel() for p in head.mapping.parameters()) == 2_106_880
    assert sum(p.numel() for p in head.out.parameters()) == 262_656


def test_spd_needs_labels_and_valid_sizes():
    with pytest.raises(GanforgeError, match="'spd': needs a labelled dataset"):
        D_HEADS.build("spd", {}, in_features=8, num_classes=0)
    with pytest.raises(GanforgeError, match="cmap_dim must be >= 1"):
        D_HEADS.build("spd", {"cmap_dim": 0}, in_features=8, num_classes=3)
    with pytest.raises(GanforgeError, match="needs class labels y"):
        _head()(torch.randn(2, 8), None)
