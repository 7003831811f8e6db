"""Class-conditional benchmark: every D-side conditioning method on digits (10 classes) and stacked digits (1,000).

Protocol (issue 8): one architecture and one budget for every method — an SN-DCGAN (spectral norm in D), cBN in G
(as StudioGAN's conditional configs), hinge loss (MH-GAN: its own multi-hinge loss), Adam 2e-4 (0, 0.9), batch 64,
`--steps` G steps, 3 seeds; each method's own defaults (weights, temperatures, margins) from its paper / StudioGAN
config. Each run's G_ema is scored with labels drawn uniformly:
- digits (16 px): FID, intra-FID and per-class coverage on the `digits-classifier` backbone against the training
  split; class consistency (`class_acc`: the classifier's top-1 on generated images vs the labels they were made
  with); CAS (a probe trained on generated features, tested on the held-out test split) with the real-data probe's
  accuracy as baseline; coverage.
- stacked digits (8 px): the same on `stacked-digits-classifier` (the digits classifier per channel: 1,000-way),
  plus the 1,000-mode coverage of the Stacked-MNIST protocol (modes, KL to uniform); the reference sets are 10,000
  triples of each split (not the 60,000 of the training set). Intra-FID is left out here: with
  1,000 classes each class has ~10 generated samples and its FID would be dominated by bias.
CPU minutes are the training process's (one thread).

    python benchmarks/bench_conditioning.py [--datasets digits,stacked-digits] [--methods pd,ac,...] [--seeds 0,1,2]
                                            [--steps 2000] [--jobs 2] [--out runs/bench-conditioning] [--report]
    python benchmarks/bench_conditioning.py --text [--seeds 0,1] [--steps N] [--out runs/bench-text]

Text (`--text`): the `shapes-text` preset (procedural shapes with captions generated from the drawn attributes) is
trained per seed; its G_ema draws one image for the first caption of each of 2,000 held-out (test split) images,
and the bundled attribute classifier judges whether each image shows what its caption says (per attribute, their
mean, and all at once). The classifier's own accuracy on the real held-out renders is reported next to it, and
R-precision (text/retrieval.py: the classifier's description of each image retrieves its caption among 100, in the
run's text-encoder space; chance 0.01) for generated and for real images. Accuracy alone would reward one perfect
image per caption, so two more figures watch realism and diversity: `attr_fid`, the Frechet distance between the
2,000 samples and the 2,000 real renders in the attribute classifier's hidden features, and `pos_spread_fake` /
`pos_spread_real`, the spread (std, px) of the shape's position over the one-shape captions.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_pool import run_all, table  # noqa: E402

BASE = {
    "model": {"name": "dcgan", "z_dim": 64, "g_ch": 16, "d_ch": 16, "d_sn": True},
    "conditioning": {"g": {"name": "cbn"}},
    "loss": {"name": "hinge"},
    "optim": {"g_lr": 2e-4, "d_lr": 2e-4, "betas": [0.0, 0.9]},
    "train": {"batch_size": 64, "ema_decay": 0.999, "log_every": 100, "sample_every": 0, "ckpt_every": 0,
              "mode_every": 0, "tensorboard": False, "threads": 1},
}
DATASETS = {  # data section, evaluation backbone, generated samples, metrics against the training split
    "digits": ({"name": "digits", "resolution": 16}, "digits-classifier", 2000, "fid,ifid,prdc,prdc-class"),
    "stacked-digits": ({"name": "stacked-digits", "resolution": 8}, "stacked-digits-classifier", 10000, "fid,prdc"),
}
# reference sets smaller than the training set where the full one makes evaluation slow (CAS's probe on 60k x 384
# features and 1,000 classes): 10,000 stacked triples per split (10 per class)
REFERENCE_SIZE = {"stacked-digits": {"n": 10000}}
# method -> (D head, loss): the head brings the method's own term (AC's CE, 2C, ...); MH-GAN replaces the loss
METHODS = {
    "pd": ({"name": "projection"}, None),
    "ac": ({"name": "ac"}, None),
    "ac-mod": ({"name": "ac-mod"}, None),
    "tac": ({"name": "tac"}, None),
    "adc": ({"name": "adc"}, None),
    "2c": ({"name": "2c"}, None),
    "d2d-ce": ({"name": "d2d-ce"}, None),
    "mh": ({"name": "mh"}, {"name": "multi-hinge"}),
}
KEYS = ("fid", "ifid", "class_acc", "cas", "cas_real", "gan_test", "coverage", "class_coverage", "modes", "kl",
        "train_cpu_min")


def conditioning_config(dataset: str, method: str, seed: int, steps: int) -> dict:
    cfg = copy.deepcopy(BASE)
    head, loss = METHODS[method]
    cfg["seed"] = seed
    cfg["data"] = dict(DATASETS[dataset][0])
    cfg["conditioning"]["d"] = dict(head)
    if loss is not None:
        cfg["loss"] = dict(loss)
    cfg["train"]["steps"] = steps
    return cfg


# ------------------------------------------------------------------------------------------------ one run (child)
def run_child(spec: dict) -> dict:
    """Train one configuration and evaluate it (inside its own process)."""
    import torch

    from ganforge.config import from_dict
    from ganforge.metrics.evaluate import evaluate
    from ganforge.registries import DATASETS as DATA, load_all
    from ganforge.sampling import generate
    from ganforge.training.export import load_generator
    from ganforge.training.trainer import train

    torch.set_num_threads(1)
    out = Path(spec["out"])
    shutil.rmtree(out, ignore_errors=True)
    cfg = from_dict(spec["config"])
    t0, c0 = time.perf_counter(), time.process_time()
    train(cfg, out, progress=False)
    result = {"train_wall_min": (time.perf_counter() - t0) / 60, "train_cpu_min": (time.process_time() - c0) / 60}
    load_all()
    data, backbone, n, metrics = DATASETS[spec["dataset"]]
    options = {k: v for k, v in data.items() if k != "name"}
    refs = {**options, **REFERENCE_SIZE.get(spec["dataset"], {})}
    train_set = DATA.build(data["name"], refs, split="train", cache_dir=None)
    test_set = DATA.build(data["name"], refs, split="test", cache_dir=None)
    common = {"backbone": backbone, "n": n, "progress": False}
    result.update(evaluate(out / "export", train_set, metrics=metrics + ",class-acc", **common))
    result.update({k: v for k, v in evaluate(out / "export", test_set, metrics="cas", **common).items()
                   if k not in ("n", "n_ref")})
    if spec["dataset"] == "stacked-digits":  # the Stacked-MNIST protocol: 1,000-mode coverage at uniform labels
        G = load_generator(out / "export")
        labels = torch.arange(26000) % 1000
        result.update(train_set.mode_metrics(generate(G, 26000, seed=0, labels=labels)))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return result


def run_text_child(spec: dict) -> dict:
    """Train the text preset and judge its samples with the attribute classifier (inside its own process)."""
    import torch

    from ganforge.config import load_config
    from ganforge.data.shapes_attributes import (attribute_fid, caption_attribute_accuracy, describe,
                                                 load_shapes_classifier, position_spread, to_classifier_input)
    from ganforge.text.retrieval import text_r_precision
    from ganforge.registries import DATASETS as DATA, load_all
    from ganforge.sampling import generate
    from ganforge.training.export import load_generator, load_text_encoder
    from ganforge.training.trainer import train

    torch.set_num_threads(1)
    out = Path(spec["out"])
    shutil.rmtree(out, ignore_errors=True)
    # an empty cache: what the run builds before training (the damsm encoder's pretraining) counts in its CPU time
    os.environ["GANFORGE_CACHE"] = str(out.parent / f"{out.name}-cache")
    shutil.rmtree(os.environ["GANFORGE_CACHE"], ignore_errors=True)
    cfg = load_config(spec["preset"], spec["overrides"])
    t0, c0 = time.perf_counter(), time.process_time()
    train(cfg, out, progress=False)
    result = {"train_wall_min": (time.perf_counter() - t0) / 60, "train_cpu_min": (time.process_time() - c0) / 60}
    load_all()
    options = {k: v for k, v in cfg.data.options.items() if k in ("resolution",)}
    test = DATA.build(cfg.data.name, {**options, "n": 2000}, split="test", cache_dir=None)
    captions = [test.captions(i)[0] for i in range(len(test))]
    clf = load_shapes_classifier(test.info.shape[-1])
    real = test.get_batch(torch.arange(len(test)))[0]
    result.update({f"clf_{k}": v for k, v in caption_attribute_accuracy(clf, real, captions).items()})
    G, encoder = load_generator(out / "export"), load_text_encoder(out / "export")
    with torch.no_grad():
        e = torch.cat([encoder(captions[i:i + 256]).sentence.float() for i in range(0, len(captions), 256)])
    fake = generate(G, len(captions), seed=0, labels=e)
    result.update({f"attr_{k}": v for k, v in caption_attribute_accuracy(clf, fake, captions).items()})
    # what accuracy alone does not see: realism / diversity, and whether single shapes still move around
    result["attr_fid"] = attribute_fid(clf, fake, real)
    single = torch.tensor([test.attributes(i)["relation"] is None for i in range(len(test))])
    result["pos_spread_fake"], result["pos_spread_real"] = position_spread(fake[single]), position_spread(real[single])

    def encode(texts):
        return torch.cat([encoder(list(texts[i:i + 256])).sentence.float() for i in range(0, len(texts), 256)])

    for which, images in (("fake", fake), ("real", real)):  # R-precision in the run's own text-encoder space
        said = describe(clf.predict(to_classifier_input(images)))
        result[f"r_precision_{which}"] = text_r_precision(encode, said, captions, captions)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    shutil.rmtree(os.environ["GANFORGE_CACHE"], ignore_errors=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default="runs/bench-conditioning")
    p.add_argument("--report", action="store_true", help="print the table of the runs done so far; run nothing")
    p.add_argument("--text", action="store_true", help="the text-to-image benchmark instead (shapes-text preset)")
    p.add_argument("--variant", default="", help="--text: a name for the runs and dotted overrides of the preset, "
                                                 "e.g. 'dfgan:conditioning.g.name=dfgan'")
    a = p.parse_args()
    if a.child:
        spec = json.loads(a.child)
        print(json.dumps(run_text_child(spec) if "preset" in spec else run_child(spec)))
        return
    if a.text:
        return text_main(a)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    specs = []
    for dataset in a.datasets.split(","):
        if dataset not in DATASETS:
            raise SystemExit(f"--datasets: unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
        for method in a.methods.split(","):
            if method not in METHODS:
                raise SystemExit(f"--methods: unknown method {method!r}; choose from {', '.join(METHODS)}")
            for seed in (int(s) for s in a.seeds.split(",")):
                key = f"{dataset}-{method}-seed{seed}"
                specs.append({"key": key, "dataset": dataset, "method": method, "seed": seed, "out": str(out / key),
                              "config": conditioning_config(dataset, method, seed, a.steps)})
    rows = run_all(__file__, specs, out, a.jobs, report_only=a.report)
    for dataset in a.datasets.split(","):
        mine = [r for r in rows if r["dataset"] == dataset]
        keys = tuple(k for k in KEYS if any(k in r for r in mine))
        print(f"\n{dataset}\n" + table(mine, ("method",), keys))


def text_main(a) -> None:
    out = Path(a.out if a.out != "runs/bench-conditioning" else "runs/bench-text")
    out.mkdir(parents=True, exist_ok=True)
    specs = []
    for seed in (int(s) for s in a.seeds.split(",")):
        overrides = [f"seed={seed}", "train.sample_every=0", "train.ckpt_every=0", "train.tensorboard=false"]
        if a.steps != 2000:  # the default budget is the preset's own
            overrides.append(f"train.steps={a.steps}")
        name, _, extra = a.variant.partition(":")
        overrides += [o for o in extra.split(",") if o]
        key = f"text-{name}-seed{seed}" if name else f"text-seed{seed}"
        specs.append({"key": key, "variant": name or "preset", "seed": seed, "out": str(out / key),
                      "preset": "shapes-text", "overrides": overrides})
    rows = run_all(__file__, specs, out, a.jobs, report_only=a.report)
    keys = tuple(k for k in rows[0] if k.startswith(("attr_", "clf_", "r_precision", "pos_"))) if rows else ()
    print(table([{"variant": "preset", **r} for r in rows], ("variant",), (*keys, "train_cpu_min")))


if __name__ == "__main__":
    main()
