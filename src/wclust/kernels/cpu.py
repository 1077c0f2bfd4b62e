"""CPU kernel of ``wclust::lut_linear``: the plain-C LUT kernels (csrc/api.c) via ctypes.

- few rows of x (``M <= gemv_rows(...)``: 8, or 12 without the fused GEMM; bf16: 1-3 with AMX): the
  C GEMV computes on indices + codebook directly (in-register lookups), float32 accumulation. Calls
  go first through ``fast_gemv``, the per-weight cache ClusteredLinear also uses (layout checked
  once, not per call); bf16 compute there uses a bf16 plan (codebook rounded to bf16 once, x, bias
  and result rounded in C: the values of the casts around the float32 GEMV).
- many rows, float32: the fused LUT-GEMM (``lut_gemm``, csrc/x86/avx512_gemm.c) looks indices up
  into L1-resident weight panels inside a register-blocked GEMM: W is never materialized.
- many rows (up to ``AMX_MAX_ROWS``), bf16, on a CPU with AMX: the fused bf16 LUT-GEMM
  (``amx_linear``, csrc/x86/amx_bf16.c) dequantizes 32 output rows at a time into an L2-resident tile
  panel and multiplies on the AMX tiles; float32 x and y straight in and out where the caller asks
  (ClusteredLinear with compute_dtype=bfloat16: no casts around the call, the same values).
- many rows, bf16, beyond that or no AMX kernel here: dequantized straight into oneDNN's packed
  weight layout, then its bf16 matmul without repacking (``onednn.linear``).
- many rows otherwise (no packed layout here, or a CPU without AVX-512 VBMI): the C code
  dequantizes the whole layer into one reused per-thread scratch buffer (float32 or bfloat16),
  then torch's matmul (MKL sgemm / oneDNN bf16).
Float32 codebooks of a few groups (a model's buffers) get a *plan*: their lookup tables built once
in C and kept, so a call passes 8 arguments and builds nothing (``plan``); the C side compares the
codebook with the plan's copy on every call, so values changed in place are never computed stale.
Threads follow ``torch.get_num_threads()``. Anything else (other dtypes, no C library, odd
layouts) goes to the pure-torch reference, so every layout the reference handles works.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import weakref

import torch
import torch.nn.functional as F

from .. import _native
from . import choice, onednn, reference
from .ops import register_kernel

# crossovers and the choice of kernel: kernels/choice.py (one table)
GEMV_MAX_ROWS, AMX_MAX_ROWS = choice.GEMV_MAX_ROWS, choice.AMX_MAX_ROWS
_fused = False  # the fused LUT-GEMM runs here (AVX-512 VBMI, not lowered by force_isa)
_amx = False  # the AMX bf16 kernel runs here (AMX tiles allowed by the OS, not lowered by force_isa)
AMX_ENABLED = not os.environ.get("WCLUST_NO_AMX")  # WCLUST_NO_AMX=1: bf16 compute takes oneDNN's path


def case(rows: int, index_bits: int, k: int, compute: str = "fp32", device: str = "cpu") -> choice.Case:
    """The kernel-choice case of a call on this machine as it runs now (ISA level, AMX, oneDNN)."""
    lib = native()
    return choice.Case(device, isa(), compute, rows, index_bits, k, amx_available(),
                       lib is not None and _fused and onednn.ENABLED and onednn._ops() is not None)


def gemv_rows(k: int, dtype: torch.dtype = torch.float32) -> int:
    """Most rows of x the C GEMV takes for a codebook of ``k`` entries (choice.gemv_rows)."""
    return choice.gemv_rows(case(1, 8, k, "bf16" if dtype is torch.bfloat16 else "fp32"))


ISA_NAMES = {0: "portable-c", 1: "avx2", 2: "avx512-vbmi", 3: "neon", 4: "neon-dotprod"}

_vp, _i64, _int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_SIGNATURES = {
    "wc_lut_isa": (_int, []),
    "wc_lut_force_isa": (_int, [_int]),
    # y = x . W^T + bias from indices + codebook; both take the same arguments
    "wc_lut_gemv_f32": (_int, [_vp, _i64, _i64, _vp, _i64, _int, _vp, _i64, _i64, _i64, _vp, _vp, _int]),
    "wc_lut_gemm_f32": (_int, [_vp, _i64, _i64, _vp, _i64, _int, _vp, _i64, _i64, _i64, _vp, _vp, _int]),
    "wc_lut_dequant": (_int, [_vp, _i64, _i64, _int, _vp, _i64, _i64, _i64, _vp, _int, _int]),
    # dequantize to bf16 in oneDNN's packed layout (kernels/onednn.py): ..., w, rows per block, padded in, threads
    "wc_lut_dequant_packed": (_int, [_vp, _i64, _i64, _int, _vp, _i64, _i64, _i64, _vp, _i64, _i64, _int]),
    "wc_lut_use_openmp": (_int, [ctypes.c_char_p]),
    # plans: a codebook's lookup tables built once (csrc/api.c), then per call only
    # (plan, codebook, x, M, indices, bias, y, threads); 2 = the codebook changed since
    "wc_lut_plan_new": (_vp, [_vp, _i64, _i64, _i64, _i64, _int, _i64]),
    "wc_lut_plan_new_bf16": (_vp, [_vp, _i64, _i64, _i64, _i64, _int, _i64]),  # same arguments
    "wc_lut_plan_free": (None, [_vp]),
    "wc_lut_plan_gemv": (_int, [_vp, _vp, _vp, _i64, _vp, _vp, _vp, _int]),
    "wc_lut_plan_gemm": (_int, [_vp, _vp, _vp, _i64, _vp, _vp, _vp, _int]),
    # bf16 compute on AMX (csrc/x86/amx_bf16.c): x, x is bf16, M, in, indices, out, index_bits, codebook,
    # n_groups, K, group_size, bias (float32, rounded to bf16 inside), y, y is bf16, threads
    "wc_lut_gemm_bf16": (_int, [_vp, _int, _i64, _i64, _vp, _i64, _int, _vp, _i64, _i64, _i64, _vp, _vp, _int, _int]),
    "wc_lut_amx": (_int, []),
    # int8 compute (kernels/int8.py): the same arguments as wc_lut_plan_gemv
    "wc_lut_plan_gemv_i8": (_int, [_vp, _vp, _vp, _i64, _vp, _vp, _vp, _int]),
    "wc_lut_plan_gemm_i8": (_int, [_vp, _vp, _vp, _i64, _vp, _vp, _vp, _int]),
    # its quantizers: x, M, in, xq, ldq, scales, zero points; codebook, n_groups, K, qtab, scales
    "wc_i8_quantize_x": (None, [_vp, _i64, _i64, _vp, _i64, _vp, _vp]),
    "wc_i8_quantize_codebook": (None, [_vp, _i64, _i64, _vp, _vp]),
}
_declared = False
_GEMV = _GEMM = _PLAN_GEMV = _PLAN_GEMM = _PLAN_NEW = _PLAN_NEW_BF16 = _PLAN_FREE = None
_local = threading.local()


def native():
    """The C library with the LUT kernels, or None (not built, or disabled by WCLUST_NO_NATIVE)."""
    global _declared, _GEMV, _GEMM, _PLAN_GEMV, _PLAN_GEMM, _PLAN_NEW, _PLAN_NEW_BF16, _PLAN_FREE
    lib = _native.lib()  # None (and a warning, once) for a stale build that lacks a function of wclust.h
    if lib is None:
        return None
    if not _declared:
        _native.declare(lib, _SIGNATURES)
        _GEMV, _GEMM = lib.wc_lut_gemv_f32, lib.wc_lut_gemm_f32
        _PLAN_GEMV, _PLAN_GEMM = lib.wc_lut_plan_gemv, lib.wc_lut_plan_gemm
        _PLAN_NEW, _PLAN_NEW_BF16, _PLAN_FREE = lib.wc_lut_plan_new, lib.wc_lut_plan_new_bf16, lib.wc_lut_plan_free
        _set_fused(lib)
        _declared = True
        use_openmp(lib)
    return lib


_OPENMP_NAMES = ("libgomp", "libiomp5", "libomp")
openmp_runtime: str | None = None  # the OpenMP library the kernels' threads come from, if any


def _loaded_openmp() -> str | None:
    """Path of the OpenMP runtime torch uses, from /proc/self/maps: the one inside torch's own
    folder when several are loaded (e.g. scikit-learn's beside torch's), else the first found."""
    found = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)  # address perms offset dev inode [path]
                path = parts[5].strip() if len(parts) == 6 else ""
                name = os.path.basename(path)
                if name.startswith(_OPENMP_NAMES) and ".so" in name and path not in found:
                    found.append(path)
    except OSError:
        return None
    torch_dir = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
    return next((p for p in found if p.startswith(torch_dir)), found[0] if found else None)


def use_openmp(lib) -> None:
    """Run the C kernels' threads on torch's OpenMP team (the same threads as torch's own ops)
    instead of a private pthread pool, unless WCLUST_PTHREADS=1 or no OpenMP runtime is loaded."""
    global openmp_runtime
    if getattr(lib, "wc_lut_use_openmp", None) is None:
        return
    path = None if os.environ.get("WCLUST_PTHREADS", "") not in ("", "0") else _loaded_openmp()
    ok = lib.wc_lut_use_openmp(path.encode() if path else None)
    openmp_runtime = path if ok == 1 else None


def _set_fused(lib) -> None:
    global _fused, _amx
    _fused = lib.wc_lut_isa() == 2  # AVX-512 VBMI; ARM64's levels (3 NEON, 4 dot product) have no fused GEMM
    _amx = getattr(lib, "wc_lut_amx", None) is not None and bool(lib.wc_lut_amx())


def isa() -> str:
    lib = native()
    return "reference" if lib is None else ISA_NAMES[lib.wc_lut_isa()]


@contextlib.contextmanager
def force_isa(level: int):
    """Use at most ISA ``level`` (0 portable C, 1 AVX2, 2 AVX-512) inside the block (tests)."""
    lib = native()
    lib.wc_lut_force_isa(level)
    _set_fused(lib)
    try:
        yield
    finally:
        lib.wc_lut_force_isa(-1)
        _set_fused(lib)


def _scratch(numel: int, dtype: torch.dtype) -> torch.Tensor:
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    buf = bufs.get(dtype)
    if buf is None or buf.numel() < numel:
        buf = bufs[dtype] = torch.empty(numel, dtype=dtype)
    return buf[:numel]


def release_scratch() -> None:
    """Free this thread's dequantization buffers (plain and packed)."""
    _local.bufs = {}
    onednn.release_scratch()


_FLOATS = (torch.float32, torch.bfloat16)
_CODEBOOK_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _supported(x, indices, codebook, bias, in_features, group_size, index_bits) -> bool:
    """Cheap checks (this runs on every call): the C kernel's layout, else the reference."""
    if not x.is_cpu or x.dtype not in _FLOATS or x.shape[-1] != in_features:
        return False
    return layout_supported(indices, codebook, bias, in_features, group_size, index_bits)


def layout_supported(indices, codebook, bias, in_features, group_size, index_bits) -> bool:
    """Whether the C kernels take this weight (indices, codebook, bias) as it is laid out."""
    if not (indices.is_cpu and codebook.is_cpu):
        return False
    if indices.dtype != torch.uint8 or codebook.dtype not in _CODEBOOK_DTYPES or codebook.dim() != 2:
        return False
    if index_bits not in (4, 8) or indices.dim() != 2 or in_features < 1 or group_size < 1:
        return False
    n_groups, k = codebook.shape
    out, rowbytes = indices.shape
    if rowbytes != (in_features if index_bits == 8 else (in_features + 1) // 2):
        return False
    if not 1 <= k <= (16 if index_bits == 4 else 256) or n_groups * group_size < out:
        return False
    return bias is None or (bias.is_cpu and bias.dim() == 1 and bias.shape[0] == out)


def dequantize_into(indices, codebook, in_features, group_size, index_bits, dtype=torch.float32, out=None):
    """(out, in) weight in float32 or bfloat16 from the C kernel (``codebook`` already in ``dtype``), written
    into ``out`` where given (a reused buffer); ``reference.dequantize`` is the pure-torch one."""
    lib = native()
    n_out = indices.shape[0]
    cb = codebook.to(dtype).float().contiguous()
    w = torch.empty(n_out, in_features, dtype=dtype) if out is None else out.view(n_out, in_features)
    idx = indices.contiguous()
    rc = lib.wc_lut_dequant(idx.data_ptr(), n_out, in_features, index_bits, cb.data_ptr(), cb.shape[0], cb.shape[1],
                            group_size, w.data_ptr(), int(dtype == torch.bfloat16), torch.get_num_threads())
    if rc:
        raise MemoryError("wc_lut_dequant failed")
    return w


class _Plan:
    """A C plan (``wc_lut_plan_new``): one codebook's lookup tables, freed with the object."""
    __slots__ = ("ptr",)

    def __init__(self, ptr: int):
        self.ptr = ptr

    def __reduce__(self):  # a copy or pickle never shares (and double-frees) the C object
        return _Plan, (0,)

    def __del__(self):
        free = _PLAN_FREE
        if self.ptr and free is not None:
            free(self.ptr)
            self.ptr = None


# Plans of codebooks that live on (a model's buffers), by (id(codebook), bf16): (weak reference,
# key, plan); the entry goes when the codebook is freed. The key holds the data pointer and shape;
# values changed in place are caught by the C side, which compares the codebook with the plan's
# copy on every call (return code 2) and then the plan is rebuilt.
_plans: dict[tuple, tuple] = {}
PLAN_MAX_GROUPS = 64  # a plan holds 2 KiB per codebook group: more groups are prepared per call
STALE = 2  # return code of wc_lut_plan_gemv / _gemm: the codebook's values changed


def _drop_plan(key: tuple, ref) -> None:
    e = _plans.get(key)
    if e is not None and e[0] is ref:
        del _plans[key]


def plan(cb: torch.Tensor, in_features: int, n_out: int, index_bits: int, group_size: int, fresh: bool = False,
         bf16: bool = False, values: torch.Tensor | None = None) -> _Plan:
    """The cached plan of contiguous codebook ``cb`` for this layout (built on first use, or anew
    with ``fresh``): float32 compute, or with ``bf16`` the GEMV's bf16 compute
    (``wc_lut_plan_new_bf16``). ``values``: cb's values as a float32 contiguous tensor, where cb
    is not one (a bf16 codebook); the C side reads those."""
    vals = cb if values is None else values
    key = (cb.data_ptr(), cb.shape, in_features, n_out, index_bits, group_size)
    slot = (id(cb), bf16)
    e = _plans.get(slot)
    if not fresh and e is not None and e[1] == key and e[0]() is cb:
        return e[2]
    ptr = (_PLAN_NEW_BF16 if bf16 else _PLAN_NEW)(vals.data_ptr(), vals.shape[0], vals.shape[1], in_features, n_out,
                                                 index_bits, group_size)
    if not ptr:
        raise MemoryError("wc_lut_plan_new failed")
    p = _Plan(ptr)
    ref = weakref.ref(cb, lambda r, k=slot: _drop_plan(k, r))
    _plans[slot] = (ref, key, p)
    return p


def one_off_plan(cb: torch.Tensor, in_features: int, n_out: int, index_bits: int, group_size: int) -> _Plan:
    """A plan not kept in the cache (freed with the object): for codebooks of many groups."""
    if _PLAN_NEW is None:
        native()
    ptr = _PLAN_NEW(cb.data_ptr(), cb.shape[0], cb.shape[1], in_features, n_out, index_bits, group_size)
    if not ptr:
        raise MemoryError("wc_lut_plan_new failed")
    return _Plan(ptr)


def _linear(planned, once, x2, indices, codebook, bias, in_features, group_size, index_bits) -> tuple[int, torch.Tensor]:
    """Call the C GEMV or fused GEMM (same arguments): (its return code, y (M, out) float32).
    A float32 codebook with few groups (a model's) goes through its cached plan."""
    xf = x2 if x2.dtype is torch.float32 and x2.is_contiguous() else x2.float().contiguous()
    if bias is not None and not (bias.dtype is torch.float32 and bias.is_contiguous()):
        bias = bias.float().contiguous()
    idx = indices if indices.is_contiguous() else indices.contiguous()
    m, n_out = xf.shape[0], idx.shape[0]
    y = torch.empty(m, n_out)  # without dtype= it costs 1 us less; the default dtype may not be float32
    if y.dtype is not torch.float32:
        y = torch.empty(m, n_out, dtype=torch.float32)
    bp, nth = None if bias is None else bias.data_ptr(), torch.get_num_threads()
    if codebook.dtype is torch.float32 and codebook.is_contiguous() and codebook.shape[0] <= PLAN_MAX_GROUPS:
        args = (codebook.data_ptr(), xf.data_ptr(), m, idx.data_ptr(), bp, y.data_ptr(), nth)
        rc = planned(plan(codebook, in_features, n_out, index_bits, group_size).ptr, *args)
        if rc == STALE:  # the codebook was changed in place
            rc = planned(plan(codebook, in_features, n_out, index_bits, group_size, fresh=True).ptr, *args)
        return rc, y
    cb = codebook.float().contiguous()
    rc = once(xf.data_ptr(), m, in_features, idx.data_ptr(), n_out, index_bits, cb.data_ptr(),
              cb.shape[0], cb.shape[1], group_size, bp, y.data_ptr(), nth)
    return rc, y


# The few-rows fast path of the op's CPU kernel and of ClusteredLinear: per weight (by id of its
# indices; one table for float32 compute, one for bf16) the planned GEMV's arguments, the layout
# checked in full once. A call then checks only that the same tensors come, not changed in place in
# a way that matters (data pointers, shapes, contiguity; new codebook values are caught by the
# plan, STALE). Weak references: an entry goes with its indices, and a copy of a model (new
# tensors) gets entries and plans of its own.
_fast: dict[bool, dict[int, tuple]] = {False: {}, True: {}}


def _drop_fast(table: dict, key: int, ref) -> None:
    e = table.get(key)
    if e is not None and e[1] is ref:
        del table[key]


def _fast_entry(indices, codebook, bias, in_features, group_size, index_bits, bf16=False) -> tuple:
    """(signature, ref(indices), ref(codebook), ref(bias) or None, plan or None, most x elements)."""
    sig = (indices.data_ptr(), codebook.data_ptr(), None if bias is None else bias.data_ptr(), indices.shape,
           codebook.shape, indices.is_contiguous(), codebook.is_contiguous(), in_features, group_size, index_bits)
    table = _fast[bf16]
    e = table.get(id(indices))
    if (e is not None and e[0] == sig and e[1]() is indices and e[2]() is codebook
            and (bias is None if e[3] is None else e[3]() is bias)):
        return e
    # bf16 compute also takes bf16 codebooks and biases (a model cast to bf16), widened per call
    dtypes = (torch.float32, torch.bfloat16) if bf16 else (torch.float32,)
    ok = (native() is not None and codebook.dtype in dtypes and sig[5] and sig[6]
          and (bias is None or (bias.dtype in dtypes and bias.is_contiguous()))
          and layout_supported(indices, codebook, bias, in_features, group_size, index_bits)
          and codebook.shape[0] <= PLAN_MAX_GROUPS)
    p = None
    if ok:
        p = plan(codebook, in_features, indices.shape[0], index_bits, group_size, bf16=bf16,
                 values=None if codebook.dtype is torch.float32 else codebook.float())
    rows = gemv_rows(codebook.shape[1], torch.bfloat16 if bf16 else torch.float32)
    e = (sig, weakref.ref(indices, lambda r, t=table, k=id(indices): _drop_fast(t, k, r)), weakref.ref(codebook),
         None if bias is None else weakref.ref(bias), p, rows * in_features if ok else 0)
    table[id(indices)] = e
    return e


def fast_gemv(x, indices, codebook, bias, in_features, group_size, index_bits, bf16=False) -> torch.Tensor | None:
    """x @ W^T + bias for a few rows of contiguous x (at most ``gemv_rows``) through the weight's
    cached plan; None where this path does not take the call (the caller goes on).

    float32 compute: float32 x, codebook and bias. ``bf16``: bf16 compute, x, codebook and bias
    float32 or bfloat16, each rounded to bf16, float32 accumulation, the result rounded to bf16 and
    returned as float32 holding those values: what casting to bf16, the op in bf16 and casting back
    give (the same GEMV), without the casts, the dispatcher and a plan built per call."""
    if x.shape[-1] != in_features or not x.is_contiguous() or (
            x.dtype is not torch.float32 and not (bf16 and x.dtype is torch.bfloat16)):
        return None
    e = _fast_entry(indices, codebook, bias, in_features, group_size, index_bits, bf16)
    n = x.numel()
    if not 0 < n <= e[5]:
        return None
    # straight to the C call (a module calls this once per token): y in x's leading shape, and the
    # data pointers the entry's signature already holds (indices, codebook, bias)
    sig = e[0]
    xf, cbv, bv, bp = x, codebook, bias, sig[2]
    if bf16:  # what is bf16 is widened (exactly): the C side reads float32 (kept alive until the call)
        if x.dtype is not torch.float32:
            xf = x.float()
        if codebook.dtype is not torch.float32:
            cbv = codebook.float()  # the values the plan checks
        if bias is not None and bias.dtype is not torch.float32:
            bv = bias.float()
            bp = bv.data_ptr()
    y = torch.empty(*x.shape[:-1], sig[3][0])
    if y.dtype is not torch.float32:
        y = torch.empty(*x.shape[:-1], sig[3][0], dtype=torch.float32)
    args = (sig[1] if cbv is codebook else cbv.data_ptr(), xf.data_ptr(), n // in_features, sig[0], bp,
            y.data_ptr(), torch.get_num_threads())
    rc = _PLAN_GEMV(e[4].ptr, *args)
    if rc == STALE:  # the codebook's values were changed in place: a new plan
        p = plan(codebook, in_features, indices.shape[0], index_bits, group_size, fresh=True, bf16=bf16,
                 values=None if cbv is codebook else cbv)
        _fast[bf16].pop(id(indices), None)
        rc = _PLAN_GEMV(p.ptr, *args)
    if rc:
        raise MemoryError("wc_lut_plan_gemv failed")
    return y


def gemv(x2, indices, codebook, bias, in_features, group_size, index_bits):
    """(M, out) float32 = x2 (M, in) @ W^T + bias, computed on indices + codebook by the C GEMV.

    This runs once per layer per token: it is kept lean (raw data pointers, no wrapper objects),
    since at M = 1 a 768x768 layer's whole GEMV takes ~60 us.
    """
    if _GEMV is None:
        native()
    rc, y = _linear(_PLAN_GEMV, _GEMV, x2, indices, codebook, bias, in_features, group_size, index_bits)
    if rc:
        raise MemoryError("wc_lut_gemv_f32 failed")
    return y


def _gemm(x2, indices, codebook, bias, in_features, group_size, index_bits) -> torch.Tensor | None:
    """The fused LUT-GEMM (csrc/x86/avx512_gemm.c) on a layout already checked; None where this CPU (or
    the ISA level forced by ``force_isa``) has no fused kernel."""
    if _GEMM is None:
        return None
    rc, y = _linear(_PLAN_GEMM, _GEMM, x2, indices, codebook, bias, in_features, group_size, index_bits)
    if rc == 1:
        return None
    if rc:
        raise MemoryError("wc_lut_gemm_f32 failed")
    return y


def amx_available() -> bool:
    """Whether bf16 compute runs on the fused AMX kernel here (CPU, OS and ``force_isa`` permitting)."""
    return native() is not None and _amx and AMX_ENABLED


def bf16_path() -> str:
    """Which kernel bf16 compute runs on here for many rows of x (choice.choose at 197 rows)."""
    return choice.choose(case(197, 8, 64, "bf16"))


def amx_linear(x2, indices, codebook, bias, in_features, group_size, index_bits, out_dtype) -> torch.Tensor | None:
    """(M, out) = x2 (M, in) @ W^T + bias in bf16 compute on AMX: x2 float32 (rounded to bf16 in
    the kernel) or bf16; codebook and bias rounded to bf16 in the kernel; float32 accumulation; the
    result rounded to bf16 and returned as ``out_dtype`` (bfloat16, or float32 holding those bf16
    values). The layout must be checked by the caller; None where there is no AMX kernel."""
    if not amx_available():
        return None
    lib = native()
    xc = x2 if x2.is_contiguous() else x2.contiguous()
    cb = codebook if codebook.dtype is torch.float32 and codebook.is_contiguous() else codebook.float().contiguous()
    if bias is not None and not (bias.dtype is torch.float32 and bias.is_contiguous()):
        bias = bias.float().contiguous()
    idx = indices if indices.is_contiguous() else indices.contiguous()
    m, n_out = xc.shape[0], idx.shape[0]
    y = torch.empty(m, n_out, dtype=out_dtype)
    rc = lib.wc_lut_gemm_bf16(xc.data_ptr(), int(xc.dtype is torch.bfloat16), m, in_features, idx.data_ptr(), n_out,
                              index_bits, cb.data_ptr(), cb.shape[0], cb.shape[1], group_size,
                              None if bias is None else bias.data_ptr(), y.data_ptr(),
                              int(out_dtype is torch.bfloat16), torch.get_num_threads())
    if rc == 1:
        return None
    if rc:
        raise MemoryError("wc_lut_gemm_bf16 failed")
    return y


def amx_module_linear(x, indices, codebook, bias, in_features, group_size, index_bits) -> torch.Tensor | None:
    """ClusteredLinear's bf16-compute path for float32 x: float32 y holding the bf16 result that
    casting x to bf16, the op in bf16 and casting back would give, without the two casts; None
    where the op should take the call (few rows, no AMX here, a layout the C kernels do not take)."""
    if x.dtype is not torch.float32 or x.shape[-1] != in_features or x.dim() < 2:
        return None
    x2 = x if x.dim() == 2 else x.reshape(-1, in_features)
    if not gemv_rows(codebook.shape[1], torch.bfloat16) < x2.shape[0] <= AMX_MAX_ROWS or not amx_available():
        return None
    if not _supported(x2, indices, codebook, bias, in_features, group_size, index_bits):
        return None
    y = amx_linear(x2, indices, codebook, bias, in_features, group_size, index_bits, torch.float32)
    return y if y is None or x.dim() == 2 else y.reshape(*x.shape[:-1], y.shape[-1])


def lut_gemm(x2, indices, codebook, bias, in_features, group_size, index_bits) -> torch.Tensor | None:
    """(M, out) float32 = x2 (M, in) float32 @ W^T + bias by the fused LUT-GEMM, computed from the
    indices without materializing W; None if the layout, dtype or CPU is not supported here."""
    if (native() is None or x2.dtype != torch.float32 or x2.dim() != 2
            or not _supported(x2, indices, codebook, bias, in_features, group_size, index_bits)):
        return None
    return _gemm(x2, indices, codebook, bias, in_features, group_size, index_bits)


@register_kernel("cpu")
def lut_linear_cpu(x, indices, codebook, bias, in_features, group_size, index_bits):
    # few rows: the GEMV with the weight's plan (bf16 x: its bf16 plan; y holds bf16 values)
    bf16 = x.dtype is torch.bfloat16
    y = fast_gemv(x, indices, codebook, bias, in_features, group_size, index_bits, bf16=bf16)
    if y is not None:
        return y.to(torch.bfloat16) if bf16 else y
    if native() is None or not _supported(x, indices, codebook, bias, in_features, group_size, index_bits):
        return reference.lut_linear(x, indices, codebook, bias, in_features, group_size, index_bits)
    dt = x.dtype
    out = indices.shape[0]
    x2 = x if x.dim() == 2 else x.reshape(-1, in_features)
    m = x2.shape[0]
    if m == 0:
        return x.new_empty(*x.shape[:-1], out)
    cb = codebook if codebook.dtype == dt else codebook.to(dt)  # the values the reference computes with
    b = None if bias is None else (bias if bias.dtype == dt else bias.to(dt))
    kernel = choice.choose(case(m, index_bits, codebook.shape[1], "bf16" if bf16 else "fp32"))
    y = None
    if kernel in ("gemv", "gemv-bf16"):
        y = gemv(x2, indices, cb, b, in_features, group_size, index_bits)
        if dt != torch.float32:
            y = y.to(dt)
    elif kernel == "fused-gemm":
        y = _gemm(x2, indices, cb, b, in_features, group_size, index_bits)
    elif kernel == "amx-bf16":
        y = amx_linear(x2, indices, cb, b, in_features, group_size, index_bits, dt)
    if y is None and kernel in ("amx-bf16", "onednn-packed"):  # dequantized into oneDNN's packed layout
        y = onednn.linear(native(), x2, indices, cb, b, in_features, group_size, index_bits)
    if y is None:  # dequantize the layer, then torch's matmul
        w = dequantize_into(indices, cb, in_features, group_size, index_bits, dt, out=_scratch(out * in_features, dt))
        y = F.linear(x2, w, b)
    return y if x.dim() == 2 else y.reshape(*x.shape[:-1], out)
