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
The image is resampled once: out(q) = in(M^-1 q), with reflect padding about the border pixels' centres
(in[-1] = in[1], as torch.nn.functional.pad(mode="reflect")), bilinear (or bicubic) and differentiable in the image.
The paper's code also upsamples 2x with a sym6 wavelet filter before the warp and downsamples after (anti-aliasing);
this version does not.

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


def warp(x: torch.Tensor, matrix: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """out[b](q) = x[b](M_b^-1 q) for images x (B, C, H, W) and forward matrices M (B, 3, 3) in centred pixel
    coordinates; reflect padding; samples whose M is the identity are returned exactly."""
    b, c, h, w = x.shape
    same = (matrix == torch.eye(3, dtype=matrix.dtype)).all(dim=2).all(dim=1)
    if bool(same.all()):
        return x
    hx, hy = max(w - 1, 1) / 2, max(h - 1, 1) / 2  # grid_sample's align_corners=True: -1 and 1 are border centres
    to_norm = torch.diag(torch.tensor([1 / hx, 1 / hy, 1.0], dtype=torch.float64))
    to_pix = torch.diag(torch.tensor([hx, hy, 1.0], dtype=torch.float64))
    theta = (to_norm @ torch.linalg.inv(matrix) @ to_pix)[:, :2, :]  # output -> input, normalized coordinates
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    grid = F.affine_grid(theta.to(device=x.device, dtype=work.dtype), [b, c, h, w], align_corners=True)
    out = F.grid_sample(work, grid, mode=mode, padding_mode="reflection", align_corners=True).to(x.dtype)
    return torch.where(same.to(x.device).view(b, 1, 1, 1), x, out)


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
