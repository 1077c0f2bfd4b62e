"""wclust's exact 1-D k-means vs scikit-learn KMeans on a transformer's weights, side by side.

Prints JSON: for each k, wall time and inertia (SSE over *all* the weights) of both, and the
ratios. scikit-learn runs on the full set where --sklearn-full-k includes k (default 16; the
design notes measured 163 s there) and on a random subsample of --sample values otherwise; its
inertia is always evaluated on the full set against its own centroids.

    python benchmarks/kmeans.py                      # arch:deit-b, 86.6M weights, k=16 full, k=256 subsample
    python benchmarks/kmeans.py --source zoo:minilm --k 16 64 256 --sklearn-full-k
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def weights_of(source: str) -> np.ndarray:
    import wclust
    from wclust.clustering.compress import find_targets

    model = wclust.load_source(source)
    cfg = wclust.ClusterConfig(256, exclude=[], min_size=0)
    parts = [t.weight.detach().to(torch.float32).reshape(-1).numpy() for t in find_targets(model, cfg)]
    return np.concatenate(parts)


def wclust_fit(x: np.ndarray, k: int) -> tuple[float, float, np.ndarray]:
    from wclust.clustering.kmeans import KMeans1D

    t = time.perf_counter()
    km = KMeans1D(k).fit(x)
    return time.perf_counter() - t, km.inertia_, km.codebook_


def full_inertia(x: np.ndarray, centroids: np.ndarray) -> float:
    from wclust.clustering.kmeans import Assigner

    return float(Assigner(np.sort(centroids.astype(np.float32)))(x)[1][1])


def sklearn_fit(x: np.ndarray, k: int, sample: int | None, seed: int) -> dict:
    from sklearn.cluster import KMeans

    data = x
    if sample is not None and sample < x.size:
        data = np.random.default_rng(seed).choice(x, sample, replace=False)
    t = time.perf_counter()
    km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(data.reshape(-1, 1).astype(np.float64))
    secs = time.perf_counter() - t
    return {"seconds": secs, "inertia": full_inertia(x, km.cluster_centers_.reshape(-1)),
            "fitted_on": int(data.size), "subsample": data.size < x.size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", default="arch:deit-b")
    ap.add_argument("--k", type=int, nargs="+", default=[16, 256])
    ap.add_argument("--sklearn-full-k", type=int, nargs="*", default=[16],
                    help="k values where scikit-learn fits the full set (others: a subsample)")
    ap.add_argument("--sample", type=int, default=1_000_000, help="subsample size for scikit-learn")
    ap.add_argument("--no-sklearn", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    x = weights_of(args.source)
    rows = []
    for k in args.k:
        secs, inertia, _ = wclust_fit(x, k)
        row = {"k": k, "wclust": {"seconds": secs, "inertia": inertia}}
        if not args.no_sklearn:
            full = k in args.sklearn_full_k
            sk = sklearn_fit(x, k, None if full else args.sample, args.seed)
            row["sklearn"] = sk
            row["speedup_vs_sklearn"] = sk["seconds"] / secs
            row["inertia_ratio_sklearn_over_wclust"] = sk["inertia"] / inertia
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"source": args.source, "n_weights": int(x.size), "threads": torch.get_num_threads(),
                      "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
