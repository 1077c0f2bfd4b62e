"""Compile the Triton LUT kernels for an NVIDIA GPU on a machine without one (ahead of time).

``triton.compile`` takes a kernel through Triton's passes and LLVM to PTX, then through ``ptxas``
(shipped inside the triton wheel) to a cubin for the chosen architecture; no driver is needed. So a
kernel variant that would not build on the GPU, one that spills registers to local memory, or a
bf16 GEMM that misses the tensor cores shows up here, where the interpreter (``TRITON_INTERPRET=1``)
only checks values. ``compile_variant`` builds one variant as ``lut_linear_triton`` launches it and
reports what the cubin needs: registers per thread, bytes spilled to local memory, shared memory,
and the matrix instructions in the PTX.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time

from . import triton_lut

# the GPU this project is timed on (H200: Hopper, sm_90)
DEFAULT_ARCH = 90

_DTYPES = {"fp32": "*fp32", "bf16": "*bf16", "fp16": "*fp16"}


class AOTUnavailable(RuntimeError):
    """triton, its NVIDIA backend or the tools it ships (ptxas, cuobjdump) are missing."""


def _tools():
    if not triton_lut.AVAILABLE:
        raise AOTUnavailable("triton is not installed")
    try:
        from triton import knobs
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource

        ptxas, cuobjdump = knobs.nvidia.ptxas.path, knobs.nvidia.cuobjdump.path
    except Exception as e:  # an older or CPU-only triton
        raise AOTUnavailable(f"triton's NVIDIA backend is not usable here: {type(e).__name__}: {e}") from e
    for tool in (ptxas, cuobjdump):
        if not tool or not os.access(tool, os.X_OK):
            raise AOTUnavailable(f"triton's NVIDIA tool is missing: {tool}")
    return ASTSource, GPUTarget, cuobjdump


def available() -> bool:
    try:
        _tools()
        return True
    except AOTUnavailable:
        return False


def _resources(cubin: bytes, cuobjdump: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        out = subprocess.run([cuobjdump, "-res-usage", path], capture_output=True, text=True, timeout=60)
    m = re.search(r"REG:(\d+)\s+STACK:(\d+)\s+SHARED:(\d+)\s+LOCAL:(\d+)", out.stdout)
    if out.returncode != 0 or not m:
        raise RuntimeError(f"cuobjdump -res-usage gave no resource line: {out.stdout[-300:]}{out.stderr[-300:]}")
    reg, stack, static_shared, local = map(int, m.groups())
    # a thread's registers spill to its stack / local memory (in device memory) beyond 255 registers
    return {"registers": reg, "spill_bytes": stack + local, "static_shared_bytes": static_shared}


def compile_variant(kernel: str, dtype: str = "fp32", four: bool = False, blocks: tuple = (32, 64, 64),
                    arch: int = DEFAULT_ARCH, bias: bool = True, **options) -> dict:
    """Compile one launched variant of ``_gemv_kernel`` / ``_gemm_kernel`` for ``sm_<arch>``.

    ``dtype``: x's (and the codebook's, y's, the bias's) dtype, fp32 / bf16 / fp16; ``blocks``:
    (BLOCK_M, BLOCK_N, BLOCK_K), BLOCK_M unused by the GEMV; ``options``: compile options that
    replace ``triton_lut.LAUNCH_OPTIONS`` (what every launch uses), e.g. ``num_warps``. Pointers
    and the int arguments other than M are compiled as multiples of 16, as the JIT specializes them
    for ViT shapes. Returns the variant; the cubin's ``registers`` and ``spill_bytes`` per thread,
    ``shared_bytes`` (what a launch asks for) and ``static_shared_bytes``; ``mma``, the PTX's
    matrix instructions (``wgmma``, ``mma`` or ``none``); ``tf32``, whether the PTX uses tf32
    anywhere; and the compile time.
    """
    ASTSource, GPUTarget, cuobjdump = _tools()
    if kernel not in ("gemv", "gemm") or dtype not in _DTYPES:
        raise ValueError(f"no such variant: kernel {kernel!r}, dtype {dtype!r}")
    bm, bn, bk = blocks
    fn = triton_lut._gemv_kernel if kernel == "gemv" else triton_lut._gemm_kernel
    consts = {"HAS_BIAS": bias, "FOUR": four, "BLOCK_N": bn, "BLOCK_K": bk}
    if kernel == "gemm":  # as lut_linear_triton launches it on a GPU
        consts.update(FP32=dtype == "fp32", LOWP_DOT=True, BLOCK_M=bm)
    # the kernel's own parameters, in order: pointers, ints, then the constants
    sig = {n: "constexpr" if n in consts else "*u8" if n == "idx_ptr" else _DTYPES[dtype] if n.endswith("_ptr")
           else "i32" for n in fn.arg_names}
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(fn.arg_names) if n not in consts and n != "M"}
    opts = {**triton_lut.LAUNCH_OPTIONS, **options}
    t0 = time.perf_counter()
    src = ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs)
    k = triton_lut.triton.compile(src, target=GPUTarget("cuda", arch, 32), options=opts)
    secs = time.perf_counter() - t0
    ptx = k.asm["ptx"]
    mma = "wgmma" if "wgmma.mma_async" in ptx else "mma" if re.search(r"\bmma\.sync", ptx) else "none"
    return {"kernel": kernel, "dtype": dtype, "index_bits": 4 if four else 8, "blocks": list(blocks),
            "num_warps": opts["num_warps"], "num_stages": opts["num_stages"], "arch": f"sm_{arch}",
            **_resources(k.asm["cubin"], cuobjdump), "shared_bytes": int(k.metadata.shared), "mma": mma,
            "tf32": "tf32" in ptx, "compile_s": round(secs, 2)}
