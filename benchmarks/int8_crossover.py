"""Where the int8 GEMV hands over to the int8 panel GEMM: both C entry points on the same weight
and rows of x, interleaved, thread CPU time, 1 thread; prints JSON (time GEMM / time GEMV: > 1,
the GEMV is faster). kernels/choice.INT8_GEMV_MAX_ROWS is read from this.

    python benchmarks/int8_crossover.py [--rows 2 4 6 8 12] [--repeats 30]
"""
import argparse
import json
import statistics
import time

import torch

from wclust.kernels import cpu, machine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[2, 4, 6, 8, 12])
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    lib = cpu.native()
    rows = []
    for out, inn in ((2304, 768), (768, 3072)):
        for k, bits in ((64, 8), (16, 4)):
            g = torch.Generator().manual_seed(0)
            cb = torch.randn(1, k, generator=g)
            idx = torch.randint(0, k, (out, inn if bits == 8 else (inn + 1) // 2), dtype=torch.uint8, generator=g)
            p = cpu.plan(cb, inn, out, bits, out)
            for m in args.rows:
                x, y = torch.randn(m, inn, generator=g), torch.empty(m, out)
                fns = {n: (lambda fn=fn: fn(p.ptr, cb.data_ptr(), x.data_ptr(), m, idx.data_ptr(), None, y.data_ptr(), 1))
                       for n, fn in (("gemv", lib.wc_lut_plan_gemv_i8), ("gemm", lib.wc_lut_plan_gemm_i8))}
                ts = {n: [] for n in fns}
                for r in range(args.repeats):
                    for n in (("gemv", "gemm") if r % 2 else ("gemm", "gemv")):
                        t = time.thread_time()
                        fns[n]()
                        fns[n]()
                        ts[n].append(time.thread_time() - t)
                rows.append({"shape": f"{inn}x{out}", "k": k, "index_bits": bits, "rows": m,
                             "gemm_over_gemv": round(statistics.median(ts["gemm"]) / statistics.median(ts["gemv"]), 3)})
    print(json.dumps({"cpu": machine.describe(), "isa": cpu.isa(), "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
