"""Host model check: predicted (wclust.platforms 'host') vs measured latency of the fp32 and the
clustered model, at 1 and 2 threads. Prints JSON. Timings are medians of repeated forwards on a
shared machine: noisy; the prediction is never fitted to these measurements.

    python benchmarks/host_model.py [SOURCE] [-k 64] [--repeats 5] [--threads 1 2]
"""
from __future__ import annotations

import argparse
import copy
import json
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
    args = p.parse_args(argv)

    model = models.load_source(args.source)
    inputs = models.example_inputs(model, 1)
    records = trace_ops(model, inputs)
    clustered = wclust.compress(copy.deepcopy(model), wclust.ClusterConfig(n_clusters=args.k, scope="layer"))
    mem_bits = 4 if (args.k - 1).bit_length() <= 4 else 8  # in-memory index width of the clustered modules
    rows = []
    for t in args.threads:
        torch.set_num_threads(t)
        spec = platforms.calibrate_host(t)
        pred_fp = platforms.predict(records, spec)["time_s"]
        pred_k = platforms.predict(records, spec, args.k, mem_bits)["time_s"]
        meas_fp = time_forward(model, inputs, args.repeats)
        meas_k = time_forward(clustered, inputs, args.repeats)
        for name, pred, meas in (("fp32", pred_fp, meas_fp), (f"k={args.k}", pred_k, meas_k)):
            rows.append({"threads": t, "model": name, "predicted_ms": 1e3 * pred, "measured_ms": 1e3 * meas,
                         "error_pct": 100.0 * (pred - meas) / meas})
        rows[-1]["calibration"] = {k: getattr(spec, k) for k in ("flops_rate", "bandwidth", "op_overhead_s",
                                                                 "lookup_rate")}
    json.dump({"source": args.source, "k": args.k, "index_bits_in_memory": mem_bits, "rows": rows},
              sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
