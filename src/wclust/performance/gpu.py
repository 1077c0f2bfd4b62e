"""Triton LUT kernels on an NVIDIA GPU, in one call: correctness vs the reference, then timings.

The harness behind ``benchmarks/gpu.py`` (a script that calls ``main``), in the package so that its
tests import it from here rather than from a script:

    python benchmarks/gpu.py [--quick] [--out FILE] [--budget-s S]   # prints JSON; exits 1 if a check fails
    python benchmarks/gpu.py --compile-only [--arch 90]   # no GPU needed: every variant timed below,
                                            # built for sm_<arch>: registers, spills, shared memory
    PYTHONPATH=src python3 benchmarks/gpu.py    # where wclust is not installed (no C build needed;
                                            # with one, `python3 setup.py build_ext --inplace`, the
                                            # whole-model part clusters ViT-B in seconds, not ~1 min)

ViT-B shapes (K x N = in x out) at M = 1, 8 and 197, k in {16 (4-bit), 64, 256}, fp32 and bf16:
the LUT kernel (best of a few block sizes; at 1 and 8 rows of both the GEMV and the GEMM, each
one's best reported) vs dense torch F.linear in the same dtype, medians from
``triton.testing.do_bench``. Ratios = dense_ms / lut_ms (> 1 = faster than dense).
``--out FILE`` rewrites FILE (atomically) after the checks, after every timed row and after the
whole-model part, with ``"complete": false`` until the end: a run stopped by a time limit keeps what
it measured. ``--budget-s S`` starts no new kernel timing row after S seconds (``timings_cut`` says
how many were left); the whole-model part still runs (under a minute with the C library built).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

SHAPES = [(768, 2304), (768, 768), (768, 3072), (3072, 768)]
CONFIGS = [("k16_4bit", 16, 4), ("k64", 64, 8), ("k256", 256, 8)]
BLOCKS = [(32, 64, 64), (64, 64, 64), (64, 128, 64), (128, 128, 32), (16, 128, 128)]
# block_m unused; the narrow ones run 4-8x more programs at 768 outputs (48 or 96 for 132 SMs)
GEMV_BLOCKS = [(1, 64, 64), (1, 16, 256), (1, 128, 64), (1, 32, 128), (1, 64, 256), (1, 8, 512)]
# the GEMM at <= GEMV_MAX_ROWS rows
SMALL_M_BLOCKS = [(16, 64, 64), (16, 16, 256), (16, 32, 128), (16, 128, 64)]
ROWS = [1, 8, 197]
DTYPES = (torch.float32, torch.bfloat16)  # checked and timed


def layer(out, inn, k, bits, device, n_groups=1, seed=0):
    from ..clustering.packing import pack_rows_4bit

    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, k, (out, inn), dtype=torch.uint8, generator=g)
    if bits == 4:
        idx = torch.from_numpy(pack_rows_4bit(idx.numpy()))
    cb = torch.randn(n_groups, k, generator=g) * 0.02
    return idx.to(device), cb.to(device), -(-out // n_groups), bits


# (M, out, in, k, index bits, codebook groups): odd shapes, groups, both paths, then ViT-B sizes
CASES = [(1, 37, 45, 16, 4, 1), (3, 70, 130, 256, 8, 3), (197, 300, 200, 64, 8, 2), (40, 33, 67, 5, 4, 1),
         (197, 768, 768, 256, 8, 1), (1, 2304, 768, 64, 8, 1)]


def check(device, cases=None) -> list:
    """Fresh random inputs, odd shapes, groups, both dtypes: kernel vs float64 reference (``CASES``
    unless ``cases`` is given)."""
    from ..kernels import reference, triton_lut

    failures = []
    cases = CASES if cases is None else cases
    for m, out, inn, k, bits, ng in cases:
        idx, cb, gs, ib = layer(out, inn, k, bits, device, ng, seed=m + out)
        for dt in DTYPES:
            x = torch.randn(m, inn, device=device).to(dt)
            bias = torch.randn(out, device=device)
            ref = reference.lut_linear(x.double(), idx, cb.to(dt).double(), bias.to(dt).double(), inn, gs, ib)
            tol = 1e-5 if dt == torch.float32 else 2e-2
            # the default launch, then both paths forced with tiles bench() also times
            for path, (bm, bn, bk) in ((None, (32, 64, 64)), ("gemv", (1, 8, 512)), ("gemm", (16, 16, 256))):
                y = triton_lut.lut_linear_triton(x, idx, cb, bias, inn, gs, ib, block_m=bm, block_n=bn, block_k=bk,
                                                 path=path)
                err = ((y.double() - ref).abs().max() / (ref.abs().max() + 1)).item()
                if not err <= tol:
                    failures.append({"case": [m, out, inn, k, bits, ng, str(dt), path], "rel_err": err})
    # the registered op dispatches to the kernel for CUDA tensors
    idx, cb, gs, ib = layer(64, 96, 16, 4, device)
    x = torch.randn(5, 96, device=device)
    y = torch.ops.wclust.lut_linear(x, idx, cb, None, 96, gs, ib)
    if not torch.allclose(y, reference.lut_linear(x, idx, cb, None, 96, gs, ib), atol=1e-4):
        failures.append({"case": "op dispatch"})
    return failures


def candidates(m: int, quick: bool = False) -> list:
    """(path, blocks) tried at m rows: up to GEMV_MAX_ROWS rows both the GEMV and the GEMM on
    16-row tiles (which reads the indices once for all rows, where the GEMV reads them per row).
    quick: the first two block sizes of each path."""
    from ..kernels import triton_lut

    n = 2 if quick else None
    if m <= triton_lut.GEMV_MAX_ROWS:
        return [("gemv", b) for b in GEMV_BLOCKS[:n]] + [("gemm", b) for b in SMALL_M_BLOCKS[:n]]
    return [("gemm", b) for b in BLOCKS[:n]]


def bench(device, quick: bool, deadline: float | None = None, on_row=None) -> list:
    """Timing rows (M, shape, dtype); none started after ``deadline`` (time.monotonic());
    ``on_row(rows)`` after each."""
    from triton.testing import do_bench

    from ..kernels import triton_lut

    rows = []
    for m in ROWS:
        for inn, out in SHAPES:
            for dt in DTYPES:
                if deadline is not None and time.monotonic() > deadline:
                    return rows
                x = torch.randn(m, inn, device=device).to(dt)
                w = (torch.randn(out, inn, device=device) * 0.02).to(dt)
                b = torch.randn(out, device=device).to(dt)
                dense = do_bench(lambda: torch.nn.functional.linear(x, w, b))
                row = {"M": m, "shape": f"{inn}x{out}", "dtype": str(dt).replace("torch.", ""), "dense_ms": dense}
                for name, k, bits in CONFIGS:
                    idx, cb, gs, ib = layer(out, inn, k, bits, device)
                    best = {}  # path -> (ms, blocks)
                    for path, (bm, bn, bk) in candidates(m, quick):
                        try:
                            t = do_bench(lambda: triton_lut.lut_linear_triton(x, idx, cb, b, inn, gs, ib, block_m=bm,
                                                                              block_n=bn, block_k=bk, path=path))
                        except Exception as e:  # a block size the GPU cannot compile
                            row.setdefault("errors", []).append(f"{name} {path} {bm}x{bn}x{bk}: {type(e).__name__}")
                            continue
                        if path not in best or t < best[path][0]:
                            best[path] = (t, [bm, bn, bk])
                    if best:
                        path, (t, blocks) = min(best.items(), key=lambda kv: kv[1][0])
                        row.update({f"{name}_ms": t, f"{name}_vs_dense": dense / t, f"{name}_path": path,
                                    f"{name}_blocks": blocks})
                        if len(best) > 1:  # both paths at few rows: each one's best
                            row.update({f"{name}_{p}_ms": v[0] for p, v in best.items()})
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
                if on_row is not None:
                    on_row(rows)
    return rows


def _output(out) -> torch.Tensor:
    """The tensor of a forward pass's output (a tensor, or a transformers output's logits / hidden states)."""
    if torch.is_tensor(out):
        return out
    for name in ("logits", "last_hidden_state"):
        if getattr(out, name, None) is not None:
            return getattr(out, name)
    return out[0]


def e2e(device, source="arch:vit-b16", k: int = 64, timer=None) -> dict:
    """The whole model at batch 1 on the GPU: dense fp32 and bf16 against the clustered model
    (fp32 compute, bf16 compute in its Linear layers, the whole model in bf16), milliseconds per
    forward pass (``timer``: a callable's milliseconds, triton's do_bench by default), speed-up vs
    dense fp32, bytes of weights; and the clustered model's output against its dense twin's (the
    same architecture holding the dequantized weights) on the same device. ``source``: a wclust
    source or a model."""
    import copy

    from ..clustering.compress import compress
    from ..clustering.config import ClusterConfig
    from ..clustering.modules import dense_view
    from . import bench as wb
    from ..sources.models import example_inputs, load_source, run

    if timer is None:
        from triton.testing import do_bench as timer
    model = (load_source(source) if isinstance(source, str) else source).eval()
    inputs = example_inputs(model)
    clustered = compress(copy.deepcopy(model), ClusterConfig(n_clusters=k, scope="layer"))
    twin = dense_view(clustered).float()
    bf = torch.bfloat16
    variants = {"fp32": (model, None, None), "dense_bf16_model": (copy.deepcopy(model).to(bf), None, bf),
                "clustered_fp32": (clustered, torch.float32, None), "clustered_bf16": (clustered, bf, None),
                "clustered_bf16_model": (copy.deepcopy(clustered).to(bf), None, bf)}
    out = {"source": source if isinstance(source, str) else type(source).__name__, "n_clusters": k,
           "ms": {}, "speedup_vs_fp32": {}, "weights_mb": {}}
    with torch.inference_mode():
        x = {n: v.to(device) for n, v in inputs.items()}
        twin.to(device)
        ref = _output(run(twin, x)).float()
        for name, (m, cdt, idt) in variants.items():
            m.to(device)
            if cdt is not None:
                wb.set_linear_compute_dtype(m, cdt)
            xi = {n: (v.to(idt) if idt is not None and v.is_floating_point() else v) for n, v in x.items()}
            if name == "clustered_fp32":
                y = _output(run(m, xi)).float()
                out["clustered_vs_twin_rel_err"] = ((y - ref).abs().max() / ref.abs().max()).item()
            out["ms"][name] = timer(lambda: run(m, xi))
            out["weights_mb"][name] = wb.param_bytes(m) / 2**20
        wb.set_linear_compute_dtype(clustered, None)
    out["speedup_vs_fp32"] = {n: out["ms"]["fp32"] / t for n, t in out["ms"].items()}
    return out


def compile_only(arch: int) -> int:
    """Build every kernel variant bench() times for sm_<arch> (triton_aot: no GPU needed)."""
    from ..kernels import triton_aot

    if not triton_aot.available():
        print(json.dumps({"error": "triton's NVIDIA backend / ptxas not installed"}))
        return 2
    variants, failures = [], []
    for kernel, blocks in (("gemv", GEMV_BLOCKS), ("gemm", SMALL_M_BLOCKS + BLOCKS)):
        for b in blocks:
            for dt in ("fp32", "bf16"):
                for four in (False, True):
                    try:
                        row = triton_aot.compile_variant(kernel, dt, four, b, arch=arch)
                        variants.append(row)
                    except Exception as e:  # report every variant that does not build, then fail
                        row = {"kernel": kernel, "dtype": dt, "index_bits": 4 if four else 8, "blocks": list(b),
                               "error": f"{type(e).__name__}: {str(e)[:300]}"}
                        failures.append(row)
                    print(json.dumps(row), file=sys.stderr)
    spilling = [v for v in variants if v["spill_bytes"]]
    print(json.dumps({"arch": f"sm_{arch}", "variants": variants, "spilling": len(spilling),
                      "failures": failures}, indent=1))
    return 1 if failures else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="two block sizes per path and case")
    p.add_argument("--compile-only", action="store_true", help="no GPU: build every variant for --arch, report")
    p.add_argument("--arch", type=int, default=90, help="compute capability for --compile-only (90: H100/H200)")
    p.add_argument("--no-e2e", action="store_true", help="skip the whole-model timing (arch:vit-b16 at k=64)")
    p.add_argument("--out", default=None, help="also write the JSON here, after every stage (atomically)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="start no new kernel timing row after this many seconds")
    args = p.parse_args(argv)
    start = time.monotonic()
    if args.compile_only:
        return compile_only(args.arch)
    if not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device"}))
        return 2
    try:
        import triton
    except ImportError:
        print(json.dumps({"error": "triton not installed"}))
        return 2
    out = run_all(torch.device("cuda"), args, start, {"device": torch.cuda.get_device_name(0),
                                                        "torch": torch.__version__, "triton": triton.__version__})
    print(json.dumps(out, indent=1))
    return 1 if out["check_failures"] else 0


def run_all(device, args, start: float, out: dict) -> dict:
    """The checks, the kernel timings and the whole-model part, into ``out``; each stage saved
    (``args.out``) as it ends, ``complete`` set at the end."""
    from ..atomic import atomic_write_json

    def stage(**parts):  # a run stopped at any point leaves the last whole copy of args.out
        out.update(parts, elapsed_s=round(time.monotonic() - start, 1))
        if args.out:
            atomic_write_json(args.out, out)

    stage(complete=False, check_failures=check(device))
    deadline = None if args.budget_s is None else start + args.budget_s
    rows = bench(device, args.quick, deadline, on_row=lambda rows: stage(timings=rows))
    stage(timings=rows)
    left = len(ROWS) * len(SHAPES) * len(DTYPES) - len(rows)
    if left:
        stage(timings_cut={"after_s": args.budget_s, "rows_left": left})
    if not args.no_e2e:
        try:
            stage(e2e=e2e(device))
        except Exception as e:  # the kernel timings above still count
            stage(e2e={"error": f"{type(e).__name__}: {str(e)[:500]}"})
    stage(complete=True)
    return out
