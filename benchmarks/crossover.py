"""Where the C GEMV stops paying: GEMV vs fused LUT-GEMM vs dequantize + sgemm at few rows of x;
prints JSON. This is what ``wclust.kernels.cpu.gemv_rows`` (the rows the GEMV takes) rests on.

    python benchmarks/crossover.py [--m 2 4 6 8 12 16] [--repeats 9] [--threads 1]

For ViT-B's 768x768 and 3072x768 (out x in) weights and 4-bit k=16, 8-bit k=64 and k=256, the
three float32 paths are timed interleaved (benchmarks/kernels.py's timer, shuffled order per round, median
of short samples, one weight reused: cache-warm) at each M. ``gemv_vs_gemm`` is gemm_ms /
gemv_ms (> 1: the GEMV is faster), ``gemv_vs_dequant`` likewise against dequantize + F.linear.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kernels as _kb  # noqa: E402  (benchmarks/kernels.py: time_interleaved)

from wclust.clustering.packing import pack_rows_4bit  # noqa: E402
from wclust.kernels import cpu  # noqa: E402

SHAPES = [(768, 768), (3072, 768)]  # (out, in)
CONFIGS = [("k16_4bit", 16, 4), ("k64", 64, 8), ("k256", 256, 8)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--m", type=int, nargs="+", default=[2, 4, 6, 8, 12, 16])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    _kb.CLOCK = time.thread_time if args.threads == 1 else time.perf_counter
    if cpu.native() is None or cpu.isa() != "avx512-vbmi":
        print(json.dumps({"error": f"needs the fused LUT-GEMM (AVX-512 VBMI); this CPU's kernels: {cpu.isa()}"}))
        return 1
    g = torch.Generator().manual_seed(0)
    out = {"kernel_isa": cpu.isa(), "threads": args.threads, "repeats": args.repeats, "runs": []}
    with torch.inference_mode():
        for (o, i), (name, k, bits) in [(s, c) for s in SHAPES for c in CONFIGS]:
            idx = torch.randint(0, k, (o, i), dtype=torch.uint8, generator=g)
            if bits == 4:
                idx = torch.from_numpy(pack_rows_4bit(idx.numpy()))
            cb = torch.randn(1, k, generator=g)
            scratch = torch.empty(o * i)
            for m in args.m:
                x = torch.randn(m, i, generator=g)
                cands = {
                    "gemv": [lambda: cpu.gemv(x, idx, cb, None, i, o, bits)],
                    "gemm": [lambda: cpu.lut_gemm(x, idx, cb, None, i, o, bits)],
                    "dequant_sgemm": [lambda: F.linear(x, cpu.dequantize_into(idx, cb, i, o, bits, out=scratch))],
                }
                med, _ = _kb.time_interleaved(cands, args.repeats)
                out["runs"].append({"shape": f"{o}x{i}", "config": name, "M": m,
                                    "ms": {n: round(v, 4) for n, v in med.items()},
                                    "gemv_vs_gemm": round(med["gemm"] / med["gemv"], 3),
                                    "gemv_vs_dequant": round(med["dequant_sgemm"] / med["gemv"], 3),
                                    "gemv_rows": cpu.gemv_rows(k)})
                print(json.dumps(out["runs"][-1]), file=sys.stderr)
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
