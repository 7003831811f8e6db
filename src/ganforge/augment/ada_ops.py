"""ADA's 'bgc' transformations as per-sample matrices, and the two functions that apply them.

Karras et al., "Training Generative Adversarial Networks with Limited Data", NeurIPS 2020, Appendix B. Each op is
chosen per sample with probability p; a sample that does not get an op gets that op's identity parameters.

Geometric ops ("b" = blit, "g" = general), composed in this order into one 3x3 forward matrix M per sample, in pixel
coordinates centred on the image (x = column - (W-1)/2 to the right, y = row - (H-1)/2 down):
- xflip: x -> -x with prob 1/2 once chosen (column c -> W-1-c);
- rotate90: k ~ U{0, 1, 2, 3} quarter turns, (x, y) -> (-y, x) per turn (pixel (r, c) -> (c, N-1-r) on N x N);
- xint: integer shift round(U(-0.125, 0.125) * W) columns, likewise rows with H;
- scale: isotropic x s, s = 2^N(0, 0.2^2) (lognormal, std 0.2 ln 2);
- rotate_pre: angle U(-pi, pi), chosen with p_rot = 1 - sqrt(1 - p), so P(pre or post rotation) = p;
- aniso: x * a, y / a, a = 2^N(0, 0.2^2);
- rotate_post: as rotate_pre, drawn independently;
- xfrac: fractional shift N(0, 0.125^2) * W columns, N(0, 0.125^2) * H rows.
The warp is out(q) = in(M^-1 q), with reflection about the border pixels' centres (in[-1] = in[1], as
torch.nn.functional.pad(mode="reflect"), at any distance), differentiable in the image; samples whose M is the
identity come back exactly. Two ways to resample (`warp`'s `antialias`):
- antialias=False: one grid_sample of the image, bilinear (or bicubic).
- antialias=True (the paper's pipeline, Appendix B): 2x upsample with the Symlet-6 lowpass h (12 taps, sum sqrt 2,
  orthonormal), grid_sample (bilinear, or bicubic) on the 2x image, lowpass with h and keep every second sample:
    up:   u[m] = sum_j x[j] sqrt2 h[m - 2j]     (x zero-inserted and convolved; x[j] of the reflected image)
    down: y[q] = sum_k h[k] / sqrt2 v[2q + k]   (correlation; v = the warped 2x image)
  Coordinates (per axis): pixel j sits at t = j (t = x + (N-1)/2); 2x sample m sits at t = (m - tau) / 2 (pixel j
  at m = 2j + tau), where tau = sum_n n h[n] / sum_n h[n] = 5.0983 is the centre of the filter (x[j] reaches u as
  h[m - 2j]; tau is its delay at low frequencies, the phase delay being 5.10 at 0 and 4.96 at half the band).
  Output 2x samples v[m], m = 0 .. 2N + 9 (t = -2.55 .. N + 1.45, all that the down filter reads), take u at
  M^-1 t. With no warp y = x exactly (an orthonormal h has sum_k h[k] h[k + 2n] = delta_n); a constant stays one.
  The reflected image has period 2(N - 1) px, and so has u (upsampling is linear and shift-invariant); u is
  computed over one period, t from -floor((N-1)/2) on, with 1 px more each side for interpolation, and every read
  moves into it by whole periods: exact reflection for a warp of any reach.
  Departures from the paper's code (stylegan2-ada-pytorch `training/augment.py`), and why:
  - It places pixel j at 2x index 2j + 0.5 of its upfirdn2d output (pixel i at 2i + 0.5 in half-pixel units), the
    centre of a symmetric 12-tap filter; sym6 is only nearly symmetric, and its centre puts pixel j at 2j + 0.098
    (tau - 5). That 0.2 px offset cancels for translations but not for flips, rotations or scalings (an x-flip of
    a smooth image lands ~0.4 px off); placing samples by tau removes it (tests/test_ada.py).
  - It reflect-pads by as much as the batch's warps reach, at most N - 1 px (zeros beyond); here one period of the
    2x image serves every sample (no zeros at any reach), and each sample's result is independent of the rest of
    the batch bit for bit (DDP shards and accumulation rounds need that). Cost: the 2x image is ~(4N)^2 per
    channel and per moved sample, about 16x the image (the paper's code: up to (6N)^2).
  - Filters are sums of shifted slices rather than conv kernels, so each pixel's arithmetic is the same in any
    batch; only samples whose M is not the identity are filtered.

Color ops ("c"), composed in this order into one 4x4 matrix C per sample acting on (r, g, b, 1), with the luma axis
v = (1, 1, 1, 0)/sqrt(3) of the paper's code (luma = channel mean):
- brightness: + b on every channel, b ~ N(0, 0.2^2);
- contrast: x c, c = 2^N(0, 0.5^2) (about 0, the middle of [-1, 1]);
- lumaflip: Householder reflection I - 2 v v^T with prob 1/2 once chosen (luma -> -luma, chroma kept);
- hue: rotation by U(-pi, pi) about v;
- saturation: v v^T + s (I - v v^T), s = 2^N(0, 1) (s = 0 gives the gray image of channel means).
On 1-channel images C becomes x -> x * mean_i(sum_j C_ij) + mean_i(C_i3) (the paper's code): brightness and contrast
as above, lumaflip negates, hue and saturation leave gray unchanged.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import GanforgeError

# Op names in order, and which letter of a pipe turns them on.
PIPES: dict[str, tuple[str, ...]] = {
    "b": ("xflip", "rotate90", "xint"),
    "g": ("scale", "rotate_pre", "aniso", "rotate_post", "xfrac"),
    "c": ("brightness", "contrast", "lumaflip", "hue", "saturation"),
}
XINT_MAX, SCALE_STD, ANISO_STD, XFRAC_STD = 0.125, 0.2, 0.2, 0.125  # paper's bgc defaults (log2 units for scales)
BRIGHTNESS_STD, CONTRAST_STD, SATURATION_STD = 0.2, 0.5, 1.0
N_UNIFORM, N_NORMAL = 21, 7  # per-sample random columns one `sample_params` call consumes


def identity_params(b: int) -> dict[str, torch.Tensor]:
    """Every op's parameters for b samples, set to "not applied" (float64; shifts are (x, y) pixels)."""
    ones = ("scale", "aniso", "contrast", "saturation")
    out = {name: torch.full((b,), 1.0 if name in ones else 0.0, dtype=torch.float64)
           for group in PIPES.values() for name in group}
    out["xint"], out["xfrac"] = torch.zeros(b, 2, dtype=torch.float64), torch.zeros(b, 2, dtype=torch.float64)
    return out  # separate tensors, so a caller may set one op's entries in place


def sample_params(u: torch.Tensor, n: torch.Tensor, p: float, ops: set[str], height: int, width: int):
    """Per-sample parameters from uniforms u (B, N_UNIFORM) and normals n (B, N_NORMAL); ops not in `ops` and
    samples whose draw u_sel >= p (p_rot for the rotations) keep identity values."""
    u, n = u.double(), n.double()
    b = u.shape[0]
    out = identity_params(b)
    size = torch.tensor([width, height], dtype=torch.float64)
    p_rot = 1.0 - math.sqrt(1.0 - p)

    def pick(name: str, col: int, value: torch.Tensor, prob: float = p) -> None:
        if name in ops:
            chosen = u[:, col] < prob
            out[name] = torch.where(chosen.view(-1, *([1] * (value.dim() - 1))), value, out[name])

    pick("xflip", 0, torch.floor(u[:, 1] * 2))
    pick("rotate90", 2, torch.floor(u[:, 3] * 4))
    pick("xint", 4, torch.round((u[:, 5:7] * 2 - 1) * XINT_MAX * size))
    pick("scale", 7, torch.exp2(n[:, 0] * SCALE_STD))
    pick("rotate_pre", 8, (u[:, 9] * 2 - 1) * math.pi, p_rot)
    pick("aniso", 10, torch.exp2(n[:, 1] * ANISO_STD))
    pick("rotate_post", 11, (u[:, 12] * 2 - 1) * math.pi, p_rot)
    pick("xfrac", 13, n[:, 2:4] * XFRAC_STD * size)
    pick("brightness", 14, n[:, 4] * BRIGHTNESS_STD)
    pick("contrast", 15, torch.exp2(n[:, 5] * CONTRAST_STD))
    pick("lumaflip", 16, torch.floor(u[:, 17] * 2))
    pick("hue", 18, (u[:, 19] * 2 - 1) * math.pi)
    pick("saturation", 20, torch.exp2(n[:, 6] * SATURATION_STD))
    return out


# ------------------------------------------------------------------------------------------------------- geometry
def _eye(b: int, k: int) -> torch.Tensor:
    return torch.eye(k, dtype=torch.float64).repeat(b, 1, 1)


def translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """(x, y) -> (x + tx, y + ty), (B, 3, 3)."""
    m = _eye(len(tx), 3)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """(x, y) -> (sx x, sy y)."""
    m = _eye(len(sx), 3)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def rotate2d(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """(x, y) -> (cos x - sin y, sin x + cos y)."""
    m = _eye(len(cos), 3)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin, sin, cos
    return m


def geometric_matrix(prm: dict[str, torch.Tensor]) -> torch.Tensor:
    """M = xfrac . rotate_post . aniso . rotate_pre . scale . xint . rotate90 . xflip, (B, 3, 3) float64."""
    k = prm["rotate90"].long() % 4
    cos90 = torch.tensor([1.0, 0.0, -1.0, 0.0], dtype=torch.float64)[k]  # exact, unlike cos(k pi / 2)
    sin90 = torch.tensor([0.0, 1.0, 0.0, -1.0], dtype=torch.float64)[k]
    m = scale2d(1 - 2 * prm["xflip"], torch.ones_like(prm["xflip"]))
    m = rotate2d(cos90, sin90) @ m
    m = translate2d(prm["xint"][:, 0], prm["xint"][:, 1]) @ m
    m = scale2d(prm["scale"], prm["scale"]) @ m
    m = rotate2d(torch.cos(prm["rotate_pre"]), torch.sin(prm["rotate_pre"])) @ m
    m = scale2d(prm["aniso"], 1 / prm["aniso"]) @ m
    m = rotate2d(torch.cos(prm["rotate_post"]), torch.sin(prm["rotate_post"])) @ m
    return translate2d(prm["xfrac"][:, 0], prm["xfrac"][:, 1]) @ m


def warp(x: torch.Tensor, matrix: torch.Tensor, mode: str = "bilinear", *, antialias: bool) -> torch.Tensor:
    """out[b](q) = x[b](M_b^-1 q) for images x (B, C, H, W) and forward matrices M (B, 3, 3) in centred pixel
    coordinates; reflection about the border pixels' centres; samples whose M is the identity are returned exactly.
    antialias: resample a 2x sym6 upsampling of x and downsample after (module docstring); else resample x once."""
    b, c, h, w = x.shape
    same = (matrix == torch.eye(3, dtype=matrix.dtype)).all(dim=2).all(dim=1)
    if bool(same.all()):
        return x
    if antialias:
        moved = (~same).nonzero().squeeze(1)  # only these are filtered and resampled
        work = x[moved.to(x.device)]
        work = work if work.dtype in (torch.float32, torch.float64) else work.float()
        out = _warp_2x(work, torch.linalg.inv(matrix[moved]), mode).to(x.dtype)
        return x.index_put((moved.to(x.device),), out)  # out of place: x is left as it was
    hx, hy = max(w - 1, 1) / 2, max(h - 1, 1) / 2  # grid_sample's align_corners=True: -1 and 1 are border centres
    to_norm = torch.diag(torch.tensor([1 / hx, 1 / hy, 1.0], dtype=torch.float64))
    to_pix = torch.diag(torch.tensor([hx, hy, 1.0], dtype=torch.float64))
    theta = (to_norm @ torch.linalg.inv(matrix) @ to_pix)[:, :2, :]  # output -> input, normalized coordinates
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    grid = F.affine_grid(theta.to(device=x.device, dtype=work.dtype), [b, c, h, w], align_corners=True)
    out = F.grid_sample(work, grid, mode=mode, padding_mode="reflection", align_corners=True).to(x.dtype)
    return torch.where(same.to(x.device).view(b, 1, 1, 1), x, out)


# Symlet-6 decomposition lowpass filter (12 taps), from PyWavelets 1.8.0: pywt.Wavelet("sym6").dec_lo (the same
# list as the paper's code). Sum sqrt(2), sum of squares 1, orthogonal to its shifts by 2, 4, ... (to ~1e-12).
SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148)
SYM6_CENTRE = sum(n * v for n, v in enumerate(SYM6)) / sum(SYM6)  # tau = 5.0983 taps: 2x sample m at t = (m - tau)/2


def _reflect_rows(n: int, start: int, stop: int, device) -> torch.Tensor:
    """Indices into n samples of positions start .. stop-1 of the whole-sample symmetric extension (x[-1] = x[1])."""
    j = torch.arange(start, stop, device=device)
    if n == 1:
        return torch.zeros_like(j)
    j = j % (2 * (n - 1))
    return torch.where(j > n - 1, 2 * (n - 1) - j, j)


def _upsample(x: torch.Tensor, dim: int, first: int, count: int) -> torch.Tensor:
    """u[m] = sum_j x[j] sqrt2 h[m - 2j] along axis `dim` >= 0 (x reflected past its ends) for the pairs m = 2a, 2a + 1,
    a = first .. first + count - 1: u[2a + phase] = sum_s sqrt2 h[2s + phase] x[a - s], s = 0..5."""
    ext = x.index_select(dim, _reflect_rows(x.shape[dim], first - 5, first + count, x.device))  # x[first - 5 ..]
    phases = [sum(math.sqrt(2) * SYM6[2 * s + phase] * ext.narrow(dim, 5 - s, count) for s in range(6))
              for phase in (0, 1)]
    return torch.stack(phases, dim=dim + 1).flatten(dim, dim + 1)  # pairs interleaved: 2 count along dim


def _downsample(v: torch.Tensor, dim: int) -> torch.Tensor:
    """y[q] = sum_k h[k] / sqrt2 v[2q + k] along `dim` (length 2N + 10 -> N)."""
    n = (v.shape[dim] - 10) // 2
    index = [slice(None)] * v.dim()
    out = 0
    for k in range(12):
        index[dim] = slice(k, k + 2 * n - 1, 2)
        out = out + SYM6[k] / math.sqrt(2) * v[tuple(index)]
    return out


def _window(n: int) -> tuple[int, int, int, int]:
    """Along an axis of n pixels: the reflection's period P = 2(n - 1) px, the start w0 of the one-period window
    [w0, w0 + P) reads are moved into (the image in its middle), and the 2x pairs a = first .. first + count - 1
    that cover it, with 1 px to spare for bilinear or bicubic reads."""
    period, w0 = 2 * (n - 1), -((n - 1) // 2)
    first = math.floor(w0 - 1 + SYM6_CENTRE / 2)  # 2x sample 2a sits at t = a - tau / 2
    return period, w0, first, math.ceil(w0 + period + 0.5 + SYM6_CENTRE / 2) - first + 1


def _wrap(t: torch.Tensor, period: int, w0: int) -> torch.Tensor:
    """Read positions t (pixels) moved by whole periods into [w0, w0 + period): the same point of the reflection."""
    return torch.zeros_like(t) if period == 0 else w0 + torch.remainder(t - w0, period)


def _warp_2x(x: torch.Tensor, inverse: torch.Tensor, mode: str) -> torch.Tensor:
    """The antialiased warp of x (B, C, H, W) by output -> input matrices `inverse` (B, 3, 3, centred pixels).
    The 2x image covers one period of the reflection, so a read at any distance is exact."""
    b, c, h, w = x.shape
    (py, y0, fy, ny), (px, x0, fx, nx) = _window(h), _window(w)
    up = _upsample(_upsample(x, 3, fx, nx), 2, fy, ny)  # (B, C, 2 ny, 2 nx)
    dt, dev = x.dtype, x.device
    # Output 2x samples m = 0 .. 2N + 9 at t = (m - tau) / 2, centred (x right, y down).
    ox = ((torch.arange(2 * w + 10, device=dev, dtype=dt) - SYM6_CENTRE) / 2 - (w - 1) / 2).view(1, 1, -1)
    oy = ((torch.arange(2 * h + 10, device=dev, dtype=dt) - SYM6_CENTRE) / 2 - (h - 1) / 2).view(1, -1, 1)
    a = inverse.to(device=dev, dtype=dt)
    coef = [a[:, i, j].view(b, 1, 1) for i in range(2) for j in range(3)]
    tx = _wrap(coef[0] * ox + coef[1] * oy + coef[2] + (w - 1) / 2, px, x0)  # input position t, pixels
    ty = _wrap(coef[3] * ox + coef[4] * oy + coef[5] + (h - 1) / 2, py, y0)
    # 2x index of t is 2t + tau - 2 first; grid_sample (align_corners=True) wants it in [-1, 1].
    gx = (2 * tx + SYM6_CENTRE - 2 * fx) * (2 / (2 * nx - 1)) - 1
    gy = (2 * ty + SYM6_CENTRE - 2 * fy) * (2 / (2 * ny - 1)) - 1
    v = F.grid_sample(up, torch.stack([gx, gy], dim=-1), mode=mode, padding_mode="border", align_corners=True)
    return _downsample(_downsample(v, 3), 2)  # (B, C, H, W)


# ---------------------------------------------------------------------------------------------------------- color
_LUMA = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64) / math.sqrt(3)


def color_matrix(prm: dict[str, torch.Tensor]) -> torch.Tensor:
    """C = saturation . hue . lumaflip . contrast . brightness, (B, 4, 4) float64 acting on (r, g, b, 1)."""
    b = len(prm["brightness"])
    vvt = torch.outer(_LUMA, _LUMA)
    eye = _eye(b, 4)
    m = eye.clone()
    m[:, :3, 3] = prm["brightness"].view(b, 1)
    contrast = eye.clone()
    contrast[:, :3, :3] *= prm["contrast"].view(b, 1, 1)
    m = contrast @ m
    m = (eye - 2 * vvt * prm["lumaflip"].view(b, 1, 1)) @ m
    cos, sin = torch.cos(prm["hue"]).view(b, 1, 1), torch.sin(prm["hue"]).view(b, 1, 1)
    cross = torch.tensor([[0.0, -1.0, 1.0, 0.0], [1.0, 0.0, -1.0, 0.0], [-1.0, 1.0, 0.0, 0.0],
                          [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64) / math.sqrt(3)  # [v]_x: [v]_x y = v cross y
    hue = vvt + (eye - vvt) * cos + cross * sin  # Rodrigues; (I - v v^T) keeps the (3, 3) entry at 1
    hue[:, 3, 3] = 1.0
    m = hue @ m
    sat = vvt + (eye - vvt) * prm["saturation"].view(b, 1, 1)
    sat[:, 3, 3] = 1.0
    return sat @ m


def recolor(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """x'[b] = C_b[:3, :3] x[b] + C_b[:3, 3] per pixel on 3-channel images (the 1-channel rule on gray ones);
    samples whose C is the identity are returned exactly."""
    b, c = x.shape[:2]
    same = (matrix == torch.eye(4, dtype=matrix.dtype)).all(dim=2).all(dim=1)
    if bool(same.all()):
        return x
    mat = matrix.to(device=x.device, dtype=x.dtype if x.dtype == torch.float64 else torch.float32)
    work = x.to(mat.dtype)
    if c == 3:
        out = torch.einsum("bij,bjhw->bihw", mat[:, :3, :3], work) + mat[:, :3, 3].view(b, 3, 1, 1)
    elif c == 1:
        gain, shift = mat[:, :3, :3].sum(dim=2).mean(dim=1), mat[:, :3, 3].mean(dim=1)
        out = work * gain.view(b, 1, 1, 1) + shift.view(b, 1, 1, 1)
    else:
        raise GanforgeError(f"augment.pipe: ADA's color ops need 1- or 3-channel images, got {c} channels; "
                            f"leave 'c' out of the pipe")
    return torch.where(same.to(x.device).view(b, 1, 1, 1), x, out.to(x.dtype))
