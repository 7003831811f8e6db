"""Parameter counts of every architecture family's CIFAR-10 preset, next to the reference implementation's.

    python benchmarks/bench_params.py [--studiogan PATH/PyTorch-StudioGAN/src] [--json OUT]

Each `configs/cifar10-*.yaml` preset's G and D (backbone + head) are built exactly as training builds them (CIFAR-10's
shape 3x32x32 and its 10 classes stand in for the dataset, which needs no download for this). With `--studiogan`,
StudioGAN's own G and D for the same family are built from its configs/CIFAR10/<F>.yaml and counted too (the
families `bench_vs_studiogan.py` knows). Published counts of the other references are listed in REFERENCE below with
their source; "-" where none is published.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

# preset -> (reference, G params, D params, source); filled where the reference publishes or ships a count
REFERENCE: dict[str, tuple[str, str, str, str]] = {
    "cifar10-stylegan2": ("StudioGAN", "20,215,315", "23,089,664", "its CIFAR10/StyleGAN2 training log"),
    "cifar10-stylegan2-ada": ("StudioGAN", "20,215,315", "23,089,664", "its CIFAR10/StyleGAN2 training log"),
    "cifar10-r3gan": ("R3GAN authors' code", "20,781,952", "21,280,512",
                      "counted from its Networks.py at the CIFAR-10 preset; G differs by the class embedding's shape"),
}
# preset -> the StudioGAN config (bench_vs_studiogan.FAMILIES) with the same backbone AND conditioning
STUDIOGAN_TWIN = {"cifar10-cgan-pd": "sngan", "cifar10-sagan": "sagan", "cifar10-biggan": "biggan"}


def count(m) -> int:
    return sum(p.numel() for p in m.parameters())


def ganforge_counts(preset: Path) -> dict:
    from ganforge.config import load_config
    from ganforge.config_files import load_raw
    from ganforge.training.build import build_models

    # a frozen pretrained D network (projected) counts the same with seeded weights, and needs no download
    cfg = load_config(preset, ["model.backbone_weights=random"] if "backbone" in load_raw(preset)["model"] else [])
    info = SimpleNamespace(shape=(3, 32, 32), num_classes=10)
    G, D, k = build_models(cfg, SimpleNamespace(info=info))
    return {"preset": preset.stem, "model": cfg.model.name, "g_cond": cfg.g_cond.name, "d_head": cfg.d_head.name,
            "classes": k, "G": count(G), "D": count(D)}


def studiogan_counts(src: Path, family: str) -> tuple[int, int]:
    import bench_vs_studiogan as b
    import torch

    b.install_stand_ins()
    reals = torch.zeros(b.BATCH, 3, 32, 32, dtype=torch.uint8)
    side = b.StudioGANSide(src, reals, torch.zeros(b.BATCH, dtype=torch.long), False, False, family)
    return count(side.G), count(side.D)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--studiogan", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    from bench_vs_studiogan import FAMILIES

    presets = sorted((ROOT / "src" / "ganforge" / "configs").glob("cifar10-*.yaml"))
    rows = []
    for preset in presets:
        row = ganforge_counts(preset)
        family = STUDIOGAN_TWIN.get(preset.stem)
        if a.studiogan is not None and family in FAMILIES:
            row["studiogan_G"], row["studiogan_D"] = studiogan_counts(a.studiogan.resolve(), family)
        ref = REFERENCE.get(preset.stem)
        if ref is not None:
            row["reference"] = dict(zip(("name", "G", "D", "source"), ref))
        rows.append(row)
    print("| preset | model | G cond / D head | G params | D params | reference G / D |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ref = "-"
        if "studiogan_G" in r:
            ref = f"StudioGAN {r['studiogan_G']:,} / {r['studiogan_D']:,} (built here)"
        elif "reference" in r:
            ref = f"{r['reference']['name']} {r['reference']['G']} / {r['reference']['D']} ({r['reference']['source']})"
        print(f"| {r['preset']} | {r['model']} | {r['g_cond']} / {r['d_head']} | {r['G']:,} | {r['D']:,} | {ref} |")
    if a.json is not None:
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
