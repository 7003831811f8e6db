"""Resize protocols (TF1 bilinear, clean-fid's PIL bicubic, torch) and uint8 quantization."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ganforge.data.base import ImageModality
from ganforge.errors import GanforgeError
from ganforge.metrics.resize import RESIZE_MODES, quantize, resize


def _tf1_bilinear_reference(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Scalar float32 transcription of TF1's legacy resize_bilinear kernel (one channel)."""
    in_h, in_w = img.shape
    f32 = np.float32
    sy, sx = f32(in_h) / f32(out_h), f32(in_w) / f32(out_w)
    out = np.zeros((out_h, out_w), np.float32)
    for i in range(out_h):
        fy = f32(i) * sy
        y0, y1, ly = int(np.floor(fy)), min(int(np.ceil(fy)), in_h - 1), f32(fy - np.floor(fy))
        for j in range(out_w):
            fx = f32(j) * sx
            x0, x1, lx = int(np.floor(fx)), min(int(np.ceil(fx)), in_w - 1), f32(fx - np.floor(fx))
            top = img[y0, x0] + (img[y0, x1] - img[y0, x0]) * lx
            bottom = img[y1, x0] + (img[y1, x1] - img[y1, x0]) * lx
            out[i, j] = top + (bottom - top) * ly
    return out


def test_tf_bilinear_upsample_2_to_4_gives_tf_values():
    a, b, c, d = 10.0, 30.0, 50.0, 90.0
    x = torch.tensor([[a, b], [c, d]]).view(1, 1, 2, 2)
    y = resize(x, 4, "tf-bilinear")[0, 0]
    # source coordinates 0, 0.5, 1, 1.5 -> the last one clamps to the border: row [a, b] -> [a, (a+b)/2, b, b]
    assert y[0].tolist() == [a, (a + b) / 2, b, b]
    assert y[:, 0].tolist() == [a, (a + c) / 2, c, c]
    assert y[1, 1].item() == (a + b + c + d) / 4
    assert y[3].tolist() == y[2].tolist() == [c, (c + d) / 2, d, d]
    # not what PyTorch's half-pixel bilinear does
    assert not torch.equal(y, F.interpolate(x, size=4, mode="bilinear", align_corners=False)[0, 0])


def test_tf_bilinear_integer_downsample_picks_pixels():
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    y = resize(x, 2, "tf-bilinear")[0, 0]
    assert torch.equal(y, x[0, 0][::2, ::2])  # 4 -> 2 samples indices 0 and 2, no averaging


def test_tf_bilinear_non_integer_ratios():
    row = torch.tensor([0.0, 40.0, 100.0]).view(1, 1, 1, 3)
    y = resize(row, (1, 2), "tf-bilinear")[0, 0, 0]
    assert y.tolist() == [0.0, 70.0]  # 3 -> 2: coordinates 0 and 1.5
    img = torch.randint(0, 256, (2, 3, 7, 5), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    for out_h, out_w in [(3, 2), (11, 13), (299, 299)]:
        got = resize(img, (out_h, out_w), "tf-bilinear")
        for b in range(2):
            want = _tf1_bilinear_reference(img[b, 1].numpy().astype(np.float32), out_h, out_w)
            np.testing.assert_array_equal(got[b, 1].numpy(), want)  # bit-compatible, not merely close


def test_clean_resize_equals_pil_bicubic_float():
    g = torch.Generator().manual_seed(1)
    img = torch.randint(0, 256, (2, 3, 17, 23), generator=g, dtype=torch.uint8)
    got = resize(img, (29, 31), "clean")
    for b in range(2):
        for ch in range(3):
            pil = Image.fromarray(img[b, ch].numpy().astype(np.float32)).resize((31, 29), resample=Image.BICUBIC)
            want = np.clip(np.asarray(pil), 0, 255)
            np.testing.assert_array_equal(got[b, ch].numpy(), want)


def test_clean_resize_clips_bicubic_overshoot():
    step = torch.zeros(1, 1, 8, 8)
    step[..., 4:] = 255.0
    raw = np.asarray(Image.fromarray(step[0, 0].numpy()).resize((20, 20), resample=Image.BICUBIC))
    assert raw.max() > 255.0 and raw.min() < 0.0  # bicubic rings at a step ...
    got = resize(step, 20, "clean")
    assert got.max().item() == 255.0 and got.min().item() == 0.0  # ... and clean-fid clips to the pixel range


def test_torch_bilinear_is_legacy_interpolate():
    x = torch.rand(2, 3, 9, 9) * 255
    assert torch.equal(resize(x, 5, "torch-bilinear"),
                       F.interpolate(x, size=(5, 5), mode="bilinear", align_corners=False))


@pytest.mark.parametrize("mode", sorted(RESIZE_MODES))
def test_every_mode_float32_range_and_constants(mode):
    x = torch.full((2, 3, 12, 10), 77, dtype=torch.uint8)
    x[1] = torch.randint(0, 256, (3, 12, 10), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    y = resize(x, (7, 9), mode)
    assert y.dtype == torch.float32 and y.shape == (2, 3, 7, 9)
    assert torch.allclose(y[0], torch.full_like(y[0], 77.0), atol=1e-3)  # a constant image stays constant
    assert 0.0 <= y.min().item() and y.max().item() <= 255.0
    assert torch.equal(resize(x.float(), (7, 9), mode), y)  # uint8 and float 0..255 inputs agree


def test_unknown_mode_lists_choices():
    with pytest.raises(GanforgeError, match="tf-bilinear") as e:
        resize(torch.zeros(1, 3, 4, 4), 2, "lanczos")
    assert "\n" not in str(e.value)


def test_quantize_rounds_not_truncates():
    x = torch.tensor([-1.0, 1.0, 0.0, 0.5, -3.0, 2.0, 10.6 / 127.5 - 1, 10.4 / 127.5 - 1])
    q = quantize(x)
    assert q.dtype == torch.uint8
    # 0 -> 127.5 -> 128; 0.5 -> 191.25 -> 191; 10.6 -> 11 (truncation would give 10); out-of-range values clamp
    assert q.tolist() == [0, 255, 128, 191, 0, 255, 11, 10]
    z = torch.rand(4, 3, 5, 5) * 2.2 - 1.1
    assert torch.equal(quantize(z), ImageModality().from_model(z))  # the same rule as the datasets' modality
