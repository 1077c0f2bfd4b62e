"""Fused LUT-GEMM vs dequantize + sgemm vs dense fp32 on ViT-B's weight shapes (many rows of x); prints JSON.

    python benchmarks/gemm.py [--threads 1 2] [--m 197 64] [--repeats 15] [--copies 4]

Shapes are K x N = in x out (768x2304 qkv, 768x768 proj, 768x3072 fc1, 3072x768 fc2). Candidates,
all float32 compute, timed interleaved in one run (``time_interleaved`` of benchmarks/kernels.py:
shuffled order per round, median and minimum of short samples), each cycling ``--copies`` weight copies so
the weights are not all cache-hot:
  dense_fp32        F.linear(x, W, b)
  <cfg>_dequant     the current many-rows path: cpu.dequantize_into into one reused buffer + F.linear
  <cfg>_fused       kernels/cpu.lut_gemm (csrc/x86/avx512_gemm.c)
  fma_peak          fma.peak: the same number of float32 operations as independent FMA chains
                    with no memory traffic (csrc/fma_peak.c), the core's FMA ceiling at that moment
for cfg in k16_4bit (4-bit indices), k16, k64, k256 (8-bit indices). With ``--bf16``, bf16 compute
instead (x, codebook and bias in bf16, oneDNN's bf16 matmul):
  dense_bf16        F.linear on a bf16 weight (oneDNN repacks it on every call)
  <cfg>_bf16_plain  cpu.dequantize_into to bf16 into one reused buffer + F.linear
  <cfg>_bf16_packed kernels/onednn.linear: dequantized into oneDNN's packed layout, no repacking
  <cfg>_bf16_amx    kernels/cpu.amx_linear: the fused LUT-GEMM on AMX tiles (csrc/x86/amx_bf16.c), what
                    bf16 compute runs where the CPU has AMX
Ratios are dense_ms / ms
(> 1 = faster than dense fp32), from medians (``vs_dense``) and minima (``vs_dense_min``);
``of_fma_peak`` = fma_peak_ms / ms from medians, the fraction of the FMA ceiling each fp32
candidate reaches (both dense fp32 and the fused kernel are bound by it at 197 rows).
No AMX ceiling is timed beside the bf16 candidates: a probe running the tiles flat out slowed
the candidates timed after it by up to 2x (an ad-hoc interleaved run).
At 1 thread the clock is the calling thread's CPU time (``--clock wall`` for wall time).
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
import fma  # noqa: E402  (benchmarks/fma.py: the FMA ceiling probe)
import kernels as _kb  # noqa: E402  (benchmarks/kernels.py: time_interleaved)

from wclust.kernels import cpu  # noqa: E402

SHAPES = [(768, 2304), (768, 768), (768, 3072), (3072, 768)]
CONFIGS = [("k16_4bit", 16, 4), ("k16", 16, 8), ("k64", 64, 8), ("k256", 256, 8)]


def _setup(inn, out, m, copies):
    """(generator, x, dense weight copies, {"dense_fp32": ...}): what both candidate sets share."""
    g = torch.Generator().manual_seed(inn * out + m)
    x = torch.randn(m, inn, generator=g)
    ws = [(torch.randn(out, inn, generator=g) * 0.02, torch.randn(out, generator=g) * 0.02) for _ in range(copies)]
    return g, x, ws, {"dense_fp32": [lambda w=w, b=b: F.linear(x, w, b) for w, b in ws]}


def _layers(g, inn, out, k, bits, copies, dtype=torch.float32):
    """``copies`` clustered layers (benchmarks/kernels.py's ``clustered_layer``)."""
    return [_kb.clustered_layer(g, inn, out, k, bits, dtype) for _ in range(copies)]


def candidates(inn, out, m, copies, configs=CONFIGS):
    g, x, _, c = _setup(inn, out, m, copies)
    c["fma_peak"] = [lambda f=2 * m * inn * out: fma.peak(f)]
    buf = torch.empty(out * inn)  # the current path's reused scratch
    for name, k, bits in configs:
        deq, fused = [], []
        for idx, cb, b in _layers(g, inn, out, k, bits, copies):
            deq.append(lambda idx=idx, cb=cb, b=b, bits=bits:
                       F.linear(x, cpu.dequantize_into(idx, cb, inn, out, bits, torch.float32, out=buf), b))
            fused.append(lambda idx=idx, cb=cb, b=b, bits=bits: cpu.lut_gemm(x, idx, cb, b, inn, out, bits))
        want = deq[0]()
        got = fused[0]()
        assert got is not None, "fused kernel not available on this CPU"
        assert (got - want).abs().max().item() <= 1e-4 * (want.abs().max().item() + 1e-3), "fused != dequant path"
        c[f"{name}_dequant"] = deq
        c[f"{name}_fused"] = fused
    return c


def candidates_bf16(inn, out, m, copies, configs=CONFIGS):
    from wclust.kernels import onednn

    bf = torch.bfloat16
    g, x, ws, c = _setup(inn, out, m, copies)
    xb = x.to(bf)
    c["dense_bf16"] = [lambda w=w.to(bf), b=b.to(bf): F.linear(xb, w, b) for w, b in ws]
    buf = torch.empty(out * inn, dtype=bf)
    for name, k, bits in configs:
        plain, packed, amx = [], [], []
        for idx, cb, b in _layers(g, inn, out, k, bits, copies, bf):
            amx.append(lambda idx=idx, cb=cb, b=b, bits=bits: cpu.amx_linear(xb, idx, cb, b, inn, out, bits, bf))
            plain.append(lambda idx=idx, cb=cb, b=b, bits=bits:
                         F.linear(xb, cpu.dequantize_into(idx, cb, inn, out, bits, bf, out=buf), b))
            packed.append(lambda idx=idx, cb=cb, b=b, bits=bits:
                          onednn.linear(cpu.native(), xb, idx, cb, b, inn, out, bits))
        want, got = plain[0](), packed[0]()
        assert got is not None, "no packed bf16 layout here"
        assert (got.float() - want.float()).abs().max().item() <= 1e-2 * (want.float().abs().max().item() + 1e-3)
        c[f"{name}_bf16_plain"] = plain
        c[f"{name}_bf16_packed"] = packed
        if cpu.amx_available():
            got = amx[0]()
            assert (got.float() - want.float()).abs().max().item() <= 1e-2 * (want.float().abs().max().item() + 1e-3)
            c[f"{name}_bf16_amx"] = amx
    return c


def _row(threads, m, shape, ms, mn):
    def ratios(t, ref="dense_fp32"):
        return {n: round(t[ref] / v, 3) for n, v in t.items() if n not in (ref, "fma_peak")}

    row = {"threads": threads, "M": m, "shape": shape,
           "ms_median": {n: round(v, 4) for n, v in ms.items()}, "ms_min": {n: round(v, 4) for n, v in mn.items()},
           "vs_dense": ratios(ms), "vs_dense_min": ratios(mn)}
    if "fma_peak" in ms:
        row["of_fma_peak"] = ratios(ms, "fma_peak")
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--m", type=int, nargs="+", default=[197, 64])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--copies", type=int, default=4)
    p.add_argument("--shapes", type=int, nargs="+", default=list(range(len(SHAPES))),
                   help="indices into " + str(SHAPES))
    p.add_argument("--clock", choices=["wall", "thread"], default="thread")
    p.add_argument("--bf16", action="store_true", help="bf16 compute: plain vs packed dequantize (see above)")
    args = p.parse_args(argv)
    if cpu.native() is None or cpu.isa() != "avx512-vbmi":
        print(json.dumps({"error": f"no fused kernel here (isa {cpu.isa()})"}))
        return 1
    results = {"kernel_isa": cpu.isa(), "torch": torch.__version__, "compute": "bf16" if args.bf16 else "fp32",
               "copies": args.copies, "repeats": args.repeats,
               "clock_at_1_thread": args.clock, "loadavg_start": os.getloadavg(), "runs": []}
    old = torch.get_num_threads()
    with torch.inference_mode():
        for threads in args.threads:
            torch.set_num_threads(threads)
            _kb.CLOCK = time.thread_time if (threads == 1 and args.clock == "thread") else time.perf_counter
            for m in args.m:
                for si in args.shapes:
                    inn, out = SHAPES[si]
                    make = candidates_bf16 if args.bf16 else candidates
                    ms, mn = _kb.time_interleaved(make(inn, out, m, args.copies), args.repeats)
                    results["runs"].append(_row(threads, m, f"{inn}x{out}", ms, mn))
                    print(json.dumps({k: results["runs"][-1][k] for k in ("threads", "M", "shape", "vs_dense_min")}),
                          file=sys.stderr)
    torch.set_num_threads(old)
    results["loadavg_end"] = os.getloadavg()
    json.dump(results, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
