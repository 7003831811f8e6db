"""Householder projector (Song et al., "Householder Projector for Unsupervised Latent Semantics Discovery", ICCV 2023).

A latent-reading linear layer of G (default: the first one, as SeFa finds it: DCGAN's / ResNet's z -> features linear,
a style-based G's first style affine) is replaced by a rank-`rank` orthogonal projector W = Q(U) S Q(V)
(`nn/householder.py`), G is fine-tuned from the run's checkpoint with the run's own losses, regularizers,
augmentation and data (the paper adds no loss: "ordinary StyleGAN2 losses"), training only the projector (the paper's
default) or all of G (`train: full`, the paper's --training_FULL), and the directions are read off the projector: the
first `rank` rows of Q(V), each with singular value 1 (the paper's closed-form factorization of an orthogonal W).
The paper fine-tunes for about 1% of the original steps. The projector starts (`init=svd`, our default) as the
top-`rank` singular subspaces of the trained layer, or as the authors' code does (`init=random`, U, V ~ N(0, 0.05^2)),
which a short fine-tuning does not recover from (docs/benchmarks.md).

The fine-tuning runs in a scratch run directory (config = the run's config.yaml, `train.init_from` = the run) that is
deleted afterwards; the fine-tuned projector is kept as projector.safetensors and the edits are rendered with the
fine-tuned G_ema (EMA decay `ema_decay` over the fine-tuning steps; the run's decay would barely move it).
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm import tqdm

from ..checks import check_int
from ..errors import GanforgeError
from ..models.style import is_style_based
from ..nn.householder import HouseholderProjector
from ..registries import EXPLORERS
from .base import render_grid, row_latents, save_png
from .sefa import SeFa, first_latent_layer


def run_dir_of(G: torch.nn.Module, where: str) -> Path:
    """The run directory a loaded generator's export belongs to, with its config and a checkpoint to start from."""
    export_dir = getattr(G, "export_dir", None)
    if export_dir is None or Path(export_dir).name != "export":
        raise GanforgeError(f"{where}: fine-tunes the run, so it needs a run directory (RUN/export with "
                            f"RUN/config.yaml and RUN/checkpoints), not a bare generator or export")
    run = Path(export_dir).parent
    if not (run / "config.yaml").is_file() or not any((run / "checkpoints").glob("*.pt")):
        raise GanforgeError(f"{where}: {run} has no config.yaml or no checkpoint in checkpoints/ to fine-tune from")
    return run


def find_linear(G: torch.nn.Module, name: str, in_features: int, where: str) -> torch.nn.Module:
    """G's sub-module `name`, which must be a linear layer (a 2-D weight) reading the `in_features`-dim latent."""
    modules = dict(G.named_modules())
    if name not in modules:
        linear = [n for n, m in modules.items() if isinstance(m, torch.nn.Linear)][:6]
        raise GanforgeError(f"{where}: layer {name!r} is not in {type(G).__name__}; linear layers: {', '.join(linear)}")
    module = modules[name]
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise GanforgeError(f"{where}: layer {name!r} is a {type(module).__name__}, not a linear layer")
    if weight.shape[1] != in_features:
        raise GanforgeError(f"{where}: layer {name!r} reads {weight.shape[1]} inputs, not the {in_features}-dim "
                            f"latent (it mixes in a condition); choose a layer fed by the latent alone")
    return module


def replace_module(root: torch.nn.Module, name: str, new: torch.nn.Module) -> None:
    """Put `new` in place of the sub-module called `name` (dotted path) of `root`."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


@EXPLORERS.register("householder")
class Householder(SeFa):
    """Householder projector (Song et al. 2023): fine-tune G with an orthogonal low-rank latent layer; its directions."""

    def __init__(self, *, layer: str | None = None, rank: int = 10, finetune_steps: int = 200, lr: float | None = None,
                 train: Literal["projector", "full"] = "projector", init: Literal["random", "svd"] = "svd",
                 ema_decay: float = 0.9, k: int = 5,
                 samples: int = 4, steps: int = 7, distance: float = 3.0, classifier: str | None = None,
                 measure_n: int = 64, module: str | None = None, attributes: dict[str, int] | None = None):
        """
        Args:
            layer: the replaced linear layer's name in G (default: the first latent-reading one, as SeFa's).
            rank: the projector's rank (number of directions; the paper's diag_size 10).
            finetune_steps: G steps of fine-tuning (the paper: about 1% of the original training).
            lr: learning rate of the fine-tuning (default: the run's optim.g_lr / d_lr).
            train: projector (only U and V learn, the paper's default) or full (all of G).
            init: svd (the projector starts as the top-`rank` singular subspaces of the trained layer, W = U_r V_r^T:
                the SVD start the authors' code has commented out) or random (U, V ~ N(0, 0.05^2), the authors' code;
                at a CPU budget of fine-tuning its directions barely beat random ones, docs/benchmarks.md).
            ema_decay: G_ema's decay during the fine-tuning (the edits are rendered with G_ema).
            k, samples, steps, distance: as SeFa's (directions shown, rows, columns, largest |alpha|).
            classifier, measure_n, module, attributes: as SeFa's (attribute change per unit step vs random).
        """
        super().__init__(k=k, samples=samples, steps=steps, distance=distance, classifier=classifier,
                         measure_n=measure_n, module=module, attributes=attributes)
        self.layer, self.train, self.init = layer, train, init
        self.rank = check_int(rank, "explore householder: rank", minimum=1)
        self.finetune_steps = check_int(finetune_steps, "explore householder: finetune_steps", minimum=1)
        if lr is not None and not lr > 0:
            raise GanforgeError(f"explore householder: lr must be > 0, got {lr}")
        if not 0 <= ema_decay < 1:
            raise GanforgeError(f"explore householder: ema_decay must be in [0, 1), got {ema_decay}")
        self.lr, self.ema_decay = lr, float(ema_decay)

    def check(self, G: torch.nn.Module) -> None:
        super().check(G)
        run_dir_of(G, "explore householder")

    def run(self, G: torch.nn.Module, out_dir: Path, *, progress: bool, seed: int, device: str) -> dict[str, Any]:
        where = "explore householder"
        space = "w" if is_style_based(G) else "z"
        dim = G.w_dim if space == "w" else G.z_dim
        name = self.layer or first_latent_layer(G).names[0]
        find_linear(G, name, dim, where)  # bad names fail before the run is rebuilt
        with tempfile.TemporaryDirectory(prefix="householder-") as scratch, torch.enable_grad():
            trainer = self._trainer(run_dir_of(G, where), Path(scratch), seed, device)
            projector = self._install(trainer, name, dim, seed, where)
            losses = self._finetune(trainer, progress)
            G_ft = trainer.G_ema.eval()
        proj = dict(G_ft.named_modules())[name]
        with torch.no_grad():
            dirs = proj.directions().detach().cpu()
            sv = torch.linalg.svdvals(proj.weight.detach().double().cpu())
            q = proj.q_v().detach().double().cpu()
            z, y = row_latents(G_ft, self.samples, seed)
            k = min(self.k, self.rank)
            for i in tqdm(range(k), desc="householder edits", disable=not progress, leave=False):
                x = self.edit(G_ft, z, y, dirs[i], space, device)
                save_png(render_grid(G_ft, x, ncol=self.steps), out_dir / f"direction-{i:02d}.png")
        from safetensors.torch import save_file

        save_file({k_: v.detach().cpu().contiguous() for k_, v in proj.state_dict().items()},
                  str(out_dir / "projector.safetensors"), metadata={"layer": name, "rank": str(self.rank)})
        return {"space": space, "layer": name, "rank": self.rank, "train": self.train,
                "finetune_steps": self.finetune_steps, "trained_parameters": projector,
                "losses_first": losses[0], "losses_last": losses[-1],
                "orthogonality_error": float((q @ q.t() - torch.eye(len(q), dtype=q.dtype)).abs().max()),
                "singular_values": sv[: self.rank + 2], "directions": dirs[:k],
                **self.measure(G_ft, dirs[:k], space, seed, device)}

    def _trainer(self, run: Path, scratch: Path, seed: int, device: str):
        from ..config import load_config
        from ..training.trainer import Trainer

        overrides = [f"seed={seed}", f"train.init_from={run}", f"train.steps={self.finetune_steps}",
                     f"train.ema_decay={self.ema_decay}", "train.ema_start=0", f"train.device={device}",
                     "train.tensorboard=false", "train.report=false", "eval.every=0"]
        cfg = load_config(run / "config.yaml", overrides)
        return Trainer(cfg, scratch / "finetune", progress=False)

    def _install(self, trainer, name: str, dim: int, seed: int, where: str) -> int:
        """Swap the layer for a projector in G and G_ema (same start) and re-make G's optimizer; its parameter count."""
        from ..training.phases import lazy_ratio, make_optimizer

        old = find_linear(trainer.G, name, dim, where)
        weight = old.weight
        bias = getattr(old, "bias", None)
        bias = bias if isinstance(bias, torch.Tensor) else None
        if self.init == "svd":
            proj = HouseholderProjector.from_weight(weight, self.rank, bias).to(weight.device)
        else:
            proj = HouseholderProjector(weight.shape[1], weight.shape[0], self.rank, bias,
                                        generator=torch.Generator().manual_seed(seed)).to(weight.device)
        replace_module(trainer.G, name, proj)
        ema = copy.deepcopy(proj)  # G_ema starts where G does
        replace_module(trainer.G_ema, name, ema)
        o = trainer.cfg.optim
        params = list(proj.parameters()) if self.train == "projector" else list(trainer.G.parameters())
        trainer.opt["G"] = make_optimizer(params, self.lr or o.g_lr, o.betas, o.eps, lazy_ratio(trainer.phases, "G"))
        if self.lr is not None:
            trainer.opt["D"] = make_optimizer(trainer.D.parameters(), self.lr, o.betas, o.eps,
                                              lazy_ratio(trainer.phases, "D"))
        return sum(p.numel() for p in params)

    def _finetune(self, trainer, progress: bool) -> list[dict[str, float]]:
        losses = []
        for _ in tqdm(range(self.finetune_steps), desc="householder fine-tune", disable=not progress, leave=False):
            losses.append(trainer.train_step())
        return losses
