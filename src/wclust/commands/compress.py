"""wclust compress SOURCE -k K --scope S -o OUT.wclust [--bits B] [--json]"""
from __future__ import annotations

import os
import warnings

from .common import (add_cluster_options, check_output_path, config_from_args, print_json, print_table,
                     require_float_source)


def register(sub) -> None:
    p = sub.add_parser("compress", help="cluster a model's weights and save a .wclust file")
    p.add_argument("source", help="zoo:NAME, hf:DIR, timm:NAME[:WEIGHTS]")
    add_cluster_options(p)
    p.add_argument("-o", "--output", required=True, help="output .wclust file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import compress, io
    from ..errors import WclustError
    from ..models import load_source

    require_float_source(args.source, "compress")
    out = check_output_path(args.output, ".wclust")
    config = config_from_args(args)
    model = load_source(args.source)
    with warnings.catch_warnings():  # reported below as the error it is for this command
        warnings.filterwarnings("ignore", message="wclust.compress: no layer matched")
        compress(model, config)
    if not io.clustered_modules(model):
        raise WclustError("no layer matched the config: nothing to save")
    io.save(model, out)
    s = dict(io.model_stats(model))
    s["bytes_file"] = os.path.getsize(out)
    s["compression_ratio"] = s["bytes_fp32"] / s["bytes_file"]
    s["sqnr_db"] = model.wclust_info["stats"]["sqnr_db"]
    s["seconds"] = model.wclust_info["stats"]["seconds"]
    s.update(source=args.source, output=out, n_clusters=config.n_clusters, scope=config.scope)
    if args.json:
        print_json(s)
    else:
        print_table(s)
    return 0
