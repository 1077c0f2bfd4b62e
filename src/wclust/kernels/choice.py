"""Which kernel runs a clustered matrix product: one table, read by the CPU op, the modules and
``wclust doctor``.

A call is a ``Case``: the device, the C library's ISA level on this CPU, the compute mode (fp32,
bf16 or int8), the rows of x, the in-memory index width (4: two indices a byte, 8: one) and the
codebook length, plus what this CPU / torch offers for bf16 (the AMX kernel, oneDNN's packed
layout). ``choose`` maps it to a kernel name; ``RULES`` lists the same decisions in words, in
the order ``choose`` applies them. Nothing here imports a kernel: the callers fill the Case from
the running state (``kernels.cpu.case``) and call what the name says.
"""
from __future__ import annotations

from dataclasses import dataclass

# measured crossovers (the JSON behind each is named where it is used)
GEMV_MAX_ROWS = 12        # fp32 GEMV vs dequantize + sgemm (no fused GEMM): 12..16 rows, ViT-B shapes
FUSED_GEMV_MAX_ROWS = 8   # fp32 GEMV vs the fused AVX-512 LUT-GEMM (benchmarks/results/crossover_1thread.json)
AMX_MAX_ROWS = 384        # the AMX bf16 kernel vs oneDNN's packed path, more rows: oneDNN's cache blocking wins
INT8_GEMV_MAX_ROWS = 8    # int8 GEMV vs panel GEMM: GEMM / GEMV time 1.11-1.49 at 6-8 rows, 0.81-1.04 at 12
                          # (benchmarks/results/zen3/int8_crossover.json, AVX2, 1 thread)
TRITON_GEMV_MAX_ROWS = 8  # kernels/triton_lut.py

KERNELS = {
    "gemv": "C GEMV on indices + codebook, float32 (csrc: x86/avx512_lut.c, x86/avx2_lut.c, portable/lut_c.c)",
    "gemv-bf16": "the C GEMV with a bf16 plan (codebook, x, bias and y rounded to bf16)",
    "fused-gemm": "fused LUT-GEMM, float32, W never materialized (x86/avx512_gemm.c)",
    "amx-bf16": "fused bf16 LUT-GEMM on AMX tiles (x86/amx_bf16.c)",
    "onednn-packed": "dequantized into oneDNN's packed bf16 layout, then its matmul (kernels/onednn.py)",
    "dequantize+matmul": "the layer dequantized into a reused buffer, then torch's matmul",
    "int8-gemv": "integer GEMV: int8 lookups in registers, u7 x s8 products (x86/avx2_int8.c, portable/int8_c.c)",
    "int8-gemm": "integer panel GEMM: 16-row int8 panels, u7 x s8 products (x86/avx2_int8.c, portable/int8_c.c)",
    "triton-gemv": "Triton GEMV on CUDA (kernels/triton_lut.py)",
    "triton-gemm": "Triton GEMM on CUDA, tl.dot tiles (kernels/triton_lut.py)",
    "reference": "pure torch: codebook[indices] then F.linear, 20-30x slower (no C library, or a layout it does not take)",
    "reference-int8": "pure torch: the int8 numeric's float64 reference (kernels/int8.py)",
}


@dataclass(frozen=True)
class Case:
    device: str = "cpu"          # "cpu" or "cuda"
    isa: str = "avx2"            # "reference" (no C library), "portable-c", "avx2", "avx512-vbmi"
    compute: str = "fp32"        # "fp32", "bf16" or "int8"
    rows: int = 1                # rows of x (tokens times batch)
    index_bits: int = 8          # in memory: 4 (two a byte) or 8
    k: int = 64                  # codebook length
    amx: bool = False            # the AMX bf16 kernel runs here
    onednn_packed: bool = False  # oneDNN's packed bf16 layout is known here


RULES = (
    "cuda: Triton GEMV up to 8 rows of x, Triton GEMM above (int8 compute: the reference)",
    "no C library: the torch reference",
    "int8: the int8 GEMV up to 8 rows, the int8 panel GEMM above (every ISA: portable C where no SIMD kernel)",
    "fp32: the C GEMV up to 8 rows with the fused GEMM (AVX-512 VBMI), 12 without; above: fused GEMM or "
    "dequantize + matmul",
    "bf16: the GEMV's bf16 plan up to 1 row (k > 64) or 3 rows (k <= 64) with AMX, 12 without; above: AMX up to "
    "384 rows, then oneDNN's packed layout where known, else dequantize + matmul",
)


def gemv_rows(c: Case) -> int:
    """Most rows of x the C GEMV takes in float compute (fp32 or bf16) for this case."""
    if c.compute == "bf16" and c.amx:
        # the AMX kernel is ahead of the GEMV from 4 rows of x for k <= 64 and from 2 beyond
        # (measured on the AMX machine, ViT-B shapes, 1 thread: the closing notes of the AMX kernel's issue)
        return 1 if c.k > 64 else 3
    if c.compute == "fp32" and c.isa == "avx512-vbmi":
        return FUSED_GEMV_MAX_ROWS
    return GEMV_MAX_ROWS


def choose(c: Case) -> str:
    """The kernel name (a key of KERNELS) that runs case ``c``."""
    if c.device == "cuda":
        if c.compute == "int8":
            return "reference-int8"
        return "triton-gemv" if c.rows <= TRITON_GEMV_MAX_ROWS else "triton-gemm"
    if c.isa == "reference":
        return "reference-int8" if c.compute == "int8" else "reference"
    if c.compute == "int8":
        return "int8-gemv" if c.rows <= INT8_GEMV_MAX_ROWS else "int8-gemm"
    if c.rows <= gemv_rows(c):
        return "gemv-bf16" if c.compute == "bf16" else "gemv"
    if c.compute == "fp32":
        return "fused-gemm" if c.isa == "avx512-vbmi" else "dequantize+matmul"
    if c.amx and c.rows <= AMX_MAX_ROWS:
        return "amx-bf16"
    return "onednn-packed" if c.onednn_packed else "dequantize+matmul"


def table(base: Case, rows=(1, 4, 8, 16, 197), widths=((4, 16), (8, 64), (8, 256)),
          computes=("fp32", "bf16", "int8")) -> list[dict]:
    """The kernel for every (compute, rows, width and k) on the machine ``base`` describes."""
    out = []
    for compute in computes:
        for bits, k in widths:
            for m in rows:
                c = Case(base.device, base.isa, compute, m, bits, k, base.amx, base.onednn_packed)
                out.append({"compute": compute, "index_bits": bits, "k": k, "rows": m, "kernel": choose(c)})
    return out
