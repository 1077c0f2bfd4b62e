"""Host model check: predicted (wclust.performance.platforms 'host') vs measured latency of the fp32 and the
clustered model, at 1 and 2 threads. Prints JSON. Never fitted: the host numbers come from
``measure_host`` (a copy, a torch.mm, a small op, a dequantize), not from these models.

The machine may be shared: each repetition measures the host *now* (``measure_host``), then
times the fp32 and the clustered model, interleaved; the table gives medians over repetitions,
of the prediction from those numbers ("now") and from the cached best-seen numbers ("best").
With 1 thread, times are this thread's CPU time (other processes disturb it much less); the wall
time is reported beside it.

    python benchmarks/host_model.py [SOURCE] [-k 64] [--repeats 5] [--threads 1 2]
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys

import torch


def main(argv=None) -> int:
    import wclust
    from wclust.sources import models
    from wclust.performance import platforms
    from wclust.performance.profile import time_forward, trace_ops

    p = argparse.ArgumentParser()
    p.add_argument("source", nargs="?", default="arch:vit-b16")
    p.add_argument("-k", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args(argv)

    model = models.load_source(args.source)
    inputs = models.example_inputs(model, 1)
    records = trace_ops(model, inputs)
    clustered = wclust.compress(copy.deepcopy(model), wclust.ClusterConfig(n_clusters=args.k, scope="layer"))
    mem_bits = 4 if (args.k - 1).bit_length() <= 4 else 8  # in-memory index width of the clustered modules
    configs = (("fp32", model, None, None), (f"k={args.k}", clustered, args.k, mem_bits))
    rows = []
    for t in args.threads:
        torch.set_num_threads(t)
        clock = "cpu" if t == 1 else "wall"
        for _, m, _, _ in configs:
            time_forward(m, inputs, 1)
        res = {name: {"now": [], "meas": [], "wall": []} for name, *_ in configs}
        for _ in range(args.repeats):
            spec_now = platforms.host_spec(platforms.measure_host(t), t)
            for name, m, k, bits in configs:
                res[name]["now"].append(platforms.predict(records, spec_now, k, bits)["time_s"])
                res[name]["meas"].append(time_forward(m, inputs, 1, clock, warmup=False))
                res[name]["wall"].append(time_forward(m, inputs, 1, warmup=False))
        best = platforms.calibrate_host(t, force=True)
        for name, m, k, bits in configs:
            r = res[name]
            meas = statistics.median(r["meas"])
            now = statistics.median(r["now"])
            pred_best = platforms.predict(records, best, k, bits)["time_s"]
            errs = [100.0 * (a - b) / b for a, b in zip(r["now"], r["meas"])]
            rows.append({"threads": t, "model": name, "clock": clock, "measured_ms": 1e3 * meas,
                         "measured_wall_ms": 1e3 * statistics.median(r["wall"]),
                         "predicted_now_ms": 1e3 * now, "error_now_pct": statistics.median(errs),
                         "predicted_best_ms": 1e3 * pred_best, "error_best_pct": 100.0 * (pred_best - meas) / meas})
    json.dump({"source": args.source, "k": args.k, "index_bits_in_memory": mem_bits, "repeats": args.repeats,
               "rows": rows}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
