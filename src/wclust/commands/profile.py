"""wclust profile SOURCE [--batch B] [--runs N] [--threads T] [--json] [-o DIR]"""
from __future__ import annotations

import os

from ..atomic import atomic_write_json
from .common import check_at_least_one, check_output_dir, print_json


def register(sub) -> None:
    p = sub.add_parser("profile", help="time per operator group and memory by kind (paper Figures 2 and 3)")
    p.add_argument("source", help="zoo:NAME, hf:DIR, timm:NAME, arch:NAME or a .wclust file")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=3, help="profiled forward passes (averaged)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--attention", choices=["eager", "as-is"], default="eager",
                   help="eager: attention products and softmax as separate ops (transformers models)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-o", "--output-dir", default=None, help="write profile.json, profile_time.png, profile_memory.png")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..performance import profile
    from ..sources.models import load_source

    check_at_least_one(args, "batch", "runs", "threads")
    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir = check_output_dir(args.output_dir) if args.output_dir else None
    model = load_source(args.source)
    result = profile.profile_model(model, batch=args.batch, runs=args.runs, attention=args.attention)
    result["source"] = args.source
    if out_dir:
        result["files"] = [profile.plot_time(result, os.path.join(out_dir, "profile_time.png")),
                           profile.plot_memory(result, os.path.join(out_dir, "profile_memory.png"))]
        atomic_write_json(os.path.join(out_dir, "profile.json"), result)
    if args.json:
        print_json(result)
        return 0
    t, pb, a = result["time"], result["params"], result["activations"]
    print(f"{args.source}: {result['model']}, batch {args.batch}, {result['threads']} thread(s), "
          f"forward {t['forward_ms']:.1f} ms (median), attention {result['attention']}")
    print(f"{'operator group':<18} {'time ms':>9} {'time %':>7} {'act MiB':>9} {'act %':>6}")
    for g in profile.GROUPS:
        print(f"{g:<18} {t['ms'][g]:>9.2f} {t['percent'][g]:>6.1f}% {a['bytes'][g] / 2**20:>9.2f} "
              f"{a['percent'][g]:>5.1f}%")
    print(f"{'parameter kind':<18} {'MiB':>9} {'%':>7}")
    for k in profile.PARAM_KINDS:
        print(f"{k:<18} {pb['bytes'][k] / 2**20:>9.2f} {pb['percent'][k]:>6.1f}%")
    print(f"peak: activations {result['peak']['activation_bytes'] / 2**20:.1f} MiB, "
          f"total {result['peak']['total_bytes'] / 2**20:.1f} MiB")
    for f in result.get("files", []):
        print(f"wrote {f}")
    return 0
