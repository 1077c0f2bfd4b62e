"""Host model check: predicted (wclust.platforms 'host') vs measured latency of the fp32 and the
clustered model, at 1 and 2 threads. Prints JSON. Timings are medians of repeated forwards on a
shared machine: noisy; the prediction is never fitted to these measurements.

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
    from wclust import models, platforms
    from wclust.profile import time_forward, trace_ops

    p = argparse.ArgumentParser()
    p.add_argument("source", nargs="?", default="arch:vit-b16")
    p.add_argument("-k", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--recalibrate", action="store_true", help="measure the host again instead of the cached numbers")
    args = p.parse_args(argv)

    model = models.load_source(args.source)
    inputs = models.example_inputs(model, 1)
    records = trace_ops(model, inputs)
    clustered = wclust.compress(copy.deepcopy(model), wclust.ClusterConfig(n_clusters=args.k, scope="layer"))
    mem_bits = 4 if (args.k - 1).bit_length() <= 4 else 8  # in-memory index width of the clustered modules
    rows = []
    for t in args.threads:
        torch.set_num_threads(t)
        spec = platforms.calibrate_host(t, force=args.recalibrate)
        pred_fp = platforms.predict(records, spec)["time_s"]
        pred_k = platforms.predict(records, spec, args.k, mem_bits)["time_s"]
        clock = "cpu" if t == 1 else "wall"  # 1 thread: CPU time of this thread, robust to other jobs
        fp, ck, fpw, ckw = [], [], [], []
        time_forward(model, inputs, 1)
        time_forward(clustered, inputs, 1)
        for _ in range(args.repeats):  # interleaved, so both see the same machine load
            fp.append(time_forward(model, inputs, 1, clock, warmup=False))
            ck.append(time_forward(clustered, inputs, 1, clock, warmup=False))
            fpw.append(time_forward(model, inputs, 1, warmup=False))
            ckw.append(time_forward(clustered, inputs, 1, warmup=False))
        for name, pred, meas, wall in (("fp32", pred_fp, fp, fpw), (f"k={args.k}", pred_k, ck, ckw)):
            m = statistics.median(meas)
            rows.append({"threads": t, "model": name, "predicted_ms": 1e3 * pred, "measured_ms": 1e3 * m,
                         "clock": clock, "measured_wall_ms": 1e3 * statistics.median(wall),
                         "error_pct": 100.0 * (pred - m) / m})
        rows[-1]["calibration"] = {k: getattr(spec, k) for k in ("flops_rate", "bandwidth", "op_overhead_s",
                                                                 "lookup_rate")}
    json.dump({"source": args.source, "k": args.k, "index_bits_in_memory": mem_bits, "rows": rows},
              sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
