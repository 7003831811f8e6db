"""ADA: identity at p = 0, each op's geometry / color effect, differentiability, per-sample randomness, the p rule."""
from __future__ import annotations

import copy
import io
import json
import math

import pytest
import torch

from helpers import TINY_DIGITS, last_state

from ganforge.augment import ada_ops
from ganforge.augment.ada import ADA
from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.registries import AUGMENTATIONS
from ganforge.training.rng import SampleRNG
from ganforge.training.stats import StatsWindow


def images(b: int = 4, c: int = 3, h: int = 8, w: int = 8, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, c, h, w, generator=g) * 2 - 1).to(dtype)


def dot(h: int, w: int, r: int, c: int) -> torch.Tensor:
    """A (1, 1, h, w) black image with one bright pixel at (r, c)."""
    x = torch.zeros(1, 1, h, w)
    x[0, 0, r, c] = 1.0
    return x


def with_op(name: str, value, b: int = 1) -> dict[str, torch.Tensor]:
    prm = ada_ops.identity_params(b)
    prm[name][:] = torch.as_tensor(value, dtype=torch.float64)
    return prm


def geo(x: torch.Tensor, name: str, value, mode: str = "bilinear", antialias: bool = False) -> torch.Tensor:
    """One geometric op; by default the single resampling, whose pixel positions the exact tests below check."""
    return ada_ops.warp(x, ada_ops.geometric_matrix(with_op(name, value, len(x))), mode, antialias=antialias)


def col(x: torch.Tensor, name: str, value) -> torch.Tensor:
    return ada_ops.recolor(x, ada_ops.color_matrix(with_op(name, value, len(x))))


# Non-identity parameters for every op (shifts in pixels, (x, y)).
OP_VALUES = {"xflip": 1.0, "rotate90": 1.0, "xint": [1.0, -2.0], "scale": 1.3, "rotate_pre": 0.4, "aniso": 1.25,
             "rotate_post": -0.7, "xfrac": [0.3, -0.6], "brightness": 0.3, "contrast": 1.5, "lumaflip": 1.0,
             "hue": 1.0, "saturation": 0.5}
GEOMETRIC = [*ada_ops.PIPES["b"], *ada_ops.PIPES["g"]]


# ------------------------------------------------------------------------------------------------- identity at p=0
def test_p_zero_returns_the_images_exactly_and_unchosen_samples_are_untouched():
    x = images(b=8)
    assert ADA(p=0.0)(x, rng=SampleRNG(("k",), slice(0, 8), 8)) is x
    assert ADA(p=0.0)(x) is x
    # At small p most samples draw no op at all; those come back bit for bit.
    b = 64
    x = images(b=b, h=16, w=16)
    aug = ADA(p=0.05)
    out = aug(x, rng=SampleRNG(("k",), slice(0, b), b))
    rng = SampleRNG(("k",), slice(0, b), b)
    prm = ada_ops.sample_params(rng.rand(b, ada_ops.N_UNIFORM), rng.randn(b, ada_ops.N_NORMAL), 0.05, aug.ops, 16, 16)
    ident = ada_ops.identity_params(b)
    untouched = torch.stack([(prm[k] == ident[k]).view(b, -1).all(1) for k in prm]).all(0)
    assert 0 < untouched.sum() < b  # 13 ops at p = 0.05: about 0.95^13 = 51% of samples draw none
    assert torch.equal(out[untouched], x[untouched])
    assert not torch.equal(out[~untouched], x[~untouched])


def test_points_pass_through_even_at_p_one():
    pts = torch.randn(16, 2)
    assert ADA(p=1.0)(pts) is pts


# ------------------------------------------------------------------------------------------------------ geometry
def test_xflip_maps_pixel_r_c_to_r_w_minus_1_minus_c():
    out = geo(dot(5, 7, 1, 2), "xflip", 1.0)
    assert torch.allclose(out, dot(5, 7, 1, 4), atol=1e-6)  # W - 1 - c = 7 - 1 - 2


def test_rotate90_turns_pixel_r_c_to_c_n_minus_1_minus_r_per_quarter_turn():
    assert torch.allclose(geo(dot(6, 6, 1, 4), "rotate90", 1.0), dot(6, 6, 4, 4), atol=1e-6)  # (c, N-1-r)
    assert torch.allclose(geo(dot(6, 6, 1, 4), "rotate90", 2.0), dot(6, 6, 4, 1), atol=1e-6)  # (N-1-r, N-1-c)
    assert torch.allclose(geo(dot(6, 6, 1, 4), "rotate90", 3.0), dot(6, 6, 1, 1), atol=1e-6)  # (N-1-c, r)
    # The general rotation by pi/2 is the same transform.
    x = images(b=2, h=6, w=6)
    assert torch.allclose(geo(x, "rotate_pre", math.pi / 2), geo(x, "rotate90", 1.0), atol=1e-5)


def test_integer_translation_moves_a_pixel_by_one_with_reflect_padding():
    assert torch.allclose(geo(dot(5, 6, 2, 3), "xint", [1.0, 0.0]), dot(5, 6, 2, 4), atol=1e-6)  # +1 column
    assert torch.allclose(geo(dot(5, 6, 2, 3), "xint", [0.0, 1.0]), dot(5, 6, 3, 3), atol=1e-6)  # +1 row
    # Reflect padding about the border pixel's centre: the new column 0 is old column 1 (in[-1] = in[1]).
    out = geo(dot(5, 6, 2, 1), "xint", [1.0, 0.0])
    assert torch.allclose(out, dot(5, 6, 2, 2) + dot(5, 6, 2, 0), atol=1e-6)
    # A shifted ramp: out[:, c] = in[:, c - 1] inside, in[:, 1] at c = 0.
    ramp = torch.arange(6.0).view(1, 1, 1, 6).expand(1, 1, 3, 6)
    assert torch.allclose(geo(ramp, "xint", [1.0, 0.0])[0, 0, 0], torch.tensor([1.0, 0, 1, 2, 3, 4]), atol=1e-6)


def test_fractional_translation_and_scale_resample_bilinearly_about_the_centre():
    # Half a pixel to the right splits a bright pixel equally between its column and the next.
    out = geo(dot(5, 6, 2, 2), "xfrac", [0.5, 0.0])
    assert torch.allclose(out, 0.5 * dot(5, 6, 2, 2) + 0.5 * dot(5, 6, 2, 3), atol=1e-6)
    # Scaling by 2 about the centre of a 5 x 5 image keeps the centre pixel and moves (2, 3) to (2, 4),
    # reading in(M^-1 q): out(2, 4) = in(2, 3); out(2, 3) = in(2, 2.5) = half of each.
    ramp = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 5, 5)
    row = geo(ramp, "scale", 2.0)[0, 0, 2]
    assert torch.allclose(row, torch.tensor([1.0, 1.5, 2.0, 2.5, 3.0]), atol=1e-6)


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_the_geometric_warp_of_a_constant_image_is_constant(mode, antialias):
    """Reflect padding brings no border fill in, whatever the rotation or scale."""
    x = torch.full((1, 3, 9, 9), 0.7)
    for name in GEOMETRIC:
        assert torch.allclose(geo(x, name, OP_VALUES[name], mode, antialias), x, atol=1e-5), name
    shrunk = ada_ops.geometric_matrix(with_op("scale", 0.3))  # reads reach far past the border
    assert torch.allclose(ada_ops.warp(x, shrunk, mode, antialias=antialias), x, atol=1e-5)


# ------------------------------------------------------------------------------------------- anti-aliased warp
def smooth(n: int = 32) -> torch.Tensor:
    """A band-limited (1, 1, n, n) float64 image, amplitude 1.5: two oblique cosines of ~10 px period (0.1 cycle/px)."""
    r = torch.arange(n, dtype=torch.float64)
    return continuous(r.view(1, -1), r.view(-1, 1)).view(1, 1, n, n)


def continuous(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """The function `smooth` samples, at column tx and row ty (pixels)."""
    return (torch.cos(2 * math.pi * (tx / 16 + ty / 13) + 0.3)
            + 0.5 * torch.cos(2 * math.pi * (-tx / 11 + ty / 17) + 1.0))


INNER = (..., slice(6, -6), slice(6, -6))  # 6 px away from the border


def test_the_filter_taps_are_the_sym6_orthonormal_wavelet_lowpass():
    h = torch.tensor(ada_ops.SYM6, dtype=torch.float64)
    assert len(h) == 12
    assert h.sum().item() == pytest.approx(math.sqrt(2), abs=1e-12)
    assert h.pow(2).sum().item() == pytest.approx(1.0, abs=1e-9)
    for k in range(1, 6):  # orthogonal to its even shifts
        assert torch.dot(h[:-2 * k], h[2 * k:]).item() == pytest.approx(0.0, abs=1e-9), k
    assert (h[0::2].sum() - h[1::2].sum()).item() == pytest.approx(0.0, abs=1e-9)  # H(pi) = 0: a lowpass
    assert ada_ops.SYM6_CENTRE == pytest.approx(5.0983, abs=1e-4)  # its centre: not 5.5, it is not symmetric


def test_antialiased_warp_returns_identity_samples_exactly_and_leaves_the_input_alone():
    x = images(b=3, h=8, w=8)
    kept = x.clone()
    prm = ada_ops.identity_params(3)
    prm["rotate_pre"][1] = 0.5
    out = ada_ops.warp(x, ada_ops.geometric_matrix(prm), antialias=True)
    assert torch.equal(out[[0, 2]], x[[0, 2]]) and not torch.allclose(out[1], x[1], atol=0.01)
    assert torch.equal(x, kept)
    assert ada_ops.warp(x, ada_ops.geometric_matrix(ada_ops.identity_params(3)), antialias=True) is x


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_the_2x_round_trip_with_no_warp_gives_back_any_image(mode):
    """Up with sqrt2 h, down with h / sqrt2: sum_k h[k] h[k + 2n] = delta_n makes the pair the identity, for images
    that are not band-limited too, and at the border (the reflection is upsampled, not zero-filled)."""
    for x in (smooth(), images(b=2, h=7, w=10, dtype=torch.float64)):
        eye = torch.eye(3, dtype=torch.float64).repeat(len(x), 1, 1)
        assert torch.allclose(ada_ops._warp_2x(x, eye, mode), x, atol=1e-10)


def test_antialiased_blits_land_where_the_transform_says(monkeypatch):
    # Integer shifts move the 2x image by whole samples: exact for any image, reflected border included.
    for img in (smooth(), images(b=1, c=1, h=32, w=32, dtype=torch.float64)):
        shifted = geo(img, "xint", [3.0, -2.0], antialias=True)
        assert torch.allclose(shifted, geo(img, "xint", [3.0, -2.0]), atol=1e-9)
    # Flips and quarter turns of a band-limited image: close, not exact (sym6 is only nearly symmetric).
    x = smooth()
    flip = (geo(x, "xflip", 1.0, antialias=True) - x.flip(-1))[INNER].abs().max()
    turn = (geo(x, "rotate90", 1.0, antialias=True) - torch.rot90(x, -1, (-2, -1)))[INNER].abs().max()
    assert flip < 0.02 and turn < 0.02
    # The paper's code places pixel j at 2x index 2j + 0.5 (as if tau were 5.5): the same flip lands ~0.4 px off.
    monkeypatch.setattr(ada_ops, "SYM6_CENTRE", 5.5)
    assert (geo(x, "xflip", 1.0, antialias=True) - x.flip(-1))[INNER].abs().max() > 10 * flip


def test_antialiased_rotation_and_scale_of_a_smooth_image_sample_the_warped_continuous_image():
    """out(q) = f(M^-1 q) for the band-limited f that `smooth` samples, wherever M^-1 q stays 4 px inside."""
    prm = ada_ops.identity_params(1)
    prm["rotate_pre"][:], prm["scale"][:], prm["xfrac"][:] = 0.5, 1.2, torch.tensor([0.3, -0.6])
    matrix = ada_ops.geometric_matrix(prm)
    out = ada_ops.warp(smooth(), matrix, antialias=True)[0, 0]
    c = torch.arange(32, dtype=torch.float64) - 15.5
    q = torch.stack([c.view(1, -1).expand(32, 32), c.view(-1, 1).expand(32, 32), torch.ones(32, 32)])
    src = torch.einsum("ij,jhw->ihw", torch.linalg.inv(matrix[0]), q)[:2] + 15.5  # input (column, row)
    inside = ((src > 4) & (src < 27)).all(0)
    assert inside.sum() > 200
    assert (out - continuous(src[0], src[1]))[inside].abs().max() < 0.02


def test_antialiasing_removes_most_of_the_aliasing_of_a_rotated_checkerboard():
    """A checkerboard (the Nyquist frequency on both axes) turned by a non-right angle has frequencies past Nyquist;
    resampled directly they alias to low frequencies, while the 2x path filters them out."""
    r = torch.arange(64, dtype=torch.float64)
    board = ((-1.0) ** (r.view(-1, 1) + r.view(1, -1))).view(1, 1, 64, 64)
    hann = torch.hann_window(32, periodic=False, dtype=torch.float64)
    freq = torch.fft.fftfreq(32, dtype=torch.float64)
    low = (freq.view(-1, 1) ** 2 + freq.view(1, -1) ** 2).sqrt() < 0.4  # cycles per pixel

    def low_energy(img: torch.Tensor) -> float:  # of the windowed centre crop, relative to the board's
        spectrum = torch.fft.fft2(img[0, 0, 16:48, 16:48] * hann.view(-1, 1) * hann.view(1, -1)).abs() ** 2
        return (spectrum[low].sum() / torch.fft.fft2(board[0, 0, 16:48, 16:48] * hann.view(-1, 1) * hann).abs()
                .pow(2).sum()).item()

    for angle in (math.pi / 4, math.pi / 6, 1.0):
        plain, filtered = (low_energy(geo(board, "rotate_pre", angle, antialias=aa)) for aa in (False, True))
        assert plain > 0.05  # bilinear resampling makes about 10% of the energy low-frequency
        assert filtered < 0.15 * plain, angle


# ---------------------------------------------------------------------------------------------------------- color
def test_brightness_adds_b_and_contrast_multiplies_by_c_on_every_channel():
    x = images(b=2)
    assert torch.allclose(col(x, "brightness", 0.25), x + 0.25, atol=1e-6)
    assert torch.allclose(col(x, "contrast", 2.0), 2 * x, atol=1e-6)
    gray = images(b=2, c=1)
    assert torch.allclose(col(gray, "brightness", 0.25), gray + 0.25, atol=1e-6)
    assert torch.allclose(col(gray, "contrast", 2.0), 2 * gray, atol=1e-6)


def test_saturation_zero_gives_the_gray_image_of_channel_means():
    x = images(b=2)
    out = col(x, "saturation", 0.0)
    assert torch.allclose(out, x.mean(dim=1, keepdim=True).expand_as(x), atol=1e-6)
    assert torch.allclose(col(x, "saturation", 1.0), x)


def test_luma_flip_negates_luma_and_keeps_chroma():
    x = images(b=2)
    out = col(x, "lumaflip", 1.0)
    luma, luma_out = x.mean(dim=1, keepdim=True), out.mean(dim=1, keepdim=True)
    assert torch.allclose(luma_out, -luma, atol=1e-6)
    assert torch.allclose(out - luma_out, x - luma, atol=1e-6)
    gray = images(b=2, c=1)
    assert torch.allclose(col(gray, "lumaflip", 1.0), -gray, atol=1e-6)


def test_hue_rotation_by_a_third_turn_cycles_the_channels_and_leaves_gray_alone():
    x = images(b=2)
    out = col(x, "hue", 2 * math.pi / 3)  # about (1, 1, 1): red -> green -> blue -> red
    assert torch.allclose(out, x[:, [2, 0, 1]], atol=1e-6)
    gray = images(b=2, c=1)
    assert torch.allclose(col(gray, "hue", 1.0), gray, atol=1e-6)
    assert torch.allclose(col(gray, "saturation", 0.3), gray, atol=1e-6)


# ------------------------------------------------------------------------------------------- differentiability
@pytest.mark.parametrize("name,antialias", [(n, False) for n in OP_VALUES] + [(n, True) for n in GEOMETRIC])
def test_every_op_is_differentiable_in_the_image(name, antialias):
    x = images(b=2, c=3, h=5, w=6, dtype=torch.float64).requires_grad_(True)
    fn = ((lambda t: geo(t, name, OP_VALUES[name], antialias=antialias)) if name in GEOMETRIC
          else (lambda t: col(t, name, OP_VALUES[name])))
    assert not torch.allclose(fn(x), x)  # the value does something
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6)
    fn(x).pow(2).sum().backward()
    assert x.grad.abs().sum() > 0


def test_the_whole_pipeline_at_p_one_is_differentiable_in_the_image():
    aug = ADA(p=1.0, interpolation="bicubic")
    x = images(b=3, c=3, h=6, w=5, dtype=torch.float64).requires_grad_(True)
    fn = lambda t: aug(t, rng=SampleRNG(("k",), slice(0, 3), 3))  # noqa: E731 — same draw at every call
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6)
    out = aug(images(b=3, h=6, w=5).requires_grad_(True), rng=SampleRNG(("k",), slice(0, 3), 3))
    assert out.dtype == torch.float32


def test_blit_ops_only_move_pixels():
    """Pipe 'b' at p = 1: flips, quarter turns and integer shifts copy input pixels (no interpolation)."""
    levels = torch.randperm(3 * 8 * 8, generator=torch.Generator().manual_seed(0)).float()  # distinct integers
    x = (levels / 192).view(1, 3, 8, 8).repeat(16, 1, 1, 1)
    out = ADA(p=1.0, pipe="b", antialias=False)(x, rng=SampleRNG(("k",), slice(0, 16), 16)) * 192
    assert (out - out.round()).abs().max() < 1e-3  # every output pixel is (float32-close to) an input level
    for i in range(16):  # ... of its own sample and channel
        for c in range(3):
            assert set(out[i, c].round().long().flatten().tolist()) <= set(levels.view(3, 64)[c].long().tolist())
    assert not torch.equal(out, x * 192)


# ---------------------------------------------------------------------------------------------- randomness
def test_each_op_is_chosen_with_probability_p():
    b, p = 20000, 0.5
    g = torch.Generator().manual_seed(0)
    u, n = torch.rand(b, ada_ops.N_UNIFORM, generator=g), torch.randn(b, ada_ops.N_NORMAL, generator=g)
    everything = {op for ops in ada_ops.PIPES.values() for op in ops}
    prm = ada_ops.sample_params(u, n, p, everything, 32, 32)
    frac = lambda m: m.double().mean().item()  # noqa: E731
    assert frac(prm["xflip"] == 1) == pytest.approx(p / 2, abs=0.02)  # chosen, then a fair coin
    assert frac(prm["rotate90"] != 0) == pytest.approx(p * 3 / 4, abs=0.02)  # chosen, then k != 0
    assert frac(prm["brightness"] != 0) == pytest.approx(p, abs=0.02)
    p_rot = 1 - math.sqrt(1 - p)  # 0.2929: pre and post rotations each; P(at least one) = p
    assert frac(prm["rotate_pre"] != 0) == pytest.approx(p_rot, abs=0.02)
    assert frac((prm["rotate_pre"] != 0) | (prm["rotate_post"] != 0)) == pytest.approx(p, abs=0.02)
    # Parameter ranges: |integer shift| <= round(0.125 * 32) = 4 px, log2(scale) ~ N(0, 0.2^2), hue in [-pi, pi).
    assert prm["xint"].abs().max() == 4 and torch.equal(prm["xint"], prm["xint"].round())
    chosen = prm["scale"] != 1
    assert torch.log2(prm["scale"][chosen]).std().item() == pytest.approx(0.2, abs=0.01)
    assert prm["brightness"][prm["brightness"] != 0].std().item() == pytest.approx(0.2, abs=0.01)
    assert prm["hue"].min() >= -math.pi and prm["hue"].max() < math.pi
    none = ada_ops.sample_params(u, n, p, set(ada_ops.PIPES["c"]), 32, 32)  # pipe 'c': geometry untouched
    assert (none["rotate90"] == 0).all() and (none["scale"] == 1).all()


@pytest.mark.parametrize("antialias", [True, False])
def test_a_sample_row_gets_the_same_transform_in_any_micro_batch_and_reals_and_fakes_differ(antialias):
    aug = ADA(p=0.8, antialias=antialias)
    x = images(b=8)
    key = ("seed", "phase", "D", 3)
    whole = aug(x, rng=SampleRNG((*key, 1), slice(0, 8), 8))
    halves = [aug(x[a:a + 4], rng=SampleRNG((*key, 1), slice(a, a + 4), 8)) for a in (0, 4)]
    assert torch.equal(torch.cat(halves), whole)
    # The fakes' call (the next sample_rng() of the Context) draws other parameters for the same rows.
    assert not torch.equal(aug(x, rng=SampleRNG((*key, 2), slice(0, 8), 8)), whole)
    # Reals and fakes concatenated into one batch: independent halves, and rows match across a 2-way split.
    both = aug(torch.cat([x, x]), rng=SampleRNG(key, slice(0, 8), 8))
    assert all(not torch.equal(both[i], both[i + 8]) for i in range(8))
    part = aug(torch.cat([x[2:4], x[2:4]]), rng=SampleRNG(key, slice(2, 4), 8))
    assert torch.equal(part, both[[2, 3, 10, 11]])


# ------------------------------------------------------------------------------------------------- the p rule
def window_of(aug: ADA, r_t: float, batch: int = 64, progress: float = 0.25) -> dict:
    """Feed `interval` D phases with mean sign D(real) = r_t through a StatsWindow as the trainer does."""
    window = StatsWindow(aug.update_every)
    for run in range(aug.update_every):
        full = window.add({"d_real_sign": (r_t * batch, batch), "d_real": (0.0, batch)})
        assert full == (run == aug.update_every - 1)
    return window.release(step=10, d_step=10, nimg=11 * batch, batch_size=batch, progress=progress,
                          window_nimg=window.runs * batch)


@pytest.mark.parametrize("p0,r_t,expected", [
    (0.0, 0.8, 5.12e-4),  # r_t > target: p rises by 64 * 4 / 500000
    (0.0, 0.2, 0.0),  # r_t < target: p would fall, stays at 0
    (0.5, 0.2, 0.5 - 5.12e-4),
    (0.5, 0.6, 0.5),  # r_t = target: sign 0
    (1.0, 0.9, 1.0),  # clamped at 1
])
def test_p_moves_by_batch_times_interval_over_ada_kimg_toward_the_target(p0, r_t, expected):
    aug = AUGMENTATIONS.build("ada", {"p": p0, "interval": 4, "ada_kimg": 500, "target": 0.6}, where="augment")
    assert aug.update_every == 4
    aug.update(window_of(aug, r_t))
    assert aug.log_values()["aug_p"] == pytest.approx(expected, abs=1e-12)
    assert float(aug.p) == aug.log_values()["aug_p"] and aug.log_values()["aug_rt"] == pytest.approx(r_t)


def test_p_stays_in_0_1_and_walks_by_fixed_steps():
    aug = ADA(p=0.9995, ada_kimg=500, interval=4)
    trace = []
    for r_t in [0.9] * 3 + [0.0] * 5:
        aug.update(window_of(aug, r_t))
        trace.append(aug.log_values()["aug_p"])
    assert trace[:3] == [1.0, 1.0, 1.0]
    assert trace[3:] == pytest.approx([1 - k * 5.12e-4 for k in range(1, 6)], abs=1e-12)


def test_fixed_and_linear_schedules():
    fixed = ADA(p=0.3, schedule="fixed")
    fixed.update(window_of(fixed, 0.9))
    assert fixed.log_values() == {"aug_p": 0.3}
    linear = ADA(p=0.1, schedule="linear", p_end=0.5, interval=2)
    linear.update(window_of(linear, 0.9, progress=0.5))
    assert linear.log_values()["aug_p"] == pytest.approx(0.3)  # halfway from 0.1 to 0.5


def test_state_dict_round_trip_restores_p_and_the_transform():
    aug = ADA(p=0.5)
    for _ in range(3):
        aug.update(window_of(aug, 0.9))
    state = aug.state_dict()
    assert set(state) == {"p", "rt"} and float(state["p"]) == pytest.approx(0.5 + 3 * 5.12e-4, abs=1e-12)
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    restored = ADA(p=0.0)
    restored.load_state_dict(torch.load(buf, weights_only=True))
    assert restored.log_values() == aug.log_values()
    x = images(b=8)
    out = restored(x, rng=SampleRNG(("k",), slice(0, 8), 8))
    assert torch.equal(out, aug(x, rng=SampleRNG(("k",), slice(0, 8), 8))) and not torch.equal(out, x)


# ------------------------------------------------------------------------------------------------- bad options
@pytest.mark.parametrize("options,message", [
    ({"p": 1.5}, "augment.p: expected a probability in [0, 1], got 1.5"),
    ({"p": -0.1}, "augment.p: expected a probability in [0, 1], got -0.1"),
    ({"target": 2.0}, "augment.target: expected a value of E[sign D(real)] in [-1, 1], got 2.0"),
    ({"ada_kimg": 0}, "augment.ada_kimg: expected a positive number of kimg, got 0.0"),
    ({"interval": 0}, "augment.interval: expected a whole number of D steps >= 1, got 0"),
    ({"interval": 2.5}, "augment.interval: expected an integer, got 2.5"),
    ({"schedule": "cosine"}, "augment.schedule: expected one of 'adaptive', 'fixed', 'linear', got 'cosine'"),
    ({"schedule": "linear"}, "augment.p_end: schedule 'linear' needs p_end"),
    ({"p_end": 0.5}, "augment.p_end: only used with schedule 'linear', but schedule is 'adaptive'"),
    ({"schedule": "linear", "p_end": 2}, "augment.p_end: expected a probability in [0, 1], got 2.0"),
    ({"pipe": "bgx"}, "augment.pipe: expected distinct letters from 'bgc'"),
    ({"pipe": "bb"}, "augment.pipe: expected distinct letters from 'bgc'"),
    ({"interpolation": "nearest"}, "augment.interpolation: expected one of 'bilinear', 'bicubic', got 'nearest'"),
    ({"antialias": 1}, "augment.antialias: expected bool, got 1"),
    ({"rate": 1}, "augment.rate: unknown option for augmentation 'ada'"),
])
def test_bad_options_are_one_line_errors_naming_the_key(options, message):
    with pytest.raises(GanforgeError) as err:
        AUGMENTATIONS.build("ada", options, where="augment")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_color_ops_refuse_images_that_are_not_gray_or_rgb():
    with pytest.raises(GanforgeError, match=r"^augment.pipe: ADA's color ops need 1- or 3-channel images"):
        AUGMENTATIONS.build("ada", {"p": 0.5}, where="augment", img_shape=(4, 8, 8))
    AUGMENTATIONS.build("ada", {"p": 0.5, "pipe": "bg"}, where="augment", img_shape=(4, 8, 8))  # geometry only: fine


# ----------------------------------------------------------------------------------------------------- training
def test_training_adapts_logs_and_checkpoints_p(tmp_path):
    from ganforge.training.trainer import train

    raw = copy.deepcopy(TINY_DIGITS)
    # batch 16, one D step per window, ada_kimg 0.16: every step moves p by 16 / 160 = 0.1 (or not at all).
    raw["augment"] = {"name": "ada", "p": 0.2, "interval": 1, "ada_kimg": 0.16}
    raw["train"].update(steps=4, ckpt_every=4)
    run = tmp_path / "run"
    train(from_dict(raw), run, progress=False)
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    trace = [0.2] + [e["aug_p"] for e in events if e["event"] == "train"]
    assert len(trace) == 5
    assert all(min(abs(abs(b - a) - 0.1), abs(b - a)) < 1e-9 for a, b in zip(trace, trace[1:]))
    assert all(-1 <= e["aug_rt"] <= 1 for e in events if e["event"] == "train")
    assert float(last_state(run)["augment"]["p"]) == pytest.approx(trace[-1], abs=1e-12)


def test_autocast_and_channels_last_do_not_change_the_result():
    """The warp and color matrix run in float32 under bf16 autocast; bf16 batches come back as bf16."""
    aug = ADA(p=1.0)
    x = images(b=4, h=8, w=8)
    rng = lambda: SampleRNG(("k",), slice(0, 4), 4)  # noqa: E731
    plain = aug(x, rng=rng())
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        assert torch.equal(aug(x, rng=rng()), plain)
        low = aug(x.bfloat16(), rng=rng())
    assert low.dtype == torch.bfloat16 and torch.allclose(low.float(), plain, atol=0.05)
    assert torch.allclose(aug(x.contiguous(memory_format=torch.channels_last), rng=rng()), plain, atol=1e-6)
