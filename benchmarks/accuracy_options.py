"""What rescues few clusters: k=16 (or -k) options scored with the frozen probe, plus per-layer analysis.

    python benchmarks/accuracy_options.py zoo:dinov2-s --task fashion-mnist -o OUT.json [--subset 1000]
        [--only LABEL ...] [--ablation] [--sqnr]

Writes OUT.json (resumable: finished rows are kept): one row per option with top1/top5, drop vs
fp32 with a paired 95% interval on the same test examples, bytes and SQNR; ``--sqnr`` adds the
SQNR of every layer kind (q/k/v/o/fc1/fc2...) at per-layer and whole-model k; ``--ablation``
clusters one layer kind at a time (everything else fp32) to show which layers cost accuracy.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

import torch

import wclust
from wclust.accuracy.evaluate import Evaluator, cluster_copy, is_text
from wclust.clustering.io import atomic_write_json
from wclust.sources.models import load_source
from wclust.clustering.modules import ClusteredModule
from wclust.accuracy.tasks import get_task


def options(k: int) -> dict:
    return {
        f"layer k={k}": dict(n_clusters=k, scope="layer"),
        f"model k={k}": dict(n_clusters=k, scope="model"),
        f"layer k={k} outliers 0.1%": dict(n_clusters=k, scope="layer", outliers=0.001),
        f"layer k={k} outliers 0.5%": dict(n_clusters=k, scope="layer", outliers=0.005),
        f"layer k={k} fisher": dict(n_clusters=k, scope="layer", weighting="fisher"),
        f"layer k={k} fisher + outliers 0.1%": dict(n_clusters=k, scope="layer", weighting="fisher", outliers=0.001),
        f"layer k={k} fisher + outliers 0.5%": dict(n_clusters=k, scope="layer", weighting="fisher", outliers=0.005),
        f"model k={k} fisher + outliers 0.5%": dict(n_clusters=k, scope="model", weighting="fisher", outliers=0.005),
        f"layer k={k} activation-weighted": dict(n_clusters=k, scope="layer", weighting="fisher", act=True),
        f"layer k={k} activation-weighted + outliers 0.5%": dict(n_clusters=k, scope="layer", weighting="fisher",
                                                                 act=True, outliers=0.005),
        f"layer k={k} activation-weighted + outliers 1%": dict(n_clusters=k, scope="layer", weighting="fisher",
                                                               act=True, outliers=0.01),
        f"group-64 k={k} activation-weighted + outliers 0.5%": dict(n_clusters=k, scope="group", group_size=64,
                                                                    weighting="fisher", act=True, outliers=0.005),
        f"group-32 k={k} activation-weighted + outliers 0.5%": dict(n_clusters=k, scope="group", group_size=32,
                                                                    weighting="fisher", act=True, outliers=0.005),
        f"group-64 k={k} activation-weighted + outliers 1%": dict(n_clusters=k, scope="group", group_size=64,
                                                                  weighting="fisher", act=True, outliers=0.01),
        f"model k={k} activation-weighted + outliers 0.5%": dict(n_clusters=k, scope="model", weighting="fisher",
                                                                 act=True, outliers=0.005),
        f"layer k={k} channel scales": dict(n_clusters=k, scope="layer", channel_scale=True),
        f"layer k={k} channel scales + outliers 0.1%": dict(n_clusters=k, scope="layer", channel_scale=True,
                                                           outliers=0.001),
        f"group-64 k={k}": dict(n_clusters=k, scope="group", group_size=64),
        f"group-64 k={k} + outliers 0.1%": dict(n_clusters=k, scope="group", group_size=64, outliers=0.001),
        f"model k={k} outliers 0.1%": dict(n_clusters=k, scope="model", outliers=0.001),
        f"model k={k} fisher": dict(n_clusters=k, scope="model", weighting="fisher"),
        f"layer k={k} linear only": dict(n_clusters=k, scope="layer", types=("linear",)),
        f"group-64 k={k} linear only": dict(n_clusters=k, scope="group", group_size=64, types=("linear",)),
        f"layer k={k} linear only + outliers 0.1%": dict(n_clusters=k, scope="layer", types=("linear",),
                                                        outliers=0.001),
        # error-feedback (GPTQ-style) assignment, alone and with the options above
        f"layer k={k} error feedback": dict(n_clusters=k, scope="layer", error_feedback=True),
        f"model k={k} error feedback": dict(n_clusters=k, scope="model", error_feedback=True),
        f"layer k={k} activation": dict(n_clusters=k, scope="layer", weighting="activation"),
        f"layer k={k} activation + error feedback": dict(n_clusters=k, scope="layer", weighting="activation",
                                                        error_feedback=True),
        f"layer k={k} outliers 0.5% + error feedback": dict(n_clusters=k, scope="layer", outliers=0.005,
                                                           error_feedback=True),
        f"group-64 k={k} + error feedback": dict(n_clusters=k, scope="group", group_size=64, error_feedback=True),
        f"group-64 k={k} + outliers 0.1% + error feedback": dict(n_clusters=k, scope="group", group_size=64,
                                                                outliers=0.001, error_feedback=True),
        f"group-64 k={k} activation + outliers 0.5% + error feedback": dict(
            n_clusters=k, scope="group", group_size=64, weighting="activation", outliers=0.005, error_feedback=True),
        f"group-64 k={k} activation + outliers 1% + error feedback": dict(
            n_clusters=k, scope="group", group_size=64, weighting="activation", outliers=0.01, error_feedback=True),
        f"layer k={k} activation + outliers 0.5% + error feedback": dict(
            n_clusters=k, scope="layer", weighting="activation", outliers=0.005, error_feedback=True),
    }


def layer_kind(fqn: str) -> str:
    return re.sub(r"\.\d+\.", ".*.", fqn)


def sqnr_by_kind(reference, clustered) -> dict:
    sig, err = {}, {}
    for fqn, m in clustered.named_modules():
        if isinstance(m, ClusteredModule) and not getattr(m, "tied_to", None):
            w = reference.get_submodule(fqn).weight.detach().float()
            d = m.dequantize(torch.float32) - w
            kind = layer_kind(fqn)
            sig[kind] = sig.get(kind, 0.0) + float(w.pow(2).sum())
            err[kind] = err.get(kind, 0.0) + float(d.pow(2).sum())
    return {k: 10 * torch.log10(torch.tensor(sig[k] / err[k])).item() if err[k] else float("inf") for k in sig}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source")
    p.add_argument("--task", required=True)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("-k", type=int, default=16)
    p.add_argument("--subset", type=int, default=None, help="score only the first N test examples")
    p.add_argument("--only", nargs="*", default=None, help="labels to run (default: all)")
    p.add_argument("--ablation", action="store_true")
    p.add_argument("--sqnr", action="store_true")
    p.add_argument("--image-size", type=int, default=None)
    args = p.parse_args(argv)

    model = load_source(args.source)
    task = get_task(args.task, modality="text" if is_text(model) else "image")
    ev = Evaluator(model, task, image_size=args.image_size)
    if args.subset:
        ev = ev.subset(args.subset)
    out = {"source": args.source, "task": task.name, "n_test": len(ev.test), "fp32": ev.fp32, "rows": {}}
    if os.path.isfile(args.output):
        with open(args.output) as f:
            old = json.load(f)
        if old.get("n_test") == out["n_test"] and old.get("task") == out["task"]:
            out["rows"] = old.get("rows", {})
            out.update({k: v for k, v in old.items() if k in ("sqnr_by_kind", "ablation")})

    def save():
        atomic_write_json(args.output, out, indent=2)

    fisher_cache = {}
    todo = options(args.k)
    if args.only is not None:
        todo = {k: todo[k] for k in args.only if k in todo}     # in the order given
    for label, cfg in todo.items():
        if label in out["rows"]:
            continue
        t0 = time.perf_counter()
        sw = hs = None
        cfg = dict(cfg)
        if cfg.pop("act", False) or cfg.get("weighting") == "activation":
            if "act" not in fisher_cache:
                from wclust.accuracy.fisher import activation_weights
                fisher_cache["act"] = activation_weights(model, ev)
            sw = fisher_cache["act"]
        elif cfg.get("weighting") == "fisher":
            if "fw" not in fisher_cache:
                from wclust.accuracy.fisher import fisher_weights
                fisher_cache["fw"] = fisher_weights(model, ev)
            sw = fisher_cache["fw"]
        if cfg.get("error_feedback"):
            if "hessians" not in fisher_cache:
                from wclust.accuracy.fisher import input_hessians
                fisher_cache["hessians"] = input_hessians(model, ev)
            hs = fisher_cache["hessians"]
        c = cluster_copy(model, wclust.ClusterConfig(**cfg), ev, sample_weights=sw, hessians=hs)
        row = ev.score(c)
        row.update(sqnr_db=c.wclust_info["stats"]["sqnr_db"], seconds=time.perf_counter() - t0, config=cfg)
        out["rows"][label] = row
        print(f"{label:<42} top1 {row['top1']:6.2f}  drop {row['drop_top1']:+6.2f} +- {row['drop_top1_ci95']:.2f}"
              f"  {row['bytes'] / 1e6:6.2f} MB  {row['sqnr_db']:5.1f} dB  {row['seconds']:.0f}s", flush=True)
        save()
    if args.sqnr and "sqnr_by_kind" not in out:
        out["sqnr_by_kind"] = {s: sqnr_by_kind(model, cluster_copy(model, wclust.ClusterConfig(args.k, scope=s)))
                               for s in ("layer", "model")}
        save()
    if args.ablation:
        kinds = sorted({layer_kind(n) for n, m in cluster_copy(model, wclust.ClusterConfig(args.k)).named_modules()
                        if isinstance(m, ClusteredModule)})
        out.setdefault("ablation", {})
        for scope in ("layer",):
            for kind in kinds:
                label = f"{scope} k={args.k} only {kind}"
                if label in out["ablation"]:
                    continue
                c = cluster_copy(model, wclust.ClusterConfig(args.k, scope=scope, include=[kind]))
                row = ev.score(c)
                out["ablation"][label] = {"top1": row["top1"], "drop_top1": row["drop_top1"],
                                          "drop_top1_ci95": row["drop_top1_ci95"]}
                print(f"{label:<60} drop {row['drop_top1']:+6.2f} +- {row['drop_top1_ci95']:.2f}", flush=True)
                save()
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
