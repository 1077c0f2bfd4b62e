"""LUT kernel vs dense fp32 vs torch int8 dynamic on ViT-B's weight shapes; prints JSON.

    python benchmarks/kernels.py [--threads 1 2] [--m 1 197] [--repeats 15] [--copies 4]

Shapes are K x N = in x out (768x2304 qkv, 768x768 proj, 768x3072 fc1, 3072x768 fc2: one ViT-B
block; "block" sums them, i.e. the model-level ratio over its 48 matrices). Every candidate cycles
through ``--copies`` different weight copies so that, as in a model, the weights are not all in
L2 between calls. Candidates are timed interleaved (rotating order) in one run; the median and
the minimum of short samples are both kept (on a shared machine the minimum is the better
estimate of the uncontended speed). Ratios are dense_ms / kernel_ms (> 1 = faster than dense
fp32) and int8_ms / kernel_ms, from medians (``vs_*``) and from minima (``vs_*_min``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings

import torch
import torch.nn.functional as F

from wclust.kernels import cpu
from wclust.kernels.ops import lut_linear
from wclust.packing import pack_rows_4bit

SHAPES = [(768, 2304), (768, 768), (768, 3072), (3072, 768)]
CONFIGS = [("k16_4bit", 16, 4), ("k16", 16, 8), ("k64", 64, 8), ("k256", 256, 8)]


def int8_linear(w, b):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        lin.weight.data.copy_(w)
        lin.bias.data.copy_(b)
        return torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)


def candidates(inn, out, m, copies, bf16):
    g = torch.Generator().manual_seed(inn * out + m)
    x = torch.randn(m, inn, generator=g)
    xb = x.bfloat16()
    ws = [torch.randn(out, inn, generator=g) * 0.02 for _ in range(copies)]
    b = torch.randn(out, generator=g) * 0.02
    c = {"dense_fp32": [lambda w=w: F.linear(x, w, b) for w in ws],
         "int8_dynamic": [lambda q=int8_linear(w, b): q(x) for w in ws]}
    if bf16:
        c["dense_bf16"] = [lambda w=w.bfloat16(), bb=b.bfloat16(): F.linear(xb, w, bb) for w in ws]
    for name, k, bits in CONFIGS:
        fns, fnb = [], []
        for _ in range(copies):
            idx = torch.randint(0, k, (out, inn), dtype=torch.uint8, generator=g)
            if bits == 4:
                idx = torch.from_numpy(pack_rows_4bit(idx.numpy()))
            cb = torch.sort(torch.randn(1, k, generator=g) * 0.02).values
            fns.append(lambda idx=idx, cb=cb, bits=bits: lut_linear(x, idx, cb, b, inn, out, bits))
            fnb.append(lambda idx=idx, cb=cb, bits=bits: lut_linear(xb, idx, cb, b, inn, out, bits))
        c[f"lut_{name}_fp32"] = fns
        if bf16:
            c[f"lut_{name}_bf16"] = fnb
    return c


def time_interleaved(cands: dict, repeats: int, min_sample_s: float = 0.001) -> tuple[dict, dict]:
    """(median, min) ms per call of each candidate; samples interleaved, rotating the order.

    On a shared machine the minimum over many short samples estimates the uncontended speed
    (interference only adds time); the median shows the typical one under the current load."""
    names = list(cands)
    inner = {}
    for n in names:  # warm up, and pick calls per sample so one sample lasts >= min_sample_s
        fns = cands[n]
        t = time.perf_counter()
        for f in fns * 2:
            f()
        per = (time.perf_counter() - t) / (2 * len(fns))
        inner[n] = max(1, int(min_sample_s / max(per, 1e-7) / len(fns)))
    samples = {n: [] for n in names}
    for r in range(repeats):
        for i in range(len(names)):
            n = names[(i + r) % len(names)]
            fns = cands[n]
            t = time.perf_counter()
            for _ in range(inner[n]):
                for f in fns:
                    f()
            samples[n].append((time.perf_counter() - t) * 1e3 / (inner[n] * len(fns)))
    return ({n: statistics.median(s) for n, s in samples.items()}, {n: min(s) for n, s in samples.items()})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--m", type=int, nargs="+", default=[1, 197])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--copies", type=int, default=4)
    args = p.parse_args(argv)
    results = {"kernel_isa": cpu.isa(), "torch": torch.__version__, "copies": args.copies,
               "repeats": args.repeats, "runs": []}
    old = torch.get_num_threads()
    with torch.inference_mode():
        for threads in args.threads:
            torch.set_num_threads(threads)
            for m in args.m:
                block, block_min = {}, {}
                for inn, out in SHAPES:
                    ms, mn = time_interleaved(candidates(inn, out, m, args.copies, bf16=True), args.repeats)
                    for n in ms:
                        block[n] = block.get(n, 0.0) + ms[n]
                        block_min[n] = block_min.get(n, 0.0) + mn[n]
                    results["runs"].append(_row(threads, m, f"{inn}x{out}", ms, mn))
                    print(json.dumps(results["runs"][-1]["vs_dense_fp32_min"]), file=sys.stderr)
                results["runs"].append(_row(threads, m, "block", block, block_min))
                print(json.dumps(results["runs"][-1]["vs_dense_fp32_min"]), file=sys.stderr)
    torch.set_num_threads(old)
    json.dump(results, sys.stdout, indent=1)
    print()
    return 0


def _row(threads, m, shape, ms, mn):
    def ratios(t, base):
        return {n: round(t[base] / v, 3) for n, v in t.items()}

    return {"threads": threads, "M": m, "shape": shape,
            "ms_median": {n: round(v, 4) for n, v in ms.items()}, "ms_min": {n: round(v, 4) for n, v in mn.items()},
            "vs_dense_fp32": ratios(ms, "dense_fp32"), "vs_int8_dynamic": ratios(ms, "int8_dynamic"),
            "vs_dense_fp32_min": ratios(mn, "dense_fp32"), "vs_int8_dynamic_min": ratios(mn, "int8_dynamic")}


if __name__ == "__main__":
    sys.exit(main())
