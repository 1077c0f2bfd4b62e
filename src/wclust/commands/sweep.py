"""wclust sweep SOURCE --task TASK -k 16 32 64 128 256 --scope layer model -o DIR [--json]"""
from __future__ import annotations

import os

from .common import (add_cluster_options, check_output_dir, check_task, exclude_from_args, print_json,
                     require_float_source)
from .eval import add_task_options


def register(sub) -> None:
    p = sub.add_parser("sweep", help="accuracy over numbers of clusters x scopes; writes DIR/sweep.json + sweep.png")
    p.add_argument("source", help="a float model: zoo:NAME, hf:DIR, timm:NAME[:WEIGHTS], arch:NAME")
    add_cluster_options(p, k_many=True)
    add_task_options(p)
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--fresh", action="store_true", help="recompute every row (default: reuse finished rows)")
    p.add_argument("--compute", choices=["fp32", "bf16", "bf16-model", "int8"], default="fp32",
                   help="what the clustered layers compute in (bf16, int8: the kernels run themselves)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..clustering.config import ClusterConfig
    from ..accuracy.evaluate import dist_context
    from ..accuracy.sweeps import sweep

    require_float_source(args.source, "sweep")
    check_task(args.task)
    options = {"bits": args.bits, "group_size": args.group_size, "outliers": args.outliers,
               "channel_scale": args.channel_scale, "weighting": args.weighting}
    exclude = exclude_from_args(args)
    if exclude is not None:
        options["exclude"] = exclude
    if args.include:
        options["include"] = args.include
    if args.error_feedback:   # only when asked, so sweeps without it keep resuming from older sweep.json files
        options["error_feedback"] = True
    for k in args.n_clusters:   # bad k, --bits or options: refused before the output directory is made
        for scope in args.scope:
            ClusterConfig(n_clusters=k, scope=scope, **options)
    out = check_output_dir(args.output)  # removed again if the run fails while it is empty (cli._run)
    result = sweep(args.source, args.task, args.n_clusters, args.scope, out, quick=args.quick, fresh=args.fresh,
                   options=options, n_train=args.n_train, n_test=args.n_test, image_size=args.image_size,
                   tokenizer=args.tokenizer, batch_size=args.batch_size, progress=True, compute=args.compute)
    if dist_context()[0] != 0:
        return 0
    if args.json:
        print_json(result)
        return 0
    for line in table(result):
        print(line)
    print(f"wrote {os.path.join(out, 'sweep.json')} and sweep.png ({result['seconds']:.0f} s)")
    return 0


def table(result: dict) -> list[str]:
    """The rows of a sweep result as text lines; "-" where a row has no value (fp32's SQNR, top-5 of < 5 classes)."""
    def num(v, width):
        return f"{'-':>{width}}" if v is None or v != v else f"{v:>{width}.2f}"

    metric = "fidelity" if "fidelity" in result["rows"][0] else "top1"
    lines = [f"{'row':<18}{metric:>9}{'top5':>8}{'+-':>6}{'drop':>7}{'MiB':>8}{'sqnr dB':>9}"]
    for r in result["rows"]:
        lines.append(f"{r['label']:<18}{num(r[metric], 9)}{num(r.get('top5'), 8)}{num(r.get(f'{metric}_ci95', 0), 6)}"
                     f"{num(r.get('drop_top1', 0), 7)}{num(r['bytes'] / 2**20, 8)}{num(r.get('sqnr_db'), 9)}")
    return lines
