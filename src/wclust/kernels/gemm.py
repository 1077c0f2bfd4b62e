"""Fused LUT-GEMM for many rows of x (csrc/lut_gemm.c via ctypes): y = x @ W^T + b computed from
indices + codebook without materializing W, float32 compute and accumulation.

``lut_gemm`` returns None when the layout, dtype or CPU is not supported (no AVX-512 VBMI, a lower
ISA forced with ``cpu.force_isa``, no C library): the caller then uses its other path.
"""
from __future__ import annotations

import ctypes
import torch

from .. import _native
from . import cpu

_vp, _i64, _int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_SIGNATURES = {
    "wc_lut_gemm_f32": (_int, [_vp, _i64, _i64, _vp, _i64, _int, _vp, _i64, _i64, _i64, _vp, _vp, _int]),
}
_FN = None


def _fn():
    global _FN
    if _FN is None:
        lib = cpu.native()
        if lib is None or getattr(lib, "wc_lut_gemm_f32", None) is None:
            return None
        _native.declare(lib, _SIGNATURES)
        _FN = lib.wc_lut_gemm_f32
    return _FN


def lut_gemm(x2, indices, codebook, bias, in_features, group_size, index_bits) -> torch.Tensor | None:
    """(M, out) float32 = x2 (M, in) float32 @ W^T + bias, or None if not supported here."""
    fn = _fn()
    if fn is None or x2.dtype != torch.float32 or x2.dim() != 2:
        return None
    if not cpu._supported(x2, indices, codebook, bias, in_features, group_size, index_bits):
        return None
    xf = x2.contiguous()
    cb = codebook.float().contiguous()
    b = None if bias is None else bias.float().contiguous()
    idx = indices.contiguous()
    m, out = xf.shape[0], indices.shape[0]
    y = torch.empty(m, out, dtype=torch.float32)
    rc = fn(cpu._ptr(xf), m, in_features, cpu._ptr(idx), out, index_bits, cpu._ptr(cb), cb.shape[0], cb.shape[1],
            group_size, cpu._ptr(b), cpu._ptr(y), torch.get_num_threads())
    if rc == 1:
        return None
    if rc:
        raise MemoryError("wc_lut_gemm_f32 failed")
    return y
