"""Augmentations: shape, differentiability, the transformations DiffAugment defines, and identity on points."""
from __future__ import annotations

import pytest
import torch

from ganforge.augment import Augment
from ganforge.augment.diffaugment import OPS, DiffAugment, rand_cutout, rand_translation
from ganforge.errors import GanforgeError
from ganforge.registries import AUGMENTATIONS
from ganforge.training.rng import SampleRNG


def images(b: int = 4, c: int = 3, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g) * 2 - 1


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x (C, H, W) moved by (dy, dx) pixels, zero-filled: out[i, j] = x[i - dy, j - dx]."""
    out = torch.zeros_like(x)
    _, h, w = x.shape
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = x[:, max(-dy, 0):h - max(dy, 0),
                                                                    max(-dx, 0):w - max(dx, 0)]
    return out


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_shape_dtype_and_gradient_reach_the_input(name):
    aug = AUGMENTATIONS.build(name, num_classes=10)
    assert isinstance(aug, Augment)
    x = images(c=3, h=8, w=12).requires_grad_(True)  # non-square on purpose
    out = aug(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_points_pass_through_unless_the_augmentation_declares_it_applies_to_them(name):
    aug = AUGMENTATIONS.build(name, num_classes=0)
    pts = torch.randn(16, 2)
    if AUGMENTATIONS.get(name).declares("applies_to_points", False):  # e.g. instance noise: points get noised
        assert aug(pts).shape == pts.shape and not torch.equal(aug(pts), pts)
    else:
        assert torch.equal(aug(pts), pts)


def test_none_is_identity_on_images():
    x = images()
    assert torch.equal(AUGMENTATIONS.build("none", num_classes=0)(x), x)


def test_diffaugment_is_reproducible_from_the_global_seed_and_random_per_call():
    aug = AUGMENTATIONS.build("diffaugment", num_classes=0)
    x = images(b=8)
    torch.manual_seed(7)
    a = aug(x)
    torch.manual_seed(7)
    b = aug(x)
    assert torch.equal(a, b)
    assert not torch.equal(aug(x), aug(x))
    assert not torch.equal(a, x)


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_a_sample_is_augmented_the_same_in_any_shard_of_the_global_batch(name):
    """Rows of the global batch drawn by one process, by 2 ranks or in 4 accumulation rounds get the same transform."""
    entry = AUGMENTATIONS.get(name)
    active = {"p": 0.5} if entry.accepts("p") else {}  # adaptive ones start at p = 0: no-op
    if entry.accepts("augment"):  # a wrapper (APA: its own draws are in prepare, tested in its file) augments inside
        active["augment"] = {"name": "diffaugment"}
    aug = AUGMENTATIONS.build(name, active)
    x = images(b=8)
    whole = aug(x, rng=SampleRNG(("k",), slice(0, 8), 8))
    for parts in (2, 4):
        n = 8 // parts
        pieces = [aug(x[i * n:(i + 1) * n], rng=SampleRNG(("k",), slice(i * n, (i + 1) * n), 8)) for i in range(parts)]
        assert torch.equal(torch.cat(pieces), whole)
    other = aug(x, rng=SampleRNG(("other",), slice(0, 8), 8))
    assert name == "none" or not torch.equal(other, whole)  # the key decides the draw


def test_sample_rng_serves_concatenated_batches_row_by_row():
    full = SampleRNG(("k",), slice(0, 4), 4).rand(8)  # two stacked copies of a 4-row batch
    half = SampleRNG(("k",), slice(2, 4), 4).rand(4)  # rows 2-3, twice
    assert torch.equal(half, full[[2, 3, 6, 7]])
    with pytest.raises(ValueError, match="multiple"):
        SampleRNG(("k",), slice(0, 4), 4).rand(3)


def test_translation_moves_content_by_an_allowed_shift_with_zero_fill():
    torch.manual_seed(0)
    x = images(b=16, c=2, h=8, w=8) + 3  # strictly positive, so zero fill is unambiguous
    ratio = 0.25  # max shift int(8 * 0.25 + 0.5) = 2 pixels per axis
    out = rand_translation(x, ratio, SampleRNG())
    seen = set()
    for i in range(x.shape[0]):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(out[i], shifted(x[i], dy, dx))]
        assert len(matches) == 1, f"sample {i} is not a shifted copy of its input"
        seen.add(matches[0])
    assert len(seen) > 1  # shifts are drawn per sample


def test_translation_is_differentiable_as_a_permutation():
    torch.manual_seed(1)
    x = images(b=3).requires_grad_(True)
    out = rand_translation(x, 0.125, SampleRNG())
    out.sum().backward()
    # Each input pixel is either copied once or shifted out of the frame: gradient is exactly 0 or 1.
    assert set(x.grad.unique().tolist()) <= {0.0, 1.0}
    assert x.grad.sum().item() == pytest.approx((out != 0).sum().item())


def test_cutout_zeroes_one_rectangle_of_the_given_size_and_keeps_the_rest():
    torch.manual_seed(0)
    x = images(b=32, c=3, h=8, w=8) + 3
    out = rand_cutout(x, 0.5, SampleRNG())  # 4 x 4 cut, clipped at the border
    for i in range(x.shape[0]):
        zero = (out[i] == 0).all(dim=0)  # (H, W): same mask on every channel
        assert ((out[i] == 0) == zero).all()
        kept = ~zero
        assert torch.equal(out[i][:, kept], x[i][:, kept])
        rows, cols = zero.any(dim=1).nonzero(), zero.any(dim=0).nonzero()
        n_rows, n_cols = len(rows), len(cols)
        assert 1 <= n_rows <= 4 and 1 <= n_cols <= 4
        assert zero.sum() == n_rows * n_cols  # a rectangle
        assert rows.max() - rows.min() + 1 == n_rows and cols.max() - cols.min() + 1 == n_cols
    full = sum(int((out[i] == 0).all(dim=0).sum() == 16) for i in range(x.shape[0]))
    assert full > 0  # most cuts lie fully inside the image


def test_color_changes_values_but_not_geometry():
    torch.manual_seed(0)
    x = images(b=4)
    out = DiffAugment(policy="color")(x)
    assert not torch.allclose(out, x)
    # Brightness / saturation / contrast are affine per image and pixel-wise: a constant image stays constant.
    flat = torch.full((2, 3, 5, 5), 0.3)
    flat_out = DiffAugment(policy="color")(flat)
    assert torch.allclose(flat_out, flat_out[:, :, :1, :1].expand_as(flat_out))


def test_policy_parsing_and_errors():
    aug = DiffAugment(policy=" translation , cutout ")
    assert aug.policy == ["translation", "cutout"]
    assert torch.equal(DiffAugment(policy="")(images()), images())
    with pytest.raises(GanforgeError) as err:
        AUGMENTATIONS.build("diffaugment", {"policy": "color,rotate"}, num_classes=0)
    msg = str(err.value)
    assert "rotate" in msg and all(op in msg for op in OPS) and "\n" not in msg
    with pytest.raises(GanforgeError, match="translation"):
        DiffAugment(translation=1.5)
    with pytest.raises(GanforgeError, match="cutout"):
        DiffAugment(cutout=-0.1)
