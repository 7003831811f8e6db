"""`ganforge eval SOURCE --ref REF`: FID/KID/IS/PRDC/... with the one protocol of `ganforge.evaluate`.

Output: one line per result, metric values first, then the sample counts actually used (`n`, and `n_ref` when there
is a reference); `--json FILE` writes the same results as an object, plus `protocol` (what was requested):
    {"fid": 12.3, ..., "n": 40, "n_ref": 10000,
     "protocol": {"backbone": ..., "n": 500, "n_ref": null, "seed": 0, "source": ..., "ref": ..., "metrics": [...],
                  "sampler": null}}
`--sampler drs` (or `ddls:steps=100`, ...) draws the generated images through a sampling-time method that uses the
run's exported D (`ganforge list samplers`); DRS adds `acceptance_rate` to the results.
`n` can be smaller than `--n` (an image set with fewer images is evaluated on all it has, with a warning); metrics
warn when N is below what they need to mean much, and fail when they are undefined at that N.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import GanforgeError
from .commands import SAMPLER_HELP, _writable_dir, check_device


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run, export or image folder (FID, KID, IS, PRDC, ...)",
                       description="SOURCE: run dir, export dir or image folder. REF: dataset name, preset/config, "
                                   "image folder or saved statistics file (.safetensors from --save-ref, or .npz "
                                   "with mu/sigma). Prints each result, then n and n_ref: the source and reference "
                                   "samples actually used (an image set smaller than --n is evaluated on all it has, "
                                   "with a warning).")
    p.add_argument("source")
    p.add_argument("--ref", help="reference set (not needed for IS alone; mode metrics default to a run's own data)")
    p.add_argument("--metrics", default="fid", help="comma-separated metric names (`ganforge list metrics`), each "
                                                    "with optional options: kid:subsets=50:subset_size=500")
    p.add_argument("--sampler", default=None, help=SAMPLER_HELP)
    p.add_argument("--backbone", default="inception-fid")
    p.add_argument("--weights", help="local weights file for the backbone (offline use)")
    p.add_argument("--resize", help="resize protocol: tf-bilinear, clean or torch-bilinear")
    p.add_argument("--n", type=int, default=None, help="images to generate (default 50000) or to take from an "
                                                       "image set (default: all of them)")
    p.add_argument("--n-ref", type=int, default=None, help="reference images (default: all)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", dest="json_out", help="write the results as JSON here: every result key, n (source "
                                                  "samples used), n_ref (reference samples used; absent without a "
                                                  "reference) and protocol (what was requested: backbone, n, n_ref, "
                                                  "seed, source, ref, metrics)")
    p.add_argument("--save-ref", help="also save the reference features to this .safetensors file")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the reference cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from ..metrics.cache import save_features
    from ..metrics.evaluate import COUNT_KEYS, Evaluator, build_metrics, parse_metrics

    for flag, value in (("--n", args.n), ("--n-ref", args.n_ref), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise GanforgeError(f"{flag}: expected a positive number, got {value}")
    check_device(args.device)
    metrics = parse_metrics(args.metrics)
    ref = args.ref
    if ref is None and any(getattr(m, "on_samples", False) for m in build_metrics(metrics)):
        ref = _run_data(args.source)  # mode metrics of a run: against the data it was trained on
    for flag, value in (("--json", args.json_out), ("--save-ref", args.save_ref)):
        if value:  # checked before evaluating, so a bad path does not waste the evaluation
            _writable_dir(Path(value).parent, flag)
    ev = Evaluator(ref, metrics, args.backbone, args.weights, args.resize, args.n_ref, args.batch_size,
                   args.device, args.seed, progress=not args.no_progress, use_cache=not args.no_cache,
                   sampler=args.sampler)
    results = ev(args.source, args.n)
    if args.save_ref:
        if ev.real is None:
            raise GanforgeError("--save-ref: these metrics use no reference features")
        save_features(ev.real, args.save_ref)
    for k, v in results.items():
        print(f"{k:10s} {v:d}" if k in COUNT_KEYS else f"{k:10s} {v:.6g}")
    if args.json_out:
        backbone = ev.backbone.protocol_id() if ev.backbone is not None else None
        payload = {**results, "protocol": {"backbone": backbone, "n": args.n, "n_ref": args.n_ref, "seed": args.seed,
                                           "source": args.source, "ref": args.ref, "metrics": metrics,
                                           "sampler": args.sampler}}
        Path(args.json_out).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


def _run_data(source: str) -> dict | None:
    """The data section a run / export was trained on (from export/config.json), or None."""
    from ..training.export import find_export, read_export_config

    try:
        return read_export_config(find_export(source)).get("data")
    except GanforgeError:
        return None
