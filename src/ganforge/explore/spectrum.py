"""Mean log-power Fourier spectrum of generated vs real images, and its azimuthal average.

Generators' upsampling leaves periodic artifacts that show as peaks and a raised tail at high spatial frequencies
(Durall et al., "Watch your Up-Convolution: CNN Based Generative Deep Neural Networks are Failing to Reproduce
Spectral Distributions", CVPR 2020; Dzanic et al., "Fourier spectrum discrepancies in deep network generated images",
NeurIPS 2020). For each image: grayscale x in [0, 1], F = FFT2(x), log-power P = log(|F|^2 + eps), DC moved to the
centre (fftshift); S = mean of P over n images. The 1-D profile averages S over rings of integer radius
r = round(sqrt(du^2 + dv^2)) around the centre (azimuthal average). Reported gap: mean |S_fake - S_real| over the
frequencies with r >= high_from * r_nyquist, r_nyquist = min(H, W) / 2.
The real images are the run's training set, rebuilt from the export's config.json ("data").
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..checks import check_int
from ..errors import GanforgeError
from ..registries import EXPLORERS
from .base import Explorer, save_png
from .plot import heatmaps, line_plot

_EPS = 1e-10  # keeps log finite at exact zeros of the spectrum


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float (N, H, W) in [0, 1]: ITU-R BT.601 luma for RGB, the channel itself for gray."""
    x = images.float() / 255.0
    if x.shape[1] >= 3:
        return 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    return x[:, 0]


def log_power_spectrum(gray: torch.Tensor) -> torch.Tensor:
    """Float (N, H, W) images -> mean over images of log |FFT2|^2, DC centred (H, W)."""
    f = torch.fft.fftshift(torch.fft.fft2(gray.double()), dim=(-2, -1))
    return torch.log(f.abs().pow(2) + _EPS).mean(0)


def radius_map(h: int, w: int) -> torch.Tensor:
    """Integer distance of each (fftshifted) frequency from the centre (h // 2, w // 2)."""
    v = torch.arange(h, dtype=torch.float64) - h // 2
    u = torch.arange(w, dtype=torch.float64) - w // 2
    return torch.sqrt(v[:, None] ** 2 + u[None, :] ** 2).round().long()


def radial_profile(spectrum: torch.Tensor) -> torch.Tensor:
    """Azimuthal average of a centred (H, W) spectrum: mean over rings r = 0 .. min(H, W) // 2."""
    h, w = spectrum.shape
    r = radius_map(h, w).flatten()
    r_max = min(h, w) // 2
    keep = r <= r_max
    sums = torch.zeros(r_max + 1, dtype=spectrum.dtype).index_add_(0, r[keep], spectrum.flatten()[keep])
    counts = torch.bincount(r[keep], minlength=r_max + 1).to(spectrum.dtype)
    return sums / counts


def high_frequency_gap(fake: torch.Tensor, real: torch.Tensor, high_from: float) -> float:
    """Mean |S_fake - S_real| over frequencies at radius >= high_from * min(H, W) / 2."""
    h, w = fake.shape
    mask = radius_map(h, w).double() >= high_from * min(h, w) / 2
    return float((fake - real).abs()[mask].mean())


@EXPLORERS.register("spectrum")
class Spectrum(Explorer):
    """Mean log-power FFT spectrum and its radial profile, generated vs real images (upsampling artifacts)."""

    def __init__(self, *, n: int = 256, batch_size: int = 64, high_from: float = 0.5):
        """
        Args:
            n: images of each kind (generated, real; fewer real ones when the training set is smaller).
            batch_size: generator batch size.
            high_from: where "high frequencies" start, as a fraction of the Nyquist radius min(H, W) / 2.
        """
        self.n = check_int(n, "explore spectrum: n", minimum=1)
        self.batch_size = check_int(batch_size, "explore spectrum: batch_size", minimum=1)
        if not 0 <= high_from < 1:
            raise GanforgeError(f"explore spectrum: high_from must lie in [0, 1), got {high_from}")
        self.high_from = float(high_from)

    def check(self, G: torch.nn.Module) -> None:
        super().check(G)
        if not (getattr(G, "export_config", None) or {}).get("data"):
            raise GanforgeError("explore spectrum: needs the run's training data, named in an export's config.json; "
                                "load the generator from a run or export (ganforge.training.export.load_generator)")

    def real_images(self, G: torch.nn.Module, seed: int) -> torch.Tensor:
        """Up to n uint8 training images, a seeded random subset."""
        from ..config import Component
        from ..training.build import build_dataset
        from ..training.rng import generator

        data = dict(G.export_config["data"])
        dataset = build_dataset(Component(data.pop("name"), data))
        idx = torch.randperm(len(dataset), generator=generator(seed, "explore-spectrum-real"))[: self.n]
        x, _ = dataset.get_batch(idx)
        if x.dtype != torch.uint8 or x.ndim != 4:
            raise GanforgeError(f"explore spectrum: the training data is not images (got {tuple(x.shape)} "
                                f"{x.dtype})")
        return x

    def fake_images(self, G: torch.nn.Module, seed: int, device: str, progress: bool) -> torch.Tensor:
        from ..data.base import ImageModality
        from ..sampling import generate_batches

        batches = generate_batches(G, self.n, seed=seed, batch_size=self.batch_size, device=device)
        bar = tqdm(batches, total=-(-self.n // self.batch_size), desc="spectrum", disable=not progress, leave=False)
        return torch.cat([ImageModality().from_model(x) for x, _ in bar])

    def run(self, G: torch.nn.Module, out_dir: Path, *, progress: bool, seed: int, device: str) -> dict[str, Any]:
        real_x = self.real_images(G, seed)
        fake_x = self.fake_images(G, seed, device, progress)
        if real_x.shape[1:] != fake_x.shape[1:]:
            raise GanforgeError(f"explore spectrum: training images {tuple(real_x.shape[1:])} and generated images "
                                f"{tuple(fake_x.shape[1:])} differ in shape")
        real, fake = log_power_spectrum(grayscale(real_x)), log_power_spectrum(grayscale(fake_x))
        p_real, p_fake = radial_profile(real), radial_profile(fake)
        scale = max(1, 128 // max(real.shape))
        save_png(heatmaps([real.numpy(), fake.numpy(), (fake - real).abs().numpy()],
                          ["real", "generated", "|generated - real|"], scale=scale, shared=[True, True, False]),
                 out_dir / "spectrum2d.png")
        save_png(line_plot({"real": p_real.numpy(), "generated": p_fake.numpy()},
                           {"real": "#1f5fbf", "generated": "#d62728"}, "radius (cycles per image)",
                           "log power"), out_dir / "profile.png")
        return {"n_real": len(real_x), "n_fake": self.n, "profile_real": p_real, "profile_fake": p_fake,
                "high_freq_gap": high_frequency_gap(fake, real, self.high_from),
                "profile_gap": float((p_fake - p_real).abs().mean())}
