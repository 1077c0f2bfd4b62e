"""LUT kernel vs dense fp32 vs torch int8 dynamic on ViT-B's weight shapes; prints JSON.

    python benchmarks/kernels.py [--threads 1 2] [--m 1 197] [--repeats 15] [--copies 4]

Shapes are K x N = in x out (768x2304 qkv, 768x768 proj, 768x3072 fc1, 3072x768 fc2: one ViT-B
block; "block" sums them, i.e. the model-level ratio over its 48 matrices). Clustered candidates
go through the ``wclust::lut_linear`` op; at M <= 8 also through ClusteredLinear modules
(``*_module``, what a model runs; ``*_bf16_module``: bf16 compute on float32 activations), with
nn.Linear modules (``dense_fp32_module``) beside them;
``modules_vs_dense_module`` gives their ratios against nn.Linear (module against module). Every candidate cycles
through ``--copies`` different weight copies so that, as in a model, the weights are not all in
L2 between calls. The indices of each clustered configuration sit in one huge-page arena, as
wclust.load and wclust.compress place a model's (``WCLUST_NO_HUGEPAGES=1``: ordinary pages, as
torch allocates). Candidates are timed interleaved (shuffled order per round) in one run; the median and
the minimum of short samples are both kept (on a shared machine the minimum is the better
estimate of the uncontended speed). Ratios are dense_ms / kernel_ms (> 1 = faster than dense
fp32) and int8_ms / kernel_ms, from medians (``vs_*``) and from minima (``vs_*_min``).
At 1 thread the clock is the calling thread's CPU time by default (``--clock wall`` for wall time).
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

from wclust.clustering import arena
from wclust.clustering.modules import ClusteredLinear, ClusteredParts
from wclust.kernels import cpu, machine, reference
from wclust.clustering.packing import pack_rows_4bit
from wclust.kernels.ops import lut_linear
from wclust.performance.bench import round_order

SHAPES = [(768, 2304), (768, 768), (768, 3072), (3072, 768)]
CONFIGS = [("k16_4bit", 16, 4), ("k16", 16, 8), ("k64", 64, 8), ("k256", 256, 8)]


def int8_linear(w, b):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        lin.weight.data.copy_(w)
        lin.bias.data.copy_(b)
        return torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)


def _nn_linear(w, b):
    lin = torch.nn.Linear(w.shape[1], w.shape[0])
    lin.weight.data.copy_(w)
    lin.bias.data.copy_(b)
    return lin


def _module(fn, compute_dtype=None):
    """The ClusteredLinear of a float32 op candidate (same indices, codebook, bias, input), computing
    in ``compute_dtype`` (bf16: float32 activations in and out, as after wclust.set_compute_dtype)."""
    idx, cb, bits, x, b, inn, out = (fn.__defaults__[i] for i in range(7))
    parts = ClusteredParts((out, inn), reference.unpack_rows(idx, inn, bits).numpy(), cb, out, bits)
    mod = ClusteredLinear(parts, b)
    mod.compute_dtype = compute_dtype
    return mod, x


PAGES: set[str] = set()  # where the arena placements of this run put the indices ("huge", "ordinary")


def _module_candidates(fns, compute_dtype=None, huge=True):
    """``_module`` of each op candidate, their indices placed in one huge-page arena as
    wclust.load and wclust.compress place a model's (wclust.clustering.arena); ``huge=False``:
    left in ordinary pages."""
    mods = [_module(f, compute_dtype) for f in fns]
    if huge:
        PAGES.add("huge" if arena.consolidate(torch.nn.ModuleList([m for m, _ in mods]), min_bytes=0)
                  else "ordinary")
    return [lambda m=m, x=x: m(x) for m, x in mods]


def clustered_layer(g, inn, out, k, bits, dtype=torch.float32):
    """A random clustered layer (indices, sorted codebook, bias; codebook and bias in ``dtype``)."""
    b = torch.randn(out, generator=g) * 0.02
    idx = torch.randint(0, k, (out, inn), dtype=torch.uint8, generator=g)
    if bits == 4:
        idx = torch.from_numpy(pack_rows_4bit(idx.numpy()))
    cb = torch.sort(torch.randn(1, k, generator=g) * 0.02).values
    return idx, cb.to(dtype), b.to(dtype)


def candidates(inn, out, m, copies, bf16, shapes=None, modules=False, page_twins=False, int8=True, configs=None):
    """name -> list of callables, one per weight copy (``shapes``: a list of (in, out), one each).
    ``modules``: also each configuration through ClusteredLinear modules (what a model runs: eager
    inference at few rows skips the dispatcher), float32 and (with ``bf16``) bf16 compute, against
    nn.Linear. ``int8``: each configuration through ClusteredLinear modules with int8 compute
    (``lut_*_int8_module``, at every m). ``configs``: the names of CONFIGS to time (default all)."""
    shapes = shapes or [(inn, out)] * copies
    g = torch.Generator().manual_seed(inn * out + m)
    xs = {i: torch.randn(m, i, generator=g) for i in {s[0] for s in shapes}}
    xbs = {i: x.bfloat16() for i, x in xs.items()}
    ws = [(torch.randn(o, i, generator=g) * 0.02, torch.randn(o, generator=g) * 0.02) for i, o in shapes]
    c = {"dense_fp32": [lambda w=w, b=b, x=xs[w.shape[1]]: F.linear(x, w, b) for w, b in ws],
         "int8_dynamic": [lambda q=int8_linear(w, b), x=xs[w.shape[1]]: q(x) for w, b in ws]}
    if bf16:
        c["dense_bf16"] = [lambda w=w.bfloat16(), bb=b.bfloat16(), x=xbs[w.shape[1]]: F.linear(x, w, bb)
                           for w, b in ws]
    if modules:
        c["dense_fp32_module"] = [lambda lin=_nn_linear(w, b), x=xs[w.shape[1]]: lin(x) for w, b in ws]
    for name, k, bits in CONFIGS:
        if configs and name not in configs:
            continue
        fns, fnb = [], []
        layers = [clustered_layer(g, inn, out, k, bits) for inn, out in shapes]
        placed = arena.place([idx for idx, _, _ in layers])  # side by side in huge pages, as in a loaded model
        PAGES.add("ordinary" if placed is None else "huge")
        if placed is not None:
            layers = [(p, cb, b) for p, (_, cb, b) in zip(placed, layers)]
        for (inn, out), (idx, cb, b) in zip(shapes, layers):
            x, xb = xs[inn], xbs[inn]
            fns.append(lambda idx=idx, cb=cb, bits=bits, x=x, b=b, inn=inn, out=out:
                       lut_linear(x, idx, cb, b, inn, out, bits))
            fnb.append(lambda idx=idx, cb=cb, bits=bits, xb=xb, b=b, inn=inn, out=out:
                       lut_linear(xb, idx, cb, b, inn, out, bits))
        c[f"lut_{name}_fp32"] = fns
        if int8:
            c[f"lut_{name}_int8_module"] = _module_candidates(fns, torch.int8)
        if bf16:
            c[f"lut_{name}_bf16"] = fnb
        if modules:
            c[f"lut_{name}_fp32_module"] = _module_candidates(fns)
            if page_twins and name in ("k16_4bit", "k64") and arena.enabled():
                c[f"lut_{name}_4k_pages_fp32_module"] = _module_candidates(fns, huge=False)
            if bf16:
                c[f"lut_{name}_bf16_module"] = _module_candidates(fns, torch.bfloat16)
    return c


CLOCK = time.perf_counter


def time_interleaved(cands: dict, repeats: int, min_sample_s: float = 0.001, warm: bool = False) -> tuple[dict, dict]:
    """(median, min) ms per call of each candidate; samples interleaved, in an order shuffled anew
    each round (wclust.performance.bench.round_order).

    On a shared machine the minimum over many short samples estimates the uncontended speed
    (interference only adds time); the median shows the typical one under the current load.
    ``warm``: each sample first runs the candidate's calls once untimed, so its own weights are
    in cache where they fit (a model run back to back) instead of after another candidate's."""
    names = list(cands)
    inner = {}
    for n in names:  # warm up, and pick calls per sample so one sample lasts >= min_sample_s
        fns = cands[n]
        t = CLOCK()
        for f in fns * 2:
            f()
        per = (CLOCK() - t) / (2 * len(fns))
        inner[n] = max(1, int(min_sample_s / max(per, 1e-7) / len(fns)))
    samples = {n: [] for n in names}
    for r in range(repeats):
        for n in round_order(names, r):
            fns = cands[n]
            if warm:
                for f in fns:
                    f()
            t = CLOCK()
            for _ in range(inner[n]):
                for f in fns:
                    f()
            samples[n].append((CLOCK() - t) * 1e3 / (inner[n] * len(fns)))
    return ({n: statistics.median(s) for n, s in samples.items()}, {n: min(s) for n, s in samples.items()})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--m", type=int, nargs="+", default=[1, 197])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--copies", type=int, default=4)
    p.add_argument("--model-pass", action="store_true",
                   help="also time one pass over all 48 ViT-B matrices (12 of each shape, distinct weights: "
                        "330 MB of fp32 streamed from memory, as in a real single-token step), twice: right "
                        "after another candidate's pass (vit_b_48_matrices: its weights come from memory) and "
                        "right after its own (vit_b_48_matrices_warm: a model run back to back, its weights in "
                        "cache where they fit, e.g. 43 MB of 4-bit indices in a 300 MB L3, 330 MB of fp32 not)")
    p.add_argument("--page-twins", action="store_true",
                   help="also time the 4-bit and k=64 float32 modules with their indices in ordinary 4 KiB "
                        "pages (*_4k_pages_fp32_module) beside the same modules in the huge-page arena")
    p.add_argument("--no-bf16", action="store_true", help="leave out the bf16 candidates (slow where the CPU has "
                   "no bf16 instructions: they only add minutes)")
    p.add_argument("--configs", nargs="+", choices=[c[0] for c in CONFIGS], help="clustered configurations to time")
    p.add_argument("--clock", choices=["wall", "thread"], default="thread",
                   help="thread: CPU time of the calling thread, used at 1 thread (time taken by other jobs on "
                        "a shared machine is not counted); runs with more threads always use wall time")
    args = p.parse_args(argv)
    global CLOCK
    results = {"cpu": machine.describe(), "kernel_isa": cpu.isa(), "torch": torch.__version__, "copies": args.copies,
               "repeats": args.repeats, "clock_at_1_thread": args.clock, "runs": []}
    old = torch.get_num_threads()
    with torch.inference_mode():
        for threads in args.threads:
            torch.set_num_threads(threads)
            CLOCK = time.thread_time if (threads == 1 and args.clock == "thread") else time.perf_counter
            for m in args.m:
                mods = m <= 8  # rows ClusteredLinear's own fast path takes (cpu.gemv_rows: 8..12)
                block, block_min = {}, {}
                for inn, out in SHAPES:
                    ms, mn = time_interleaved(candidates(inn, out, m, args.copies, bf16=not args.no_bf16, modules=mods,
                                                         page_twins=args.page_twins, configs=args.configs), args.repeats)
                    for n in ms:
                        block[n] = block.get(n, 0.0) + ms[n]
                        block_min[n] = block_min.get(n, 0.0) + mn[n]
                    results["runs"].append(_row(threads, m, f"{inn}x{out}", ms, mn))
                    print(json.dumps(results["runs"][-1]["vs_dense_fp32_min"]), file=sys.stderr)
                results["runs"].append(_row(threads, m, "block", block, block_min))
                print(json.dumps(results["runs"][-1]["vs_dense_fp32_min"]), file=sys.stderr)
                if args.model_pass:
                    cands = candidates(0, 0, m, 48, bf16=not args.no_bf16, shapes=SHAPES * 12, modules=mods,
                                       page_twins=args.page_twins, configs=args.configs)
                    for warm, label in ((False, "vit_b_48_matrices"), (True, "vit_b_48_matrices_warm")):
                        ms, mn = time_interleaved(cands, max(5, args.repeats // 3), min_sample_s=0.0, warm=warm)
                        ms = {n: v * 48 for n, v in ms.items()}
                        mn = {n: v * 48 for n, v in mn.items()}
                        results["runs"].append(_row(threads, m, label, ms, mn))
                        print(json.dumps(results["runs"][-1]["vs_dense_fp32_min"]), file=sys.stderr)
                    del cands
    torch.set_num_threads(old)
    results["indices_in_huge_pages"] = PAGES == {"huge"}   # every placement, as it happened
    json.dump(results, sys.stdout, indent=1)
    print()
    return 0


def _row(threads, m, shape, ms, mn):
    def ratios(t, base):
        return {n: round(t[base] / v, 3) for n, v in t.items()}

    row = {"threads": threads, "M": m, "shape": shape,
           "ms_median": {n: round(v, 4) for n, v in ms.items()}, "ms_min": {n: round(v, 4) for n, v in mn.items()},
           "vs_dense_fp32": ratios(ms, "dense_fp32"), "vs_int8_dynamic": ratios(ms, "int8_dynamic"),
           "vs_dense_fp32_min": ratios(mn, "dense_fp32"), "vs_int8_dynamic_min": ratios(mn, "int8_dynamic")}
    if "dense_fp32_module" in ms:  # module against module: a dense model calls nn.Linear, not F.linear
        for key, t in (("modules_vs_dense_module", ms), ("modules_vs_dense_module_min", mn)):
            row[key] = {n: round(t["dense_fp32_module"] / v, 3) for n, v in t.items() if n.endswith("_module")}
    return row


if __name__ == "__main__":
    sys.exit(main())
