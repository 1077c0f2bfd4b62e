"""wclust estimate SOURCE --platform NAME [-k K ...] [--bits B] [--contention C] [--json] [-o DIR]"""
from __future__ import annotations

import os

from ..atomic import atomic_write_json
from .common import check_at_least_one, check_output_dir, print_json


def register(sub) -> None:
    from ..performance.platforms import DEFAULT_KS, names

    p = sub.add_parser("estimate", help="modelled speed-up and energy of clustered models per platform (Figure 9)")
    p.add_argument("source", help="zoo:NAME, hf:DIR, timm:NAME, arch:NAME or a .wclust file")
    p.add_argument("--platform", nargs="+", default=["all"], choices=names() + ["all", "paper"], metavar="NAME",
                   help=f"platform(s): {', '.join(names())}; all = every one (default); paper = the paper's three")
    p.add_argument("-k", "--n-clusters", type=int, nargs="+", default=None,
                   help=f"codebook lengths (default {' '.join(map(str, DEFAULT_KS))}, or the file's own k)")
    p.add_argument("--bits", type=int, default=None, help="index width in memory (default ceil(log2 k); the paper: 8)")
    p.add_argument("--contention", type=float, default=0.0,
                   help="share of DRAM bandwidth taken by other units (0..0.99)")
    p.add_argument("--activation-dram", type=float, default=1.0,
                   help="share of activation bytes that go to DRAM (default 1: caches ignored)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch threads for the host platform (default: torch's)")
    p.add_argument("--json", action="store_true")
    p.add_argument("-o", "--output-dir", default=None, help="write estimate.json and estimate.png")
    p.set_defaults(func=run)


def _check_codebooks(ks, bits) -> None:
    """Every k, and --bits where given, as a clustering would take them (ClusterConfig's rules)."""
    from ..clustering.config import ClusterConfig

    for k in ks:
        ClusterConfig(n_clusters=k, bits=bits)


def run(args) -> int:
    from ..performance import platforms
    from ..errors import WclustError
    from ..clustering.modules import clustered_modules
    from ..sources.models import load_source

    if not 0.0 <= args.contention < 1.0:
        raise WclustError(f"--contention must be in [0, 1), got {args.contention}")
    if not 0.0 <= args.activation_dram <= 1.0:
        raise WclustError(f"--activation-dram must be in [0, 1], got {args.activation_dram}")
    check_at_least_one(args, "batch", "threads")
    if args.n_clusters:
        _check_codebooks(args.n_clusters, args.bits)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    plats = []
    for name in args.platform:
        more = {"all": platforms.names(), "paper": list(platforms.PAPER)}.get(
            name, [name] + ([platforms.CPU_OF[name]] if name in platforms.CPU_OF else []))  # a board: GPU and CPU
        plats += [p for p in more if p not in plats]
    out_dir = check_output_dir(args.output_dir) if args.output_dir else None
    model = load_source(args.source)
    ks, bits = args.n_clusters, args.bits
    cms = clustered_modules(model)
    if ks is None:
        if cms:
            m = next(iter(cms.values()))
            ks, bits = [int(m.codebook.shape[1])], bits or m.bits
        else:
            ks = list(platforms.DEFAULT_KS)
        _check_codebooks(ks, args.bits)
    result = platforms.estimate(model, platforms=plats, ks=ks, contention=args.contention, bits=bits,
                                activation_dram=args.activation_dram, batch=args.batch)
    result["source"] = args.source
    if out_dir:
        result["files"] = [platforms.plot_estimate(result, os.path.join(out_dir, "estimate.png"))]
        atomic_write_json(os.path.join(out_dir, "estimate.json"), result)
    if args.json:
        print_json(result)
        return 0
    tot = result["totals"]
    print(f"{args.source}: {result['model']}, batch {args.batch}, {tot['flops'] / 1e9:.1f} GFLOP, "
          f"weights read {tot['weight_bytes_fp32'] / 2**20:.1f} MiB (fp32), contention {args.contention:.0%}, "
          f"index bits {bits or 'ceil(log2 k)'}")
    print(f"{'platform':<18} {'k':>4} {'fp32 ms':>9} {'speed-up':>9} {'ideal':>7} {'energy':>8} {'mem-bound':>9}")
    for name, d in result["platforms"].items():
        for k, p in d["k"].items():
            print(f"{name:<18} {k:>4} {1e3 * d['fp32']['time_s']:>9.3f} {p['speedup']:>8.3f}x "
                  f"{p['speedup_ideal']:>6.2f}x {p['energy_change_pct']:>+7.1f}% "
                  f"{100 * d['fp32']['memory_bound_share']:>8.1f}%")
    print("energy: change vs fp32 (negative = less energy); mem-bound: share of fp32 time in memory-bound ops")
    if "host" in result["platforms"]:
        from ..performance.platforms import get

        host = get("host")
        print(f"host: {host.description}; calibration: {host.sources['calibration']}")
    for f in result.get("files", []):
        print(f"wrote {f}")
    return 0
