"""Sweeps: accuracy over n_clusters x scope (the paper's Figures 7/8), resumable, with a plot.

``sweep(...)`` returns (and writes to ``out_dir/sweep.json``) a plain dict::

    {"source": str, "task": str, "n_train": int, "n_test": int, "image_size": int | None,
     "options": {ClusterConfig fields shared by every row}, "seconds": float,
     "rows": [{"scope": "fp32", "k": None, "top1", "top5", "top1_ci95", "top5_ci95", "n", "bytes"},
              {"scope": "layer", "k": 16, "label": "layer k=16", "top1", "top5", "top1_ci95", "top5_ci95",
               "drop_top1", "drop_top1_ci95" (paired, same test examples), "n", "bytes", "sqnr_db",
               "seconds", "config": {...}}, ...]}

(fidelity tasks have ``fidelity`` / ``fidelity_min`` instead of top1/top5). Finished rows are
reused from an existing sweep.json of the same source, task and settings unless ``fresh``.
"""
from __future__ import annotations

import json
import os
import time

from ..clustering.config import ClusterConfig
from ..errors import WclustError
from ..atomic import atomic_write_json

SHARED_OPTIONS = ("bits", "group_size", "outliers", "channel_scale", "weighting", "error_feedback", "exclude",
                  "include", "min_size")


def sweep(source, task, ks=(16, 32, 64, 128, 256), scopes=("layer", "model"), out_dir: str | None = None, *,
          quick: bool = False, fresh: bool = False, options: dict | None = None, variants: list | None = None,
          n_train: int | None = None, n_test: int | None = None, image_size: int | None = None,
          tokenizer: str | None = None, batch_size: int = 64, fisher_examples: int = 64,
          progress: bool = True, compute: str = "fp32") -> dict:
    """Score the float model ``source`` (source string or nn.Module) clustered at every (scope, k).

    ``compute``: what the clustered layers compute in (evaluate.COMPUTE): fp32 scores the dense
    view of each clustered model (the same math), the others run the kernels themselves.

    ``options``: ClusterConfig fields applied to every row (e.g. {"outliers": 0.001}).
    ``variants``: extra rows, each a dict of ClusterConfig fields plus an optional "label".
    """
    from tqdm.auto import tqdm

    from .evaluate import COMPUTE, QUICK, Evaluator, cluster_copy, dist_context, hf_dir, is_text, with_compute
    from ..sources.models import load_source
    from .tasks import Task, get_task

    start = time.perf_counter()
    if compute not in COMPUTE:
        raise WclustError(f"compute must be one of {', '.join(COMPUTE)}, got {compute!r}")
    options = dict(options or {})
    bad = set(options) - set(SHARED_OPTIONS)
    if bad:
        raise WclustError(f"unknown sweep option(s) {sorted(bad)}; allowed: {', '.join(SHARED_OPTIONS)}")
    configs = [(f"{s} k={k}", ClusterConfig(n_clusters=int(k), scope=s, **options)) for s in scopes for k in ks]
    for v in variants or []:
        v = dict(v)
        label = v.pop("label", None)
        cfg = ClusterConfig(**v)
        configs.append((label or f"{cfg.scope} k={cfg.n_clusters} {v}", cfg))
    name = source if isinstance(source, str) else getattr(source, "wclust_source", {}).get("zoo", type(source).__name__)
    model = load_source(source) if isinstance(source, str) else source
    if not isinstance(task, Task):
        sizes = dict(QUICK) if quick else {"n_train": 5000, "n_test": 2000}
        sizes.update({k: v for k, v in (("n_train", n_train), ("n_test", n_test)) if v is not None})
        task = get_task(task, modality="text" if is_text(model) else "image", **sizes)
    ev = Evaluator(model, task, image_size=image_size, tokenizer=tokenizer or hf_dir(source), batch_size=batch_size,
                   progress=progress)
    rank = dist_context()[0]
    header = {"source": name, "task": task.name, "n_train": len(task.split("train")), "n_test": len(ev.test),
              "image_size": ev.encoder.image_size if ev.encoder.modality != "text" else None, "options": options}
    if compute != "fp32":  # an fp32 sweep's header stays as before (its finished rows are reused)
        header["compute"] = compute
    path = os.path.join(out_dir, "sweep.json") if out_dir else None
    done = {}
    if path and not fresh and os.path.isfile(path):
        try:
            with open(path) as f:
                old = json.load(f)
            if {k: old.get(k) for k in header} == json.loads(json.dumps(header)):
                done = {r["key"]: r for r in old.get("rows", []) if r.get("key")}
        except (OSError, ValueError, KeyError, TypeError):
            done = {}
    stats: dict = {}   # calibration statistics, computed once per kind for every row that needs them

    def calibrated(cfg):
        from .evaluate import input_hessians_for, weighting_statistics
        if cfg.weighting not in stats:
            stats[cfg.weighting] = weighting_statistics(model, cfg.weighting, ev, fisher_examples)
        if cfg.error_feedback and "hessians" not in stats:
            stats["hessians"] = input_hessians_for(model, ev, fisher_examples)
        return stats[cfg.weighting], stats["hessians"] if cfg.error_feedback else None

    fp32 = dict(ev.fp32, scope="fp32", k=None, label="fp32")
    result = dict(header, rows=[fp32], seconds=0.0)
    bar = tqdm(total=len(configs), desc="sweep", unit="model", disable=not progress or rank != 0)
    for label, cfg in configs:
        key = json.dumps(cfg.to_dict(), sort_keys=True)
        row = done.get(key)
        if row is None:
            bar.set_postfix_str(label)
            t0 = time.perf_counter()
            sw, hs = calibrated(cfg)
            clustered = cluster_copy(model, cfg, ev, sample_weights=sw, hessians=hs)
            row = ev.score(with_compute(clustered, compute), kernel=compute != "fp32")
            row.update(scope=cfg.scope, k=cfg.n_clusters, label=label, key=key, config=cfg.to_dict(),
                       sqnr_db=clustered.wclust_info["stats"]["sqnr_db"], seconds=time.perf_counter() - t0)
            del clustered
        result["rows"].append(row)
        bar.update(1)
        if path and rank == 0:
            result["seconds"] = time.perf_counter() - start
            atomic_write_json(path, result, indent=2)
    bar.close()
    result["seconds"] = time.perf_counter() - start
    if out_dir and rank == 0:
        atomic_write_json(path, result, indent=2)
        try:
            plot_sweep(result, os.path.join(out_dir, "sweep.png"))
        except ImportError:
            pass
    return result


def plot_sweep(result: dict, path: str) -> str:
    """Top-1 and top-5 (or fidelity) vs n_clusters, one line per scope, fp32 as a dashed reference."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import figures

    rows = result["rows"]
    fp32 = next((r for r in rows if r.get("scope") == "fp32"), None)
    metrics = ["fidelity"] if fp32 and "fidelity" in fp32 else [m for m in ("top1", "top5") if fp32 and m in fp32]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    series: dict[str, list] = {}
    for r in rows:
        if r.get("scope") != "fp32" and r.get("label") == f"{r['scope']} k={r['k']}":
            series.setdefault(r["scope"], []).append(r)
    for ax, m in zip(axes[0], metrics):
        for scope, rs in series.items():
            rs = sorted(rs, key=lambda r: r["k"])
            ax.errorbar([r["k"] for r in rs], [r[m] for r in rs], yerr=[r.get(f"{m}_ci95", 0) for r in rs],
                        marker="o", capsize=3, label=f"per {scope}" if scope != "model" else "whole model")
        ax.axhline(fp32[m], color="k", ls="--", lw=1, label=f"fp32 ({fp32[m]:.1f})")
        ax.set_xscale("log", base=2)
        ks = sorted({r["k"] for rs in series.values() for r in rs})
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("number of clusters")
        ax.set_ylabel({"top1": "top-1 (%)", "top5": "top-5 (%)", "fidelity": "mean cosine to fp32"}[m])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{result.get('source')} on {result.get('task')} (n={fp32.get('n') if fp32 else '?'})")
    fig.tight_layout()
    return figures.save(fig, path, dpi=120)
