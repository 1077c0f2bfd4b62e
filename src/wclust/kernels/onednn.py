"""bf16 compute with the weight dequantized straight into oneDNN's packed layout.

torch's bf16 matmul on a CPU (oneDNN, on AMX where there is one) repacks a plain (out, in)
weight into its own blocked layout on every call, which a pre-packed weight avoids (the paths
side by side: ``python benchmarks/gemm.py --bf16``, ``benchmarks/results/gemm_bf16_1thread.json``,
``*_bf16_plain`` against ``*_bf16_packed``). A clustered layer is
dequantized on every call anyway, so the C kernel (``wc_lut_dequant_packed``) writes the bf16
values where oneDNN wants them, into a per-thread packed scratch tensor, and
``torch.ops.mkldnn._linear_pointwise`` multiplies without repacking.

The packed layout belongs to oneDNN, not to us: it is probed once per (out, in, rows) by packing
a weight of known values and reading the bytes back; only the layout the C kernel writes is
accepted (blocks of 16k output rows, feature pairs; ``packed_at`` in csrc/internal.h), anything
else keeps the plain path (dequantize + ``F.linear``). ``WCLUST_NO_PACKED_BF16=1`` turns it off.
"""
from __future__ import annotations

import ctypes
import functools
import os
import threading

import torch

ENABLED = not os.environ.get("WCLUST_NO_PACKED_BF16")
# Packed scratch per thread: one tensor per weight shape in use, within SCRATCH_BYTES. A shape that
# does not fit takes the plain path (whose one scratch fits the largest layer); to make room, only
# tensors idle for IDLE_CALLS packed calls are dropped (a model that left), never ones the running
# model keeps using: those would be re-made on every call.
SCRATCH_BYTES = 64 << 20
IDLE_CALLS = 1000
_layouts: dict[tuple, tuple | None] = {}  # (out, in, rows) -> (rows per block, padded in) or None
_local = threading.local()
_lock = threading.Lock()


@functools.cache
def _ops():
    """torch's oneDNN ops used here, or None where this torch build lacks them (looked up once)."""
    mk = getattr(torch.ops, "mkldnn", None)
    try:
        return (mk._reorder_linear_weight, mk._linear_pointwise, mk.data_ptr, mk._nbytes) \
            if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):
        return None


def _raw(packed: torch.Tensor) -> torch.Tensor:
    """A copy of a packed (opaque) oneDNN tensor's bytes, as int16."""
    _, _, data_ptr, nbytes = _ops()
    n = int(nbytes(packed)) // 2
    buf = (ctypes.c_int16 * n).from_address(int(data_ptr(packed)))
    return torch.frombuffer(bytearray(buf), dtype=torch.int16)


def _probe(n_out: int, n_in: int, rows: int) -> tuple | None:
    ops = _ops()
    if ops is None:
        return None
    reorder = ops[0]
    r = (torch.arange(n_out, dtype=torch.int64) * 131 % 251).to(torch.int16)[:, None]
    c = (torch.arange(n_in, dtype=torch.int64) * 17 % 251).to(torch.int16)[None, :]
    known = ((r + c) % 251 + 1).to(torch.bfloat16)  # small integers: exact in bf16, never 0; int16 keeps it light
    try:
        raw = _raw(reorder(known, rows))
    except RuntimeError:
        return None
    total = raw.numel()
    for nb in (32, 64, 16, 48):
        n_pad = -(-n_out // nb) * nb
        if total % n_pad or (total // n_pad) < n_in or (total // n_pad) % 2:
            continue
        k_pad = total // n_pad
        want = torch.zeros(n_pad, k_pad, dtype=torch.bfloat16)
        want[:n_out, :n_in] = known
        want = want.view(n_pad // nb, nb, k_pad // 2, 2).permute(0, 2, 1, 3).reshape(-1)
        if torch.equal(want.view(torch.int16), raw):
            return nb, k_pad
    return None


def layout(n_out: int, n_in: int, rows: int) -> tuple | None:
    """(rows per block, padded features) of oneDNN's packed bf16 weight for this shape and number
    of rows of x, when it is the layout the C kernel writes; None otherwise (probed once)."""
    key = (n_out, n_in, rows)
    if key not in _layouts:
        with _lock:
            if key not in _layouts:
                _layouts[key] = _probe(n_out, n_in, rows)
    return _layouts[key]


def _scratch(n_out: int, n_in: int, rows: int, lay: tuple) -> list | None:
    """[packed tensor, its data pointer, bytes, last use]: this thread's zero-padded packed scratch
    for a shape; None when it does not fit (see SCRATCH_BYTES)."""
    cache = getattr(_local, "packed", None)
    if cache is None:
        cache = _local.packed = {}
    tick = _local.tick = getattr(_local, "tick", 0) + 1
    key = (n_out, n_in) + lay
    e = cache.get(key)
    if e is not None:
        e[3] = tick
        return e
    nb, k_pad = lay
    need = -(-n_out // nb) * nb * k_pad * 2
    if need > SCRATCH_BYTES:
        return None
    used = sum(v[2] for v in cache.values())
    for k, v in sorted(cache.items(), key=lambda kv: kv[1][3]):  # idle ones, oldest first
        if used + need <= SCRATCH_BYTES or tick - v[3] < IDLE_CALLS:
            break
        del cache[k]
        used -= v[2]
    if used + need > SCRATCH_BYTES:
        return None
    ops = _ops()
    packed = ops[0](torch.zeros(n_out, n_in, dtype=torch.bfloat16), rows)
    if int(ops[3](packed)) != need:
        raise RuntimeError("oneDNN packed a weight to another size than probed")
    e = cache[key] = [packed, int(ops[2](packed)), need, tick]
    return e


def release_scratch() -> None:
    """Free this thread's packed scratch tensors."""
    _local.packed = {}


def linear(lib, x2, indices, codebook, bias, in_features, group_size, index_bits):
    """(M, out) bf16 = x2 (M, in) bf16 @ W^T + bias with W written packed from indices + bf16
    codebook (layout already checked by the caller); None where the packed path does not apply."""
    if not ENABLED or x2.dtype is not torch.bfloat16:
        return None
    n_out, m = indices.shape[0], x2.shape[0]
    lay = layout(n_out, in_features, m)
    if lay is None:
        return None
    scratch = _scratch(n_out, in_features, m, lay)
    if scratch is None:
        return None
    packed, ptr = scratch[0], scratch[1]
    cb = codebook.float().contiguous()
    idx = indices.contiguous()
    rc = lib.wc_lut_dequant_packed(idx.data_ptr(), n_out, in_features, index_bits, cb.data_ptr(), cb.shape[0],
                                   cb.shape[1], group_size, ptr, lay[0], lay[1], torch.get_num_threads())
    if rc:
        raise MemoryError("wc_lut_dequant_packed failed")
    x2 = x2 if x2.is_contiguous() else x2.contiguous()
    return _ops()[1](x2, packed, bias, "none", [], "")
