"""Triton kernels of ``wclust::lut_linear`` for NVIDIA GPUs (registered for "cuda").

Each program loads a tile of indices (uint8, or two 4-bit indices per byte), looks the weights up
in the codebook (a tiny table: gathers hit L1), and multiplies:
- GEMV (``M <= GEMV_MAX_ROWS``): one x row per program, ``BLOCK_N`` outputs, a reduction over K.
- GEMM: ``tl.dot`` on (BLOCK_M x BLOCK_K) x (BLOCK_K x BLOCK_N) tiles, float32 accumulation;
  float32 inputs use IEEE fp32 (exact, like the reference), bf16/fp16 inputs the tensor cores.
Runs on CPU tensors under ``TRITON_INTERPRET=1`` (how the tests check it without a GPU).
Unsupported layouts fall back to the reference. Importing this module without triton is fine.
"""
from __future__ import annotations

import os

import torch

from . import reference
from .ops import register_kernel

try:  # optional dependency
    import triton
    import triton.language as tl
except Exception:  # pragma: no cover - triton missing or broken
    triton = None

GEMV_MAX_ROWS = 8
AVAILABLE = triton is not None
# compile options of every launch (triton_aot compiles with the same): FMA contraction on, as
# triton 3.9 defaults to while warning that 3.10 will not
LAUNCH_OPTIONS = {"num_warps": 4, "num_stages": 3, "enable_fp_fusion": True}

if AVAILABLE:

    @triton.jit
    def _load_idx(idx_ptr, rn, cols, n_out, rowbytes):
        """Index bytes of output rows rn at byte columns cols, as int32 (0 outside the matrix)."""
        mask = (rn[:, None] < n_out) & (cols[None, :] < rowbytes)
        return tl.load(idx_ptr + rn[:, None] * rowbytes + cols[None, :], mask=mask, other=0).to(tl.int32)

    @triton.jit
    def _lookup(cb_ptr, rn, kf, code, n_out, in_features, group_size, n_codes):
        """Weights of output rows rn at features kf from their codes (0 outside the matrix)."""
        mask = (rn[:, None] < n_out) & (kf[None, :] < in_features)
        g = rn // group_size
        return tl.load(cb_ptr + g[:, None] * n_codes + code, mask=mask, other=0.0).to(tl.float32)

    @triton.jit
    def _row_part(x_ptr, m, cb_ptr, rn, kf, code, n_out, in_features, group_size, n_codes):
        """sum over features kf of W[rn, kf] * x[m, kf]"""
        xv = tl.load(x_ptr + m * in_features + kf, mask=kf < in_features, other=0.0).to(tl.float32)
        w = _lookup(cb_ptr, rn, kf, code, n_out, in_features, group_size, n_codes)
        return tl.sum(w * xv[None, :], axis=1)

    @triton.jit
    def _load_x(x_ptr, rm, kf, M, in_features):
        """x[rm, kf] (0 outside x)"""
        xmask = (rm[:, None] < M) & (kf[None, :] < in_features)
        return tl.load(x_ptr + rm[:, None] * in_features + kf[None, :], mask=xmask, other=0.0)

    @triton.jit
    def _tile_part(xt, cb_ptr, rn, kf, code, n_out, in_features, group_size, n_codes,
                   FP32: tl.constexpr, LOWP_DOT: tl.constexpr):
        """xt . W[rn, kf]^T in float32, xt = x[rows, kf]"""
        w = _lookup(cb_ptr, rn, kf, code, n_out, in_features, group_size, n_codes)
        if FP32:
            return tl.dot(xt.to(tl.float32), tl.trans(w), input_precision="ieee")
        elif LOWP_DOT:
            return tl.dot(xt, tl.trans(w.to(xt.dtype)))
        else:  # same values (w rounded to x's dtype), float32 products: the interpreter's path
            w = w.to(xt.dtype).to(tl.float32)
            return tl.dot(xt.to(tl.float32), tl.trans(w), input_precision="ieee")

    # 4-bit: each index byte is loaded once and holds features 2j (low nibble) and 2j + 1 (high);
    # the two halves are multiplied separately (even features, then odd ones) so that no tile has to
    # be interleaved back into feature order (which went through shared memory on sm_90).

    @triton.jit
    def _gemv_kernel(x_ptr, idx_ptr, cb_ptr, bias_ptr, y_ptr, n_out, in_features, rowbytes, group_size, n_codes,
                     HAS_BIAS: tl.constexpr, FOUR: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        m = tl.program_id(0)
        rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for k0 in range(0, in_features, BLOCK_K):
            if FOUR:
                kb = k0 // 2 + tl.arange(0, BLOCK_K // 2)
                byte = _load_idx(idx_ptr, rn, kb, n_out, rowbytes)
                acc += _row_part(x_ptr, m, cb_ptr, rn, 2 * kb, byte & 15, n_out, in_features, group_size, n_codes)
                acc += _row_part(x_ptr, m, cb_ptr, rn, 2 * kb + 1, byte >> 4, n_out, in_features, group_size, n_codes)
            else:
                kk = k0 + tl.arange(0, BLOCK_K)
                code = _load_idx(idx_ptr, rn, kk, n_out, rowbytes)
                acc += _row_part(x_ptr, m, cb_ptr, rn, kk, code, n_out, in_features, group_size, n_codes)
        if HAS_BIAS:
            acc += tl.load(bias_ptr + rn, mask=rn < n_out, other=0.0).to(tl.float32)
        tl.store(y_ptr + m * n_out + rn, acc.to(y_ptr.dtype.element_ty), mask=rn < n_out)

    @triton.jit
    def _gemm_kernel(x_ptr, idx_ptr, cb_ptr, bias_ptr, y_ptr, M, n_out, in_features, rowbytes, group_size, n_codes,
                     HAS_BIAS: tl.constexpr, FOUR: tl.constexpr, FP32: tl.constexpr, LOWP_DOT: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, in_features, BLOCK_K):
            if FOUR:
                kb = k0 // 2 + tl.arange(0, BLOCK_K // 2)
                xe = _load_x(x_ptr, rm, 2 * kb, M, in_features)
                xo = _load_x(x_ptr, rm, 2 * kb + 1, M, in_features)
                byte = _load_idx(idx_ptr, rn, kb, n_out, rowbytes)
                acc += _tile_part(xe, cb_ptr, rn, 2 * kb, byte & 15, n_out, in_features, group_size, n_codes,
                                  FP32, LOWP_DOT)
                acc += _tile_part(xo, cb_ptr, rn, 2 * kb + 1, byte >> 4, n_out, in_features, group_size, n_codes,
                                  FP32, LOWP_DOT)
            else:
                kk = k0 + tl.arange(0, BLOCK_K)
                xt = _load_x(x_ptr, rm, kk, M, in_features)
                code = _load_idx(idx_ptr, rn, kk, n_out, rowbytes)
                acc += _tile_part(xt, cb_ptr, rn, kk, code, n_out, in_features, group_size, n_codes, FP32, LOWP_DOT)
        if HAS_BIAS:
            acc += tl.load(bias_ptr + rn, mask=rn < n_out, other=0.0).to(tl.float32)[None, :]
        ymask = (rm[:, None] < M) & (rn[None, :] < n_out)
        tl.store(y_ptr + rm[:, None] * n_out + rn[None, :], acc.to(y_ptr.dtype.element_ty), mask=ymask)


def _interpreted() -> bool:
    """bf16/fp16 ``tl.dot`` gives wrong results under TRITON_INTERPRET (checked with triton 3.9)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _supported(x, indices, codebook, bias, in_features, group_size, index_bits) -> bool:
    if not AVAILABLE or x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return False
    if indices.dtype != torch.uint8 or indices.dim() != 2 or codebook.dim() != 2 or index_bits not in (4, 8):
        return False
    rowbytes = in_features if index_bits == 8 else (in_features + 1) // 2
    if indices.shape[1] != rowbytes or in_features < 1 or group_size < 1:
        return False
    if codebook.shape[0] * group_size < indices.shape[0] or x.shape[-1] != in_features:
        return False
    return bias is None or bias.shape == (indices.shape[0],)


def _check_blocks(block_m: int | None, block_n: int, block_k: int, index_bits: int) -> None:
    """Tiles the kernels can take: powers of two (``tl.arange``), at least 16 per side of a
    ``tl.dot`` (a 4-bit tile multiplies two halves of block_k features). block_m None: the GEMV,
    which takes no block_m and no dot (any block_n)."""
    least_k = 32 if index_bits == 4 else 16
    sides = (("block_n", block_n, 16 if block_m is not None else 1), ("block_k", block_k, least_k))
    for name, v, least in sides + ((("block_m", block_m, 16),) if block_m is not None else ()):
        if not isinstance(v, int) or v < least or v & (v - 1):
            raise ValueError(f"{name}={v!r}: a power of two >= {least} is needed"
                             + (" (4-bit indices)" if name == "block_k" and index_bits == 4 else ""))


def lut_linear_triton(x, indices, codebook, bias, in_features, group_size, index_bits,
                      block_m=32, block_n=64, block_k=64, path=None):
    """y = x @ W^T + bias on indices + codebook with the Triton kernels (GPU, or CPU when interpreted).
    ``path`` None: up to ``GEMV_MAX_ROWS`` rows of x the GEMV (one program per row and block_n
    outputs), more the GEMM; "gemv" / "gemm" choose one (both take any number of rows)."""
    if path not in (None, "gemv", "gemm"):
        raise ValueError(f"path={path!r}: None, 'gemv' or 'gemm'")
    if not _supported(x, indices, codebook, bias, in_features, group_size, index_bits):
        return reference.lut_linear(x, indices, codebook, bias, in_features, group_size, index_bits)
    n_out = indices.shape[0]
    x2 = x.reshape(-1, in_features).contiguous()
    m = x2.shape[0]
    y = torch.empty(m, n_out, dtype=x.dtype, device=x.device)
    if m == 0:
        return y.reshape(*x.shape[:-1], n_out)
    cb = codebook.to(x.dtype).contiguous()  # the values the reference computes with
    idx = indices.contiguous()
    b = bias.contiguous() if bias is not None else y  # dummy pointer when HAS_BIAS is False
    common = (n_out, in_features, idx.shape[1], group_size, cb.shape[1])
    gemv = path == "gemv" or (path is None and m <= GEMV_MAX_ROWS)
    _check_blocks(None if gemv else block_m, block_n, block_k, index_bits)
    if gemv:
        grid = (m, triton.cdiv(n_out, block_n))
        _gemv_kernel[grid](x2, idx, cb, b, y, *common, HAS_BIAS=bias is not None, FOUR=index_bits == 4,
                           BLOCK_N=block_n, BLOCK_K=block_k, **LAUNCH_OPTIONS)
    else:
        grid = (triton.cdiv(m, block_m), triton.cdiv(n_out, block_n))
        _gemm_kernel[grid](x2, idx, cb, b, y, m, *common, HAS_BIAS=bias is not None, FOUR=index_bits == 4,
                           FP32=x.dtype == torch.float32, LOWP_DOT=not _interpreted(), BLOCK_M=block_m,
                           BLOCK_N=block_n, BLOCK_K=block_k, **LAUNCH_OPTIONS)
    return y.reshape(*x.shape[:-1], n_out)


if AVAILABLE:
    register_kernel("cuda")(lut_linear_triton)
