"""wclust compress SOURCE -k K --scope S -o OUT.wclust [--bits B] [--task T --error-feedback] [--json]"""
from __future__ import annotations

import os
import warnings

from .common import (add_cluster_options, check_output_path, check_task, config_from_args, needs_calibration,
                     print_json, print_table, require_float_source, warn_unmatched_patterns)


def register(sub) -> None:
    p = sub.add_parser("compress", help="cluster a model's weights and save a .wclust file")
    p.add_argument("source", help="a float model: zoo:NAME, hf:DIR, timm:NAME[:WEIGHTS], arch:NAME")
    add_cluster_options(p)
    p.add_argument("--task", default=None,
                   help="calibration data for --weighting activation / --error-feedback: the first <= 64 evenly "
                        "spaced examples of this task's train split (as eval and sweep use)")
    p.add_argument("--image-size", type=int, default=None, help="input size in px of the calibration images")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory of a text model (if not known)")
    p.add_argument("-o", "--output", required=True, help="output .wclust file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..clustering.compress import compress
    from ..clustering import io
    from ..clustering.modules import clustered_modules
    from ..errors import WclustError
    from ..sources.models import load_source

    require_float_source(args.source, "compress")
    out = check_output_path(args.output, ".wclust")
    config = config_from_args(args)
    if config.weighting == "fisher":
        raise WclustError("--weighting fisher needs the task's probe: use it with eval or sweep "
                          "(or --weighting activation here)")
    if needs_calibration(args) and not args.task:
        raise WclustError("--weighting activation / --error-feedback need --task (calibration examples)")
    if args.task:
        check_task(args.task)
    model = load_source(args.source)
    warn_unmatched_patterns(model, args)
    sw = hs = None
    if needs_calibration(args):
        from ..accuracy.evaluate import Calibration, calibrate, hf_dir, is_text
        from ..accuracy.tasks import get_task
        task = get_task(args.task, modality="text" if is_text(model) else "image")
        calib = Calibration(model, task, image_size=args.image_size, tokenizer=args.tokenizer or hf_dir(args.source))
        sw, hs = calibrate(model, config, calib)
    with warnings.catch_warnings():  # reported below as the error it is for this command
        warnings.filterwarnings("ignore", message="wclust.compress: no layer matched")
        compress(model, config, sample_weights=sw, hessians=hs)
    if not clustered_modules(model):
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
