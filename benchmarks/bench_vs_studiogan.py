"""CPU training-step throughput: ganforge's SNGAN / SAGAN / BigGAN / StyleGAN2 at 32 px against PyTorch-StudioGAN's code.

    python benchmarks/bench_vs_studiogan.py --studiogan /path/to/PyTorch-StudioGAN/src
        [--family sngan|sagan|biggan|stylegan2]
        [--modes fp32,cl,bf16,bf16+cl] [--rounds 7] [--steps-per-round 5] [--warmup 3] [--threads N]
        [--studiogan-mode same|fp32] [--json OUT]

`--family` picks StudioGAN's configs/CIFAR10/{SNGAN,SAGAN,BigGAN,StyleGAN2}.yaml and the matching ganforge model
(FAMILIES below); the parameter counts of both sides are asserted equal. What follows describes the SNGAN case; SAGAN
adds self-attention after G block 2 / D block 1 and SN in G, BigGAN is StudioGAN's big_resnet (z 80, shared embedding
128, hierarchical z, widths 96 x 4) against ganforge's `biggan` with g=shared. StyleGAN2 is StudioGAN's stylegan2.py
(cAdaIN mapping input, SPD D head, 2 mapping layers, 512 channels, 'orig' D, mbstd group 32, no conv clamp in fp32),
built by its models/model.py with its EmaStylegan2 updated after each G step, logistic loss and its lazy-rescaled Adam,
against ganforge's preset model (configs/cifar10-stylegan2.yaml, conv_clamp off as StudioGAN's fp32 build) with
concat + spd and the non-saturating (vanilla) loss; the lazy R1 step (every 16th D step in both codebases) is timed on
neither side: both time the plain D + G step.

Both sides: SNGAN ResNet, 3x32x32, 10 classes, z_dim 128, G 256 wide with conditional BN, D 128 wide with spectral
norm and a projection head, hinge loss, batch 64, Adam lr 2e-4 betas (0.5, 0.999), train mode, 1 D step per G step.
ganforge: `Trainer.train_step()` on `digits` (32 px, RGB, 10 classes). StudioGAN: its `configs/CIFAR10/SNGAN.yaml`
through its `config.Configurations` (MODULES, losses, Adam) and `models/resnet.py`, stepped as `worker.py` does
(`make_GAN_trainable`, `toggle_grad`, BN tracking, `sample.generate_images` with fresh z and labels; D on reals then
fakes, `LOSS.d_loss`, backward, Adam; fresh z and labels, D on fakes, `LOSS.g_loss`, backward, Adam) on random batches
of the same digits. Left as they are: ganforge's step also updates an EMA copy of G (StudioGAN's SNGAN config has no
EMA), and StudioGAN's SNGAN config trains with 5 D steps per G step (timed here 1:1, as ganforge's `optim.d_steps: 1`).

Modes, the same on both sides (memory format checked on both): fp32; cl (ganforge `train.channels_last`, always passed
explicitly where it exists; StudioGAN's models and image inputs in torch.channels_last); bf16 (torch.autocast('cpu',
bfloat16) around forwards and losses; ganforge `train.amp: bf16`); bf16+cl. StudioGAN's `RUN.mixed_precision`
(torch.cuda.amp) stays off.
Protocol: per mode, build both sides, `--warmup` steps each, then `--rounds` rounds of `--steps-per-round` steps of each
side back to back (which side goes first alternates by round); reported: medians of per-round img/s and of per-round
ratios ganforge / StudioGAN.

StudioGAN is imported from `--studiogan` at run time; no StudioGAN code lives here. Its utility modules import packages
at import time that its SNGAN step never uses; any of these that does not import gets a stand-in in sys.modules first:
torchvision (.datasets, .utils, .transforms: CIFAR loaders, save_image), seaborn and matplotlib (plots), kornia
(.filters: SimCLR augmentation), requests (dnnlib's URL downloads, imported by the StyleGAN ops). A stand-in's attributes are functions that raise when called. `pkg_resources` (its
`parse_version` gates StyleGAN ops at import) is stood in by `packaging.version.parse`, which pkg_resources re-exports.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import inspect
import json
import statistics
import sys
import tempfile
import time
import types
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

MODES: dict[str, tuple[bool, bool]] = {"fp32": (False, False), "cl": (True, False), "bf16": (False, True),
                                       "bf16+cl": (True, True)}  # name -> (channels_last, bf16 autocast)
BATCH, NUM_CLASSES = 64, 10
@dataclasses.dataclass(frozen=True)
class Family:
    yaml: str  # StudioGAN's config under configs/CIFAR10
    methods: tuple[str, str, str]  # its (backbone, g_cond_mtd, d_cond_mtd)
    model: dict[str, Any]  # ganforge's model section
    conditioning: dict[str, Any]  # ganforge's conditioning section
    loss: tuple[str, str] = ("hinge", "hinge")  # (StudioGAN adv_loss, ganforge loss)
    optim: tuple[float, float, tuple[float, float]] = (2e-4, 2e-4, (0.5, 0.999))  # ganforge g_lr, d_lr, betas
    style: bool = False  # StudioGAN's StyleGAN path: models/model.py builds G (mapping + synthesis), D and its EMA


FAMILIES: dict[str, Family] = {
    "sngan": Family("SNGAN.yaml", ("resnet", "cBN", "PD"), {"name": "resnet"},
                    {"g": {"name": "cbn"}, "d": {"name": "projection"}}),
    "sagan": Family("SAGAN.yaml", ("resnet", "cBN", "PD"),
                    {"name": "sagan", "g_sn": True, "d_sn": True, "attn_g": [2], "attn_d": [1]},
                    {"g": {"name": "cbn"}, "d": {"name": "projection"}}),
    "biggan": Family("BigGAN.yaml", ("big_resnet", "cBN", "PD"),
                     {"name": "biggan", "z_dim": 80, "g_ch": 96, "d_ch": 48, "attn_res": 16},  # D 4 x 48 = its 2 x 96
                     {"g": {"name": "shared", "dim": 128, "sn": True}, "d": {"name": "projection"}}),
    # configs/cifar10-stylegan2.yaml's model with conv_clamp off: StudioGAN clamps only under mixed precision
    "stylegan2": Family("StyleGAN2.yaml", ("stylegan2", "cAdaIN", "SPD"),
                        {"name": "stylegan2", "z_dim": 512, "w_dim": 512, "mapping_layers": 2, "channel_base": 32768,
                         "g_ch": 512, "d_ch": 512, "mixing_prob": 0.0, "mbstd_group": 32, "d_architecture": "orig",
                         "conv_clamp": None},
                        {"g": {"name": "concat"}, "d": {"name": "spd"}}, loss=("logistic", "vanilla"),
                        optim=(0.002, 0.0025, (0.0, 0.99)), style=True),
}
STAND_INS = ("torchvision", "torchvision.datasets", "torchvision.utils", "torchvision.transforms", "seaborn",
             "matplotlib", "matplotlib.pyplot", "kornia", "kornia.filters", "requests")


def install_stand_ins() -> list[str]:
    """Put stand-ins into sys.modules for the listed packages that do not import here; return their names."""
    def getattr_(attr: str, module: str) -> Callable[..., Any]:
        if attr.startswith("__"):  # __file__, __path__, ...: a plain module without them
            raise AttributeError(attr)

        def unavailable(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"{module}.{attr}: stand-in from bench_vs_studiogan.py (package not importable here)")
        return unavailable

    installed: list[str] = []
    for name in STAND_INS:
        try:
            importlib.import_module(name)
            continue
        except Exception:  # noqa: BLE001 -- missing or broken install: either way StudioGAN cannot import it
            pass
        mod = types.ModuleType(name)
        mod.__getattr__ = functools.partial(getattr_, module=name)  # type: ignore[attr-defined]
        sys.modules[name] = mod
        if "." in name:
            setattr(sys.modules[name.rsplit(".", 1)[0]], name.rsplit(".", 1)[1], mod)
        installed.append(name)
    try:
        importlib.import_module("pkg_resources")
    except Exception:  # noqa: BLE001
        from packaging.version import parse
        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse)  # type: ignore[assignment]
        installed.append("pkg_resources (parse_version = packaging.version.parse)")
    return installed


class NotSupported(Exception):
    pass


def channels_last_of(net: nn.Module) -> bool:
    """Whether the net's first 3x3 conv weight (SN: the stored original) is in channels-last memory format."""
    w = next(p for p in net.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] > 1)
    return w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()


class GanforgeSide:
    """ganforge's Trainer on the family's CIFAR-shaped recipe (hinge, batch 64); one step = `Trainer.train_step()`."""

    def __init__(self, run_dir: str, channels_last: bool, bf16: bool, family: str = "sngan"):
        from ganforge.config import TrainConfig, from_dict
        from ganforge.training.distributed import DistInfo
        from ganforge.training.trainer import Trainer

        train: dict[str, Any] = {"batch_size": BATCH, "amp": "bf16" if bf16 else "none", "tensorboard": False}
        if "channels_last" in {f.name for f in dataclasses.fields(TrainConfig)}:
            train["channels_last"] = channels_last  # always explicit: its default (None) lets the family choose
        elif channels_last:
            raise NotSupported("this ganforge has no train.channels_last")
        f = FAMILIES[family]
        g_lr, d_lr, betas = f.optim
        cfg = from_dict({"data": {"name": "digits", "resolution": 32, "channels": 3}, "model": f.model,
                         "conditioning": f.conditioning, "loss": {"name": f.loss[1]}, "regularizers": [],
                         "optim": {"g_lr": g_lr, "d_lr": d_lr, "betas": list(betas)}, "train": train})
        assert cfg.optim.d_steps == 1 and cfg.data.options.get("resolution") == 32
        self.tr = Trainer(cfg, run_dir, progress=False, dist=DistInfo(), device=torch.device("cpu"))
        assert self.tr.parts.num_classes == NUM_CLASSES and tuple(self.tr.dataset.info.shape) == (3, 32, 32)
        self.G, self.D = self.tr.G, self.tr.D

    def step(self) -> None:
        self.tr.train_step()


class StudioGANSide:
    """StudioGAN's family config (configs/CIFAR10/<F>.yaml, models/<backbone>.py), stepped like its worker.py."""

    def __init__(self, src: Path, reals: torch.Tensor, reals_y: torch.Tensor, channels_last: bool, bf16: bool,
                 family: str = "sngan"):
        if str(src) not in sys.path:
            sys.path.insert(0, str(src))
        config, self.misc = importlib.import_module("config"), importlib.import_module("utils.misc")
        f = FAMILIES[family]
        c = config.Configurations(str(src / "configs" / "CIFAR10" / f.yaml))
        c.update_cfgs({"mixed_precision": False, "langevin_sampling": False, "truncation_cutoff": None}, super="RUN")
        c.define_losses()
        M, D = c.MODEL, c.DATA
        assert (M.backbone, M.g_cond_mtd, M.d_cond_mtd, c.LOSS.adv_loss) == (*f.methods, f.loss[0])
        self.sample, net = importlib.import_module("utils.sample"), importlib.import_module(f"models.{M.backbone}")
        assert (D.img_size, D.num_classes, M.z_dim, c.OPTIMIZATION.batch_size) == \
            (32, NUM_CLASSES, f.model.get("z_dim", 128), BATCH)
        torch.manual_seed(0)
        self.style, self.mapping, self.synthesis, self.ema = f.style, None, None, None
        if f.style:  # its own builder (models/model.py): G with mapping + synthesis, D, G_ema and its EmaStylegan2
            build_all = importlib.import_module("models.model").load_generator_discriminator
            self.G, self.mapping, self.synthesis, self.D, _, _, _, self.ema = build_all(
                DATA=D, OPTIMIZATION=c.OPTIMIZATION, MODEL=M, STYLEGAN=c.STYLEGAN, MODULES=c.MODULES, RUN=c.RUN,
                device="cpu", logger=None)
        else:
            def build(cls: type) -> nn.Module:  # as models/model.py: every MODEL.<arg>, plus the DATA / RUN ones
                kw = {k: getattr(M, k) for k in inspect.signature(cls).parameters if hasattr(M, k)}
                return cls(**kw, img_size=D.img_size, num_classes=D.num_classes, mixed_precision=False,
                           MODULES=c.MODULES, MODEL=M)
            self.G, self.D = build(net.Generator), build(net.Discriminator)  # sizes: check_same_size asserts them
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.G, self.D = self.G.to(memory_format=self.memory_format), self.D.to(memory_format=self.memory_format)
        c.define_optimizer(self.G, self.D)  # StudioGAN's Adam (for StyleGAN2 with its lazy-regularization rescale)
        self.cfg, self.reals, self.reals_y, self.bf16 = c, reals, reals_y, bf16  # uint8 images, int64 labels
        self.steps = 0

    def _fakes(self, update_emas: bool) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.cfg
        fake, y = self.sample.generate_images(
            z_prior=c.MODEL.z_prior, truncation_factor=-1.0, batch_size=BATCH, z_dim=c.MODEL.z_dim,
            num_classes=c.DATA.num_classes, y_sampler="totally_random", radius=c.LOSS.radius, generator=self.G,
            discriminator=self.D, is_train=True, LOSS=c.LOSS, RUN=c.RUN, MODEL=c.MODEL, device="cpu",
            is_stylegan=self.style, generator_mapping=self.mapping, generator_synthesis=self.synthesis,
            style_mixing_p=c.STYLEGAN.style_mixing_p, stylegan_update_emas=update_emas, cal_trsp_cost=False)[:2]
        return fake.contiguous(memory_format=self.memory_format), y

    def step(self) -> None:
        c, misc, opt = self.cfg, self.misc, self.cfg.OPTIMIZATION
        # D step (worker.train_discriminator): G frozen, its BN statistics untracked, real batch, fresh z and labels
        misc.make_GAN_trainable(self.G, None, self.D)
        misc.toggle_grad(model=self.G, grad=False, num_freeze_layers=-1, is_stylegan=self.style)
        misc.toggle_grad(model=self.D, grad=True, num_freeze_layers=-1, is_stylegan=self.style)
        self.G.apply(misc.untrack_bn_statistics)
        idx = torch.randint(0, len(self.reals), (BATCH,))
        real = self.reals[idx].float().div(127.5).sub(1.0).contiguous(memory_format=self.memory_format)
        opt.d_optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            fake, y_fake = self._fakes(update_emas=True)
            d_real = self.D(real, self.reals_y[idx])["adv_output"]
            d_fake = self.D(fake, y_fake)["adv_output"]
            d_loss = c.LOSS.d_loss(d_real, d_fake, DDP=False)
        d_loss.backward()
        opt.d_optimizer.step()
        # G step (worker.train_generator): D frozen, fresh z and labels
        misc.make_GAN_trainable(self.G, None, self.D)
        misc.toggle_grad(model=self.D, grad=False, num_freeze_layers=-1, is_stylegan=self.style)
        misc.toggle_grad(model=self.G, grad=True, num_freeze_layers=-1, is_stylegan=self.style)
        self.G.apply(misc.track_bn_statistics)
        opt.g_optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            fake, y_fake = self._fakes(update_emas=False)
            g_loss = c.LOSS.g_loss(self.D(fake, y_fake)["adv_output"], DDP=False)
        g_loss.backward()
        opt.g_optimizer.step()
        self.steps += 1
        if self.ema is not None:  # worker.py: G_ema after every G step (StyleGAN2's config: half-life 500 kimg)
            self.ema.update(self.steps)


def check_same_size(gf: GanforgeSide, sg: StudioGANSide) -> dict[str, Any]:
    """Print, and assert, equal parameter counts; also buffer sizes and parameter shapes up to transposition."""
    def counts(m: nn.Module) -> tuple[int, int, Counter]:
        shapes = Counter(tuple(sorted(p.shape)) for p in m.parameters())
        return sum(p.numel() for p in m.parameters()), sum(b.numel() for b in m.buffers()), shapes

    out: dict[str, Any] = {}
    for net in ("G", "D"):
        (p1, b1, s1), (p2, b2, s2) = counts(getattr(gf, net)), counts(getattr(sg, net))
        print(f"{net}: parameters ganforge {p1:,} / StudioGAN {p2:,}; buffer elements (BN stats, SN u/v) "
              f"ganforge {b1:,} / StudioGAN {b2:,}; parameter shapes equal up to transposition: {s1 == s2}")
        if s1 != s2:
            print(f"   only ganforge: {dict(s1 - s2)}; only StudioGAN: {dict(s2 - s1)}")
        out[net] = {"ganforge_params": p1, "studiogan_params": p2, "ganforge_buffers": b1, "studiogan_buffers": b2,
                    "shapes_match": s1 == s2}
        assert p1 == p2, f"{net} parameter counts differ: ganforge {p1} vs StudioGAN {p2}"
    return out


def timed(step: Callable[[], None], k: int) -> float:
    t0 = time.perf_counter()
    for _ in range(k):
        step()
    return k * BATCH / (time.perf_counter() - t0)


def run_mode(mode: str, src: Path, a: argparse.Namespace) -> dict[str, Any]:
    channels_last, bf16 = MODES[mode]
    sg_cl, sg_bf16, sg_mode = channels_last, bf16, mode
    if bf16 and FAMILIES[a.family].style:  # its synthesis blocks assert their dtype: fp16 layers, never autocast
        print(f"[{mode}] StudioGAN's StyleGAN2 asserts its own layer dtypes (its mixed precision is fp16 blocks, "
              f"CUDA only): its side runs fp32 in this mode, so the ratio is ganforge {mode} / StudioGAN fp32")
        sg_cl, sg_bf16, sg_mode = False, False, "fp32"
    elif a.studiogan_mode == "fp32":  # the target: ganforge's mode against StudioGAN as it ships, interleaved
        sg_cl, sg_bf16, sg_mode = False, False, "fp32"
    with tempfile.TemporaryDirectory(prefix="bench-vs-studiogan-") as run_dir:
        try:
            gf = GanforgeSide(run_dir, channels_last, bf16, a.family)
        except NotSupported as e:
            print(f"[{mode}] skipped: {e}")
            return {"mode": mode, "skipped": str(e)}
        sg = StudioGANSide(src, gf.tr.dataset.x, gf.tr.dataset.y, sg_cl, sg_bf16, a.family)  # the same digits
        sizes = check_same_size(gf, sg)
        formats = {f"{side} {net}": (channels_last_of(getattr(obj, net)), want) for side, obj, want in
                   (("ganforge", gf, channels_last), ("StudioGAN", sg, sg_cl)) for net in ("G", "D")}
        assert all(got == want for got, want in formats.values()), f"[{mode}] channels-last weights: {formats}"
        for _ in range(a.warmup):
            gf.step()
            sg.step()
        rows: list[tuple[float, float]] = []  # (ganforge img/s, StudioGAN img/s) per round
        for r in range(a.rounds):
            if r % 2 == 0:
                g, s = timed(gf.step, a.steps_per_round), timed(sg.step, a.steps_per_round)
            else:
                s, g = timed(sg.step, a.steps_per_round), timed(gf.step, a.steps_per_round)
            rows.append((g, s))
            print(f"[{mode}] round {r}: ganforge {g:.1f} img/s, StudioGAN {s:.1f} img/s, ratio {g / s:.3f}", flush=True)
    g_rates, s_rates, ratios = [g for g, _ in rows], [s for _, s in rows], [g / s for g, s in rows]
    return {"mode": mode, "studiogan_mode": sg_mode, "ganforge_img_s": statistics.median(g_rates),
            "studiogan_img_s": statistics.median(s_rates),
            "ratio": statistics.median(ratios), "rounds": {"ganforge": g_rates, "studiogan": s_rates, "ratio": ratios},
            "params": sizes}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--studiogan", required=True, type=Path, help="the src/ folder of a PyTorch-StudioGAN checkout")
    p.add_argument("--family", default="sngan", choices=sorted(FAMILIES))
    p.add_argument("--modes", default="fp32,cl,bf16,bf16+cl")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps-per-round", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    p.add_argument("--studiogan-mode", choices=("same", "fp32"), default="same",
                   help="StudioGAN's side in each mode: the same mode, or always fp32 (the rounds then interleave "
                        "ganforge's mode with StudioGAN as it ships, the comparison the >= 3x target is about)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    modes = a.modes.split(",")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        p.error(f"--modes: unknown {unknown}; choose from {', '.join(MODES)}")
    src = a.studiogan.resolve()
    if not (src / "models" / "resnet.py").is_file() or not (src / "configs" / "CIFAR10" / "SNGAN.yaml").is_file():
        p.error(f"--studiogan {src}: expected StudioGAN's src/ folder (models/resnet.py, configs/CIFAR10/SNGAN.yaml)")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    print(f"CPU bf16 instructions (avx512_bf16 / AMX): {'yes' if native else 'no (bf16 is emulated)'}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; stand-ins for StudioGAN's imports: "
          f"{', '.join(install_stand_ins()) or 'none'}")
    results = [run_mode(m, src, a) for m in modes]
    if not FAMILIES[a.family].style:
        print("\nNote: ganforge's step also updates G_ema (StudioGAN's side here does not): the ratio is conservative.")
    print(f"batch {BATCH}, {a.rounds} rounds x {a.steps_per_round} steps, medians over rounds\n")
    # The target compares ganforge's recipe with StudioGAN as it ships (fp32): a cross-mode ratio of medians.
    sg_fp32 = next((r["studiogan_img_s"] for r in results if r.get("studiogan_mode") == "fp32"), None)
    print("| mode | ganforge img/s | StudioGAN img/s | ratio (same mode) | ganforge / StudioGAN fp32 |")
    print("|---|---|---|---|---|")
    for r in results:
        if "skipped" in r:
            print(f"| {r['mode']} | n/a | n/a | skipped: {r['skipped']} | |")
        else:
            base = r["studiogan_img_s"] if r["studiogan_mode"] == "fp32" else sg_fp32  # interleaved when it ran fp32
            vs = f"{r['ganforge_img_s'] / base:.2f}" if base else "-"
            same = f"{r['ratio']:.3f}" if r["studiogan_mode"] == r["mode"] else f"(StudioGAN ran {r['studiogan_mode']})"
            print(f"| {r['mode']} | {r['ganforge_img_s']:.1f} | {r['studiogan_img_s']:.1f} | {same} | {vs} |")
    if a.json is not None:
        a.json.write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                                      "batch": BATCH, "results": results}, indent=2))


if __name__ == "__main__":
    main()
