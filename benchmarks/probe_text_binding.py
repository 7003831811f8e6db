"""Does a `damsm` text encoder bind attributes to the right shape? Held-out shapes-captions, one pretraining.

For each two-shape test image whose two shapes differ in an attribute (colour, shape or size), the image vector's
cosine with its true first caption is compared with its cosine with the same caption after swapping that attribute
between the two shapes ("a small red circle above a large blue square" -> "... blue circle above ... red square"):
the fraction where the true caption wins, per attribute (0.5 = the encoder ignores which shape has which attribute).
Also the image -> text top-1 among 100 (the true caption vs 99 random others). Pretraining CPU minutes included.

    python benchmarks/probe_text_binding.py [--steps 2000] [--batch-size 64] [--resolution 16]
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from ganforge.data.shapes_captioned import noun_phrase, parse_caption
from ganforge.registries import DATASETS, load_all
from ganforge.text.damsm import DAMSMTextEncoder


def swapped(caption: str, key: str) -> str | None:
    """`caption` with attribute `key` exchanged between its two shapes; None for one shape or equal values."""
    attrs = parse_caption(caption)
    if attrs["relation"] is None or attrs["shapes"][0][key] == attrs["shapes"][1][key]:
        return None
    a, b = attrs["shapes"]
    a2, b2 = {**a, key: b[key]}, {**b, key: a[key]}
    first, second = noun_phrase(a), noun_phrase(b)
    head, _, tail = caption.partition(first)  # the first noun phrase precedes the second in every template
    return head + noun_phrase(a2) + tail.replace(second, noun_phrase(b2), 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--resolution", type=int, default=16)
    a = p.parse_args()
    load_all()
    torch.set_num_threads(1)
    data = {"resolution": a.resolution}
    train = DATASETS.build("shapes-captions", {**data, "n": 10000}, split="train", cache_dir=None)
    test = DATASETS.build("shapes-captions", {**data, "n": 2000}, split="test", cache_dir=None)
    c0 = time.process_time()
    enc = DAMSMTextEncoder(captions=train.caption_texts, dataset=train, steps=a.steps, batch_size=a.batch_size)
    out = {"steps": a.steps, "batch_size": a.batch_size, "pretrain_cpu_min": (time.process_time() - c0) / 60}
    caps = [test.captions(i)[0] for i in range(len(test))]
    with torch.no_grad():
        v = F.normalize(enc.encode_images(test.info.modality.to_model(test.get_batch(torch.arange(len(test)))[0])),
                        dim=1)
        e = F.normalize(enc(caps).sentence.float(), dim=1)
        sim = v @ e.t()
        g, hits = torch.Generator().manual_seed(0), []
        for i in range(len(caps)):
            d = torch.randperm(len(caps) - 1, generator=g)[:99]
            hits.append(bool(sim[i, i] > sim[i, d + (d >= i).long()].max()))
        out["img2txt_top1_of_100"] = sum(hits) / len(hits)
        for key in ("colour", "shape", "size"):
            pairs = [(i, s) for i, c in enumerate(caps) if (s := swapped(c, key)) is not None]
            idx = torch.tensor([i for i, _ in pairs])
            alt = F.normalize(enc([s for _, s in pairs]).sentence.float(), dim=1)
            out[f"binds_{key}"] = float(((v[idx] * e[idx]).sum(1) > (v[idx] * alt).sum(1)).double().mean())
            out[f"n_{key}"] = len(pairs)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
