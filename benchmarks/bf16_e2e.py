"""End to end, the three bf16 compute paths of the clustered layers side by side; JSON.

    python benchmarks/bf16_e2e.py [--source arch:vit-b16] [-k 64] [--repeats 20]

One process, 1 thread, rounds interleaved in a shuffled order (clock: this thread's CPU time):
  fp32            the dense model
  lin_plain       clustered, bf16 Linear layers, dequantize + F.linear (oneDNN repacks per call)
  lin_packed      clustered, bf16 Linear layers, dequantized into oneDNN's packed layout (kernels/onednn.py)
  lin_amx         clustered, bf16 Linear layers, the fused LUT-GEMM on AMX tiles (csrc/x86/amx_bf16.c)
  model_plain     the clustered model cast to bf16 as a whole, plain path
  model_packed    the same, packed path
  model_amx       the same, AMX kernel
Timed by wclust.performance.bench.time_rounds (the path switched untimed before each run); the
*_amx variants only where this CPU has AMX.
Speed-ups vs fp32: ratio of medians, paired (median of per-round ratios) and ratio of minima.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from wclust.kernels import cpu, onednn
from wclust.performance.bench import build_variants, set_linear_compute_dtype, time_rounds
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

    paths = ("plain", "packed", "amx") if cpu.amx_available() else ("plain", "packed")
    fns = {"fp32": lambda: run(model, inputs)}
    for path in paths:
        fns[f"lin_{path}"] = lambda: run(lin, inputs)
        fns[f"model_{path}"] = lambda: run(whole, binputs)

    def switch_to(name):
        onednn.ENABLED = not name.endswith("plain")
        cpu.AMX_ENABLED = name.endswith("amx")

    switch = {n: (lambda n=n: switch_to(n)) for n in fns}
    before = onednn.ENABLED, cpu.AMX_ENABLED
    try:
        res = time_rounds(fns, args.repeats, warmup=2, clock=time.thread_time, before=switch)
    finally:
        onednn.ENABLED, cpu.AMX_ENABLED = before
    out = {"source": args.source, "k": args.k, "repeats": args.repeats, "threads": 1, "torch": torch.__version__,
           "clock": "thread", "variants": res}
    for v in res.values():
        v["speedup_min"] = res["fp32"]["min_ms"] / v["min_ms"]
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
