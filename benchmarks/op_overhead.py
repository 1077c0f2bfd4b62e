"""What one token costs beyond the lookups: per-call overhead of each layer of the call path, and
a ViT-B single-token pass through the op vs the C GEMV called directly; prints JSON.

    python benchmarks/op_overhead.py [--repeats 7]

- ``per_call_us``: a 16x64 layer (the kernel itself is negligible), 4-bit k=16, M=1, 1 thread:
  nn.Linear, ClusteredLinear (module), the ``wclust::lut_linear`` op, its CPU implementation,
  the GEMV wrapper (ctypes into C).
- ``vit_b_pass``: the 72 Linear weights of an HF ViT-B (12 x q, k, v, o 768x768, fc1 768x3072,
  fc2 3072x768) at one token: dense F.linear, 4-bit k=16 and 8-bit k=64 through the op, through
  ClusteredLinear modules (what a model runs) and through the GEMV wrapper directly. Ratios are
  dense_ms / ms.
Timed with benchmarks/kernels.py's interleaved timer (shuffled order per round, median of ``--repeats``
samples), calling thread's CPU time.
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

from wclust.clustering.modules import ClusteredLinear, ClusteredParts  # noqa: E402
from wclust.clustering.packing import pack_rows_4bit  # noqa: E402
from wclust.kernels import cpu  # noqa: E402
from wclust.kernels.ops import lut_linear  # noqa: E402


def interleaved(cands: dict, repeats: int) -> dict:
    """Median seconds per call of each candidate (benchmarks/kernels.py's interleaved timer, thread clock)."""
    _kb.CLOCK = time.thread_time
    med, _ = _kb.time_interleaved({k: [f] for k, f in cands.items()}, repeats)
    return {k: v / 1e3 for k, v in med.items()}


def per_call(repeats: int) -> dict:
    lin = torch.nn.Linear(64, 16)
    mod = ClusteredLinear.from_module(lin, n_clusters=16)
    x = torch.randn(1, 64)
    i, c, b, ib = mod.indices, mod.codebook, mod.bias, mod.index_bits
    with torch.no_grad():
        t = interleaved({"nn_linear": lambda: lin(x), "module": lambda: mod(x),
                         "op": lambda: lut_linear(x, i, c, b, 64, 16, ib),
                         "cpu_impl": lambda: cpu.lut_linear_cpu(x, i, c, b, 64, 16, ib),
                         "gemv_wrapper": lambda: cpu.gemv(x, i, c, b, 64, 16, ib)}, repeats)
    return {k: round(v * 1e6, 2) for k, v in t.items()}


def vit_b_pass(repeats: int) -> dict:
    g = torch.Generator().manual_seed(0)
    shapes = [(768, 768)] * 4 + [(3072, 768), (768, 3072)]  # (out, in)
    layers = [shape for _ in range(12) for shape in shapes]
    xs = {n: torch.randn(1, n, generator=g) for n in (768, 3072)}
    dense = [(torch.randn(o, n, generator=g), torch.randn(o, generator=g)) for o, n in layers]
    q4, q8, m4, m8 = [], [], [], []
    for (o, n), (_, bias) in zip(layers, dense):
        i4, c4 = torch.randint(0, 16, (o, n), dtype=torch.uint8, generator=g), torch.randn(1, 16, generator=g)
        i8, c8 = torch.randint(0, 64, (o, n), dtype=torch.uint8, generator=g), torch.randn(1, 64, generator=g)
        q4.append((torch.from_numpy(pack_rows_4bit(i4.numpy())), c4, bias, n, o))
        q8.append((i8, c8, bias, n, o))
        m4.append(ClusteredLinear(ClusteredParts((o, n), i4.numpy(), c4, o, 4), bias))
        m8.append(ClusteredLinear(ClusteredParts((o, n), i8.numpy(), c8, o, 6), bias))

    def run(qs, bits, direct):
        f = cpu.gemv if direct else lut_linear
        return lambda: [f(xs[n], i, c, b, n, o, bits) for i, c, b, n, o in qs]

    def modules(ms):
        return lambda: [m(xs[m.in_features]) for m in ms]

    with torch.no_grad():
        t = interleaved({"dense_fp32": lambda: [F.linear(xs[w.shape[1]], w, b) for w, b in dense],
                         "k16_4bit_op": run(q4, 4, False), "k16_4bit_module": modules(m4),
                         "k16_4bit_direct": run(q4, 4, True), "k64_op": run(q8, 8, False),
                         "k64_module": modules(m8), "k64_direct": run(q8, 8, True)}, repeats)
    return {"ms": {k: round(v * 1e3, 3) for k, v in t.items()},
            "vs_dense": {k: round(t["dense_fp32"] / v, 2) for k, v in t.items() if k != "dense_fp32"}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = {"kernel_isa": cpu.isa(), "torch": torch.__version__, "threads": 1,
           "per_call_us": per_call(args.repeats), "vit_b_pass": vit_b_pass(args.repeats)}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
