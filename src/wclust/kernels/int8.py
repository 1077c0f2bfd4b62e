"""Integer compute on indices: the numeric, its float64 reference, and the C kernels' calls.

The numeric (the C side: csrc/portable/int8_c.c, csrc/x86/avx2_int8.c):
- each codebook group is rounded to int8 with one scale, ``s = max|c| / 127``, ``q = rint(c / s)``;
- each row of x (a token) to 7 bits with a zero point, as torch's int8 dynamic quantization does on
  x86 (``reduce_range``): ``lo = min(x, 0)``, ``hi = max(x, 0)``, ``s = (hi - lo) / 127``,
  ``z = clamp(rint(-lo / s), 0, 127)``, ``xq = clamp(rint(x * (1 / s)) + z, 0, 127)``;
- ``acc = sum xq q`` and ``rs = sum q`` exactly in integers; ``y = (acc - z rs) s_x s_g + bias``.
So the product of int8 weights with activations runs on integer multiply-adds (vpmaddubsw /
VNNI), with no float weight ever formed. ``reference_linear`` computes the same in float64 from the
quantized integers (exact sums); the C kernels differ from it only by float32 rounding of the
final scaling.
"""
from __future__ import annotations

import torch

from . import choice, cpu, reference

QMAX_X = 127  # 7-bit activations: u8 x s8 pair sums of vpmaddubsw cannot saturate
QMAX_W = 127


def quantize_codebook(codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_groups, K) codebook -> (int8 values (n_groups, K), float32 scales (n_groups,))."""
    cb = codebook.detach().float()
    s = cb.abs().amax(dim=1) / QMAX_W
    s = torch.where((s > 0) & torch.isfinite(s), s, torch.ones_like(s))
    q = torch.round(cb / s[:, None]).clamp(-QMAX_W, QMAX_W).to(torch.int8)
    return q, s


def quantize_activations(x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(M, in) float32 -> (uint8 values in 0..127, float32 scales (M,), int32 zero points (M,))."""
    x = x2.detach().float()
    lo = x.amin(dim=1).clamp(max=0) if x.shape[1] else torch.zeros(x.shape[0])
    hi = x.amax(dim=1).clamp(min=0) if x.shape[1] else torch.zeros(x.shape[0])
    s = (hi - lo) / QMAX_X
    s = torch.where((s > 0) & torch.isfinite(s), s, torch.ones_like(s))
    z = torch.round(-lo / s).clamp(0, QMAX_X)
    inv = 1.0 / s
    q = (torch.round(x * inv[:, None]) + z[:, None]).clamp(0, QMAX_X).to(torch.uint8)
    return q, s, z.to(torch.int32)


def reference_linear(x, indices, codebook, bias, in_features, group_size, index_bits) -> torch.Tensor:
    """float64 y (x's leading shape, out) of the int8 numeric: exact integer sums, then the scales."""
    x2 = x.reshape(-1, in_features)
    xq, xs, xz = quantize_activations(x2)
    q, qs = quantize_codebook(codebook)
    idx = reference.unpack_rows(indices, in_features, index_bits).long()
    out = idx.shape[0]
    g = torch.arange(out) // group_size
    w = q.long()[g[:, None], idx]                       # (out, in) int weights
    acc = xq.long() @ w.t()                             # exact in int64
    rs = w.sum(dim=1)
    y = (acc - xz.long()[:, None] * rs[None, :]).double() * (xs.double()[:, None] * qs.double()[g][None, :])
    if bias is not None:
        y = y + bias.double()
    return y.reshape(*x.shape[:-1], out)


def available() -> bool:
    """Whether the C int8 kernels are here (any CPU: portable C where there is no SIMD kernel; a
    stale library without them is refused by _native.lib)."""
    return cpu.native() is not None


def _entry(m: int):
    """The C entry for m rows of x: the kernel-choice table's int8 rule (choice.choose: the GEMV up to
    INT8_GEMV_MAX_ROWS rows, the panel GEMM above), without building a Case per call."""
    lib = cpu.native()
    return lib.wc_lut_plan_gemv_i8 if m <= choice.INT8_GEMV_MAX_ROWS else lib.wc_lut_plan_gemm_i8


def _written(rc: int) -> bool:
    """A C call's return code: True y was written, False no kernel for this layer (too many features
    for exact int32 sums); a failure raises."""
    if rc == 1:
        return False
    if rc:
        raise MemoryError("wc_lut_plan_gemv_i8 / gemm_i8 failed")
    return True


def _fast(x, indices, codebook, bias, in_features, group_size, index_bits) -> torch.Tensor | None:
    """A model's weight (float32 codebook and bias, contiguous, few groups) through its cached
    entry and plan (cpu._fast_entry: the layout checked once), straight to the C call: at one
    token a layer's whole product takes tens of microseconds, so the Python around it counts."""
    if x.dtype is not torch.float32 or not x.is_contiguous() or x.shape[-1] != in_features:
        return None
    e = cpu._fast_entry(indices, codebook, bias, in_features, group_size, index_bits)
    if e[4] is None:
        return None
    sig, m = e[0], x.numel() // in_features
    fn = _entry(m)
    y = torch.empty(*x.shape[:-1], sig[3][0], dtype=torch.float32)
    if m == 0:
        return y
    args = (sig[1], x.data_ptr(), m, sig[0], sig[2], y.data_ptr(), torch.get_num_threads())
    rc = fn(e[4].ptr, *args)
    if rc == cpu.STALE:  # the codebook's values were changed in place: a new plan
        cpu._fast[False].pop(id(indices), None)
        rc = fn(cpu.plan(codebook, in_features, indices.shape[0], index_bits, group_size, fresh=True).ptr, *args)
    return y if _written(rc) else None


def linear(x, indices, codebook, bias, in_features, group_size, index_bits) -> torch.Tensor | None:
    """float32 y = x @ W^T + bias in the int8 numeric, by the C kernels (GEMV for few rows of x,
    GEMM for many); None where they do not take the call (no C library, a layout or dtype they do
    not take: the caller goes to ``reference_linear``)."""
    if not available():
        return None
    y = _fast(x, indices, codebook, bias, in_features, group_size, index_bits)
    if y is not None:
        return y
    if x.shape[-1] != in_features or not cpu.layout_supported(
            indices, codebook, bias, in_features, group_size, index_bits):
        return None
    x2 = x.reshape(-1, in_features)
    xf = x2 if x2.dtype is torch.float32 and x2.is_contiguous() else x2.float().contiguous()
    cb = codebook if codebook.dtype is torch.float32 and codebook.is_contiguous() else codebook.float().contiguous()
    b = None if bias is None else (bias if bias.dtype is torch.float32 and bias.is_contiguous()
                                   else bias.float().contiguous())
    idx = indices if indices.is_contiguous() else indices.contiguous()
    m, out = xf.shape[0], idx.shape[0]
    y = torch.empty(m, out, dtype=torch.float32)
    if m:
        fn = _entry(m)
        args = (cb.data_ptr(), xf.data_ptr(), m, idx.data_ptr(), None if b is None else b.data_ptr(), y.data_ptr(),
                torch.get_num_threads())
        if cb.shape[0] <= cpu.PLAN_MAX_GROUPS:  # a model's codebook: its plan is kept
            rc = fn(cpu.plan(cb, in_features, out, index_bits, group_size).ptr, *args)
            if rc == cpu.STALE:
                rc = fn(cpu.plan(cb, in_features, out, index_bits, group_size, fresh=True).ptr, *args)
        else:  # many groups: a plan for this call only
            p = cpu.one_off_plan(cb, in_features, out, index_bits, group_size)
            rc = fn(p.ptr, *args)
        if not _written(rc):
            return None
    return y.reshape(*x.shape[:-1], out)
