"""MEE: manifold entropy estimation against mode collapse.

Liu et al., "Combating Mode Collapse in GANs via Manifold Entropy Estimation", AAAI 2023 (code: HaozheLiu-ST/MEE,
whose README says "... via Offline Manifold Entropy Estimation"). D embeds each image as an N-dim code t(x). Two
terms keep the codes on a smooth, locally isometric manifold, and the entropy of that manifold is estimated from
nearest-neighbour distances to a replay buffer of past codes. D maximises the entropy of the real codes and G that
of its samples' codes, which spreads the samples out.

Equations (METHODS.md §2 "MEE"; t = W h + b, MSE = mean over all elements, sg = detach):
    DLLE:     L_dlle = MSE(t(x_r), sg t(T x_r)) + MSE(t(x_f), sg t(T x_f)),
              T x = x flipped along H or W (the axis drawn per sample) + 0.001 N(0, 1)
    DIsoMap:  alpha_i ~ N(0, 1) per sample (randn, not U(0, 1): the README says it is on purpose),
              x~ = alpha x_r + (1 - alpha) x_f,  m = alpha t_r + (1 - alpha) t_f + N(0, 0.05^2),
              L_iso = MSE(t(x~), sg m)
    entropy:  d_i = min_s mean_k (B[s, k] - t_i[k])^2 over a replay buffer B of codes,
              L_ent = -lambda_e log(mean_i d_i); then the batch's codes enter B first in, first out
    D:        L_D += dlle_weight L_dlle + isomap_weight L_iso + L_ent(real codes, buffer of real codes)
    G:        L_G += L_ent(codes of G(z), buffer of generated codes)
    lambda_e = entropy_weight * min(1, epochs / ramp_epochs), with epochs = nimg / dataset_size
Defaults: outcomes N = 16 (README), entropy_weight 5e-4 (README `entropy_lr`), ramp_epochs 100, buffer_size 4096
codes, dlle_weight = isomap_weight = 1, aug_noise 0.001, target_noise 0.05.

Where this departs from the reference code, and why:
- Code head. In the reference, D itself outputs the N-dim code, and its adversarial loss is
  L_MaF = -mean t_r + mean t_f over all code dimensions. Here the term owns a linear code head on D's penultimate
  features h (`DOutput.extras["h"]`, width `feature_dim`), so MEE works with any architecture, D head and loss. The
  head trains with D's optimizer (`trains_with = "D"`), is frozen in G phases, and is checkpointed with the term.
  The adversarial part is the run's own loss. `loss: wasserstein` with the `linear` D head gives
  -mean D(x_r) + mean D(x_f) with D linear in h, as L_MaF is (mean_k t_k is linear in h). Here, though, the logit
  and the code are separate heads on the same h.
- Buffer. The reference keeps B as [S, batch, N] and compares code i only with the entries at position i. Its update
  cat(B[batch:], codes) drops `batch` slots but adds one, so the buffer shrinks to the previous batch (METHODS.md
  caveat). Here B holds exactly `buffer_size` codes whatever the batch size. Each code's distance is to its nearest
  entry over the whole buffer (the nearest-neighbour entropy estimate), and a push drops the oldest codes.
- Ramp. The reference raises lambda_e once per epoch (epoch / 100, so 0 during the first epoch). Here it grows
  with every batch. `ramp_epochs: 0` means full weight from the start; so does an unknown dataset size.
- T. The reference flips the whole batch along one random axis. Here the axis is drawn per sample. Inputs that are
  not images (points) get the noise only.
- Which D calls. t_r and t_f (the DLLE anchors and DIsoMap's target) come from the cached D calls the adversarial
  loss also uses, so they go through the run's augmentation, as in `cr`. T x and x~ go through `ctx.D_of`. x~ is
  given the real labels when D is conditional. log(mean d) is floored at log(1e-12) so that exact repeats cannot
  give an infinite loss.

DDP and resume: mean_i d_i is over the global batch (distances all-gathered), and every rank pushes the same
gathered codes, so the buffers stay identical on all ranks. The term is therefore not decomposable
(`train.accumulate` must be 1). The buffers start U(-1, 1) from a fixed seed (the same on every rank). They are
registered buffers, so they are in `state_dict` and resume exactly. Per-sample draws come from `ctx.sample_rng()`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..checks import check_int
from ..conditioning.base import DOutput
from ..errors import GanforgeError
from ..registries import REGULARIZERS
from ..training.rng import SampleRNG, generator
from .base import Context, ObjectiveTerm
from .feature_matching import frozen
from .gradients import check_nonnegative


def flip_hw(x: torch.Tensor, rng: SampleRNG) -> torch.Tensor:
    """Images (B, C, H, W), each flipped along H or along W (the axis drawn per sample, p = 1/2 each)."""
    along_h = rng.bernoulli(0.5, x.shape[0], 1, 1, 1, device=x.device)  # (B, 1, 1, 1)
    return torch.where(along_h, x.flip(2), x.flip(3))


def nearest_sq_distance(codes: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
    """d_i = min_s mean_k (buffer[s, k] - codes[i, k])^2 for codes (B, N) and a buffer (S, N): (B,) float32."""
    with torch.autocast(device_type=codes.device.type, enabled=False):
        diff = codes.float()[:, None, :] - buffer.float()[None]  # (B, S, N)
        return diff.pow(2).mean(dim=2).min(dim=1).values  # gradient reaches each code through its nearest entry


def push_fifo(buffer: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """The buffer (S, N) with `codes` (B, N) appended at the end and its oldest rows dropped: still S rows."""
    return torch.cat([buffer, codes.detach().to(buffer.dtype)])[-buffer.shape[0]:]


def _mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).pow(2).mean()


@REGULARIZERS.register("mee")
class ManifoldEntropy(nn.Module, ObjectiveTerm):
    """MEE (Liu 2023): DLLE + DIsoMap on a code head t = W h, and -lambda_e log(NN distance to a code buffer).

    Args:
        outcomes: N, the code's width (16 in the README).
        entropy_weight: lambda_e after the ramp (`entropy_lr`, 5e-4 in the README).
        ramp_epochs: epochs over which lambda_e grows linearly from 0 (100 in the reference; 0: no ramp).
        buffer_size: codes held by each replay buffer (real and generated).
        dlle_weight: weight of L_dlle (0 turns it off).
        isomap_weight: weight of L_iso (0 turns it off).
        aug_noise: std of the Gaussian noise T adds, in model units (0.001).
        target_noise: std of the noise added to DIsoMap's target codes (0.05).
    """

    decomposable = False  # batch-level nearest-neighbour entropy and a shared buffer
    may_be_negative = True  # -lambda_e log(mean NN distance) < 0 once the codes spread beyond distance 1
    trains_with = "D"  # the code head steps with D's optimizer

    def __init__(self, outcomes: int = 16, entropy_weight: float = 5e-4, ramp_epochs: float = 100.0,
                 buffer_size: int = 4096, dlle_weight: float = 1.0, isomap_weight: float = 1.0,
                 aug_noise: float = 0.001, target_noise: float = 0.05, *, feature_dim: int = 0,
                 dataset_size: int = 0):
        super().__init__()
        outcomes = check_int(outcomes, "mee.outcomes", minimum=1)
        self.buffer_size = check_int(buffer_size, "mee.buffer_size", minimum=1)
        self.entropy_weight = check_nonnegative(entropy_weight, "mee.entropy_weight")
        self.ramp_epochs = check_nonnegative(ramp_epochs, "mee.ramp_epochs")
        self.dlle_weight = check_nonnegative(dlle_weight, "mee.dlle_weight")
        self.isomap_weight = check_nonnegative(isomap_weight, "mee.isomap_weight")
        self.aug_noise = check_nonnegative(aug_noise, "mee.aug_noise")
        self.target_noise = check_nonnegative(target_noise, "mee.target_noise")
        self.dataset_size = dataset_size
        # t = W h + b; the framework passes feature_dim, stand-alone use infers it from the first batch
        self.code = nn.Linear(feature_dim, outcomes) if feature_dim > 0 else nn.LazyLinear(outcomes)
        gen = generator("mee", "buffers")  # a fixed seed: the same initial buffers on every rank
        self.register_buffer("real_codes", torch.rand(self.buffer_size, outcomes, generator=gen) * 2 - 1)
        self.register_buffer("fake_codes", torch.rand(self.buffer_size, outcomes, generator=gen) * 2 - 1)

    # ------------------------------------------------------------------------------------------------- pieces
    def codes(self, out: DOutput) -> torch.Tensor:
        """t = W h + b (B, N) in float32 from a D output's penultimate features h."""
        h = out.get("h")
        if h is None:
            raise GanforgeError("mee: this D returns no penultimate features (DOutput h); use a Discriminator "
                                "(backbone + head), which always does")
        return self.code(h.flatten(1)).float()

    def entropy_lambda(self, nimg: int) -> float:
        """lambda_e after `nimg` real images: entropy_weight * min(1, nimg / (dataset_size * ramp_epochs))."""
        if self.ramp_epochs == 0 or self.dataset_size <= 0:
            return self.entropy_weight
        return self.entropy_weight * min(1.0, nimg / (self.dataset_size * self.ramp_epochs))

    def transform(self, x: torch.Tensor, rng: SampleRNG) -> torch.Tensor:
        """T x: a flip along H or W per sample (images only) plus aug_noise * N(0, 1)."""
        if x.dim() == 4:
            x = flip_hw(x, rng)
        return x + self.aug_noise * rng.randn(x.shape[0], *x.shape[1:], device=x.device, dtype=x.dtype)

    def dlle(self, ctx: Context, x: torch.Tensor, y: torch.Tensor | None, t_x: torch.Tensor) -> torch.Tensor:
        """MSE(t(x), sg t(T x)) given t(x) = `t_x` (B, N)."""
        with torch.no_grad():  # the target is a constant (sg)
            target = self.codes(ctx.D_of(self.transform(x.detach(), ctx.sample_rng()), y))
        return _mse(t_x, target)

    def isomap(self, ctx: Context, t_r: torch.Tensor, t_f: torch.Tensor) -> torch.Tensor:
        """MSE(t(alpha x_r + (1 - alpha) x_f), sg(alpha t_r + (1 - alpha) t_f + target_noise * eps))."""
        real = ctx.real.detach()
        fake = ctx.fake.detach().to(real.dtype)
        b, rng = real.shape[0], ctx.sample_rng()
        alpha = rng.randn(b, 1, device=real.device)  # (B, 1)
        target = alpha * t_r + (1 - alpha) * t_f + self.target_noise * rng.randn(b, t_r.shape[1], device=real.device)
        a = alpha.view(b, *[1] * (real.dim() - 1)).to(real.dtype)  # (B, 1, ...)
        mixed = self.codes(ctx.D_of(a * real + (1 - a) * fake, ctx.y_real))  # (B, N)
        return _mse(mixed, target.detach())

    def entropy(self, ctx: Context, codes: torch.Tensor, buffer: str) -> torch.Tensor:
        """-lambda_e log(mean_i d_i) over the global batch against buffer `buffer`, then push the gathered codes."""
        stored = getattr(self, buffer)
        d = ctx.all_gather(nearest_sq_distance(codes, stored))  # (global B,)
        value = -self.entropy_lambda(ctx.nimg) * torch.log(d.mean().clamp_min(1e-12))
        setattr(self, buffer, push_fifo(stored, ctx.all_gather(codes.detach())))  # identical on every rank
        return value

    # --------------------------------------------------------------------------------------------------- phases
    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        t_r, t_f = self.codes(ctx.d_real), self.codes(ctx.d_fake)  # (B, N) each
        out: dict[str, torch.Tensor] = {}
        if self.dlle_weight > 0:
            dlle = self.dlle(ctx, ctx.real, ctx.y_real, t_r) + self.dlle(ctx, ctx.fake, ctx.y_fake, t_f)
            out["mee_dlle"] = self.dlle_weight * dlle
        if self.isomap_weight > 0:
            out["mee_isomap"] = self.isomap_weight * self.isomap(ctx, t_r, t_f)
        out["mee_entropy"] = self.entropy(ctx, t_r, "real_codes")
        return out

    def g_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        with frozen(ctx.D), frozen(self):  # G's gradient only (the trainer freezes both in G phases anyway)
            t_g = self.codes(ctx.d_fake)  # (B, N)
        return {"mee_entropy_g": self.entropy(ctx, t_g, "fake_codes")}

    def extra_repr(self) -> str:
        return (f"entropy_weight={self.entropy_weight}, ramp_epochs={self.ramp_epochs}, "
                f"buffer_size={self.buffer_size}, dlle_weight={self.dlle_weight}, isomap_weight={self.isomap_weight}")
