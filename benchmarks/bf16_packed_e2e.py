"""End to end, bf16 compute with and without the packed-layout dequantize (kernels/onednn.py); JSON.

    python benchmarks/bf16_packed_e2e.py [--source arch:vit-b16] [-k 64] [--repeats 20]

One process, 1 thread, rounds interleaved in a rotating order (clock: this thread's CPU time):
  fp32            the dense model
  lin_plain       clustered, bf16 Linear layers, dequantize + F.linear (oneDNN repacks per call)
  lin_packed      clustered, bf16 Linear layers, dequantized into oneDNN's packed layout
  model_plain     the clustered model cast to bf16 as a whole, plain path
  model_packed    the same, packed path
Speed-ups vs fp32: ratio of medians, paired (median of per-round ratios) and ratio of minima.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from wclust.kernels import onednn
from wclust.performance.bench import build_variants, set_linear_compute_dtype
from wclust.sources.models import example_inputs, load_source, run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default="arch:vit-b16")
    p.add_argument("-k", type=int, default=64)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = load_source(args.source).eval()
    inputs = example_inputs(model, batch=1)
    v = build_variants(model, k=args.k, bf16_models=True)
    lin, whole = v["clustered_bf16"][0], v["clustered_bf16_model"][0]
    set_linear_compute_dtype(lin, torch.bfloat16)
    binputs = {n: t.to(torch.bfloat16) if t.is_floating_point() else t for n, t in inputs.items()}

    def case(m, inp, packed):
        def f():
            onednn.ENABLED = packed
            run(m, inp)
        return f

    cases = {"fp32": case(model, inputs, True), "lin_plain": case(lin, inputs, False),
             "lin_packed": case(lin, inputs, True), "model_plain": case(whole, binputs, False),
             "model_packed": case(whole, binputs, True)}
    names, times = list(cases), {n: [] for n in cases}
    try:
        with torch.inference_mode():
            for n in names:
                cases[n]()
                cases[n]()
            for r in range(args.repeats):
                for i in range(len(names)):
                    n = names[(i + r) % len(names)]
                    t = time.thread_time()
                    cases[n]()
                    times[n].append((time.thread_time() - t) * 1e3)
    finally:
        onednn.ENABLED = True
    base = times["fp32"]
    out = {"source": args.source, "k": args.k, "repeats": args.repeats, "threads": 1, "torch": torch.__version__,
           "clock": "thread", "variants": {}}
    for n in names:
        ts = times[n]
        out["variants"][n] = {"median_ms": round(statistics.median(ts), 2), "min_ms": round(min(ts), 2),
                              "speedup_vs_fp32": round(statistics.median(base) / statistics.median(ts), 3),
                              "speedup_paired": round(statistics.median(b / t for b, t in zip(base, ts)), 3),
                              "speedup_min": round(min(base) / min(ts), 3)}
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
