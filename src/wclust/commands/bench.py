"""wclust bench SOURCE [-k K] [--threads N] [--pressure P] [--seq-len T] [--json] [-o DIR]"""
from __future__ import annotations

import os
import sys

from ..atomic import atomic_write_json
from ..errors import WclustError
from .common import check_at_least_one, check_output_dir, print_json


def register(sub) -> None:
    p = sub.add_parser("bench", help="end-to-end latency and memory: fp32 vs int8 dynamic vs clustered (fp32/bf16)")
    p.add_argument("source", help="zoo:NAME, hf:DIR, timm:NAME, arch:NAME or a .wclust file")
    p.add_argument("-k", "--n-clusters", type=int, default=None,
                   help="codebook length (default 64); a .wclust file runs as stored")
    p.add_argument("--scope", choices=["model", "layer", "group"], default=None, help="(default layer)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--pressure", type=int, default=0, help="background memory-streaming processes")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per variant (default 20, 5 with --quick)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=None,
                   help="tokens per input of a text model (default 128); a few time what short inputs cost")
    p.add_argument("--quick", action="store_true", help="fewer repeats")
    p.add_argument("--no-memory", action="store_true", help="skip the per-variant memory subprocesses")
    p.add_argument("--no-bf16-models", action="store_true",
                   help="skip the whole-model bf16 variants (dense and clustered cast to bf16)")
    p.add_argument("--variants", nargs="+", default=None,
                   help="time only these (fp32 always): int8_dynamic clustered_fp32 clustered_bf16 clustered_int8 "
                        "dense_bf16_model clustered_bf16_model")
    p.add_argument("--clock", choices=["auto", "wall", "thread"], default="auto",
                   help="thread: CPU time of the calling thread (auto: at --threads 1; wall otherwise)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("-o", "--output-dir", default=None,
                   help="write bench.json and bench.png (every run of each variant, medians, speed-ups, memory)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..performance.bench import run_bench

    check_at_least_one(args, "threads", "batch", "repeats", "seq_len")
    if args.pressure < 0:
        raise WclustError(f"--pressure must be >= 0, got {args.pressure}")
    if str(args.source).endswith(".wclust") and (args.n_clusters is not None or args.scope is not None):
        raise WclustError("-k and --scope cluster a float model; a .wclust file is benchmarked as stored, "
                          "against its dense twin (drop them, or bench its fp32 source)")
    from ..performance.bench import default_variants

    variants, bf16_models = args.variants, not args.no_bf16_models
    if variants is None and default_variants()[0] is not None:
        variants, bf16_models = default_variants()[0], False
        print("wclust: no bf16 instructions on this CPU: the bf16 variants are left out "
              "(--variants clustered_bf16 ... times them)", file=sys.stderr)
    out_dir = check_output_dir(args.output_dir) if args.output_dir else None  # before minutes of timing
    res = run_bench(args.source, k=args.n_clusters or 64, threads=args.threads, pressure=args.pressure,
                    repeats=args.repeats, quick=args.quick, scope=args.scope or "layer", memory=not args.no_memory,
                    batch=args.batch, bf16_models=bf16_models, clock=args.clock,
                    progress=not args.json, seq_len=args.seq_len, variants=variants)
    if out_dir:
        from ..performance.bench import plot_bench

        res["files"] = [plot_bench(res, os.path.join(out_dir, "bench.png"))]
        atomic_write_json(os.path.join(out_dir, "bench.json"), res)
    if args.json:
        print_json(res)
        return 0
    stored = " (as stored; fp32 = its dense twin)" if res.get("stored") else ""
    tokens = f" seq_len={res['seq_len']}" if res.get("seq_len") else ""
    if res.get("cpu"):
        print(f"CPU: {res['cpu']}")
    print(f"{res['source']}  k={res['n_clusters']} scope={res['scope']}{stored}{tokens} threads={res['threads']} "
          f"repeats={res['repeats']} kernel={res['kernel_isa']} bf16={res.get('bf16_kernel')} "
          f"indices={res.get('index_pages')} pages clock={res['clock']}")
    cols = ["latency"] + (["pressure"] if "pressure" in res else [])
    head = f"{'variant':<22}{'median ms':>11}{'speedup':>9}{'paired':>8}{'minima':>8}"
    if "pressure" in res:
        head += f"{'ms (P=' + str(res['pressure']['workers']) + ')':>12}{'speedup':>9}"
    print(head + f"{'weights MiB':>12}{'RSS MiB':>9}{'RSS/fp32':>9}")
    for name, lat in res["latency"].items():
        line = (f"{name:<22}{lat['median_ms']:>11.2f}{lat['speedup_vs_fp32']:>8.2f}x{lat['speedup_paired']:>7.2f}x"
                f"{lat['speedup_min']:>7.2f}x")
        if "pressure" in cols:
            pl = res["pressure"]["latency"][name]
            line += f"{pl['median_ms']:>12.2f}{pl['speedup_vs_fp32']:>8.2f}x"
        mem = res["memory"][name]
        rss = mem.get("rss_mb")
        line += f"{mem['param_mb']:>12.1f}" + (f"{rss:>9.1f}{mem['rss_vs_fp32']:>8.1%}" if rss is not None else "")
        print(line)
    runs = res["latency"]["fp32"]["runs_ms"]
    if len(runs) > 1 and max(runs) > NOISY * min(runs):
        print(f"note: the fp32 runs ranged {min(runs):.1f}-{max(runs):.1f} ms: other work on this machine moved "
              f"the timings; the paired and minima columns are steadier than the medians")
    for f in res.get("files", []):
        print(f"wrote {f}")
    return 0


NOISY = 1.25  # fp32's slowest run over its fastest beyond which the table's footnote warns of noise
