"""Plans (a codebook's lookup tables built once, csrc/api.c) and the GEMV's index loads.

A plan must never give a stale or wrong result: codebooks changed in place, swapped, freed,
inference tensors, copies and pickles of modules. The GEMV reads indices with loads at byte
offsets past a block, masked in a row's last block: a guard page right after the indices proves
that nothing past them is read.
"""
import copy
import ctypes
import gc
import itertools
import mmap
import pickle

import numpy as np
import pytest
import torch

from wclust.clustering.modules import ClusteredLinear, ClusteredParts
from wclust.kernels import cpu, reference
from wclust.kernels.ops import lut_linear

from .test_kernels_cpu import LEVELS, check, make_layer, ref64

pytestmark = pytest.mark.skipif(cpu.native() is None, reason="C library not built")


def module(out=24, inn=40, k=16, bits=4, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, k, (out, inn), dtype=torch.uint8, generator=g).numpy()
    parts = ClusteredParts((out, inn), idx, torch.randn(1, k, generator=g), out, bits)
    return ClusteredLinear(parts, torch.randn(out, generator=g) if bias else None)


def expected(m, x):
    w = reference.dequantize(m.indices, m.codebook.double(), m.in_features, m.group_size, m.index_bits)
    return x.double() @ w.t() + (0 if m.bias is None else m.bias.double())


@pytest.mark.parametrize("bits", [4, 8])
def test_codebook_changed_in_place_is_seen(bits):
    m, x = module(bits=bits, k=16 if bits == 4 else 200), torch.randn(1, 40)
    with torch.no_grad():
        check(m(x), expected(m, x), 40)
        m.codebook.mul_(-3.0)  # same tensor, same data pointer: the C side sees new values
        check(m(x), expected(m, x), 40)
        m.codebook[0, 1] = 7.5
        check(m(x), expected(m, x), 40)
        check(lut_linear(x, m.indices, m.codebook, m.bias, 40, m.group_size, m.index_bits), expected(m, x), 40)


def test_codebook_swapped_and_resized():
    m, x = module(), torch.randn(2, 40)
    with torch.no_grad():
        m(x)
        m.codebook.data = torch.randn(1, 16)  # no version bump, new storage
        check(m(x), expected(m, x), 40)
        m.codebook = torch.randn(1, 16)  # a new buffer
        check(m(x), expected(m, x), 40)
        m.codebook.set_(torch.randn(1, 16))
        check(m(x), expected(m, x), 40)


def test_inference_tensors():
    """Tensors made under inference_mode have no version counter; plans do not need one."""
    with torch.inference_mode():
        m, x = module(), torch.randn(1, 40)
        check(m(x), expected(m, x), 40)
        m.codebook.add_(1.0)
        check(m(x), expected(m, x), 40)
        y = lut_linear(torch.randn(20, 40), m.indices, m.codebook, m.bias, 40, m.group_size, m.index_bits)
        assert y.shape == (20, 24)


def test_copies_and_pickles_rebuild_their_plans():
    m, x = module(), torch.randn(1, 40)
    with torch.no_grad():
        y = m(x)
        mine = cpu._fast[False][id(m.indices)][4]
        for c in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
            assert torch.equal(c(x), y)
            assert cpu._fast[False][id(c.indices)][4] is not mine  # its own plan
        del c
        gc.collect()
        assert torch.equal(m(x), y)  # the original's plan was not freed by the copies


def test_plans_go_with_their_codebooks():
    before = len(cpu._plans)
    cbs = [torch.randn(1, 16) for _ in range(5)]
    idx = torch.randint(0, 16, (8, 32), dtype=torch.uint8)
    for cb in cbs:
        cpu.gemv(torch.randn(1, 32), idx, cb, None, 32, 8, 8)
    assert len(cpu._plans) == before + 5
    del cb, cbs
    gc.collect()
    assert len(cpu._plans) == before


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("bits,k", [(4, 16), (8, 16), (8, 32), (8, 64), (8, 256)])
def test_plan_and_one_shot_paths_agree_bitwise(level, bits, k):
    """Cached plans (few groups) and per-call tables (many groups, or wc_lut_gemv_f32) give the
    same bits for the same weights."""
    lib = cpu.native()
    with cpu.force_isa(level):
        for out, inn, n_groups, m in [(70, 131, 1, 1), (33, 64, 3, 5), (9, 200, 9, 12)]:
            idx, cb, gs, ib = make_layer(out, inn, k, bits, n_groups, seed=out + k)
            x, bias = torch.randn(m, inn), torch.randn(out)
            y_plan = cpu.gemv(x, idx, cb, bias, inn, gs, ib)
            y_once = torch.empty(m, out)
            rc = lib.wc_lut_gemv_f32(x.data_ptr(), m, inn, idx.data_ptr(), out, ib, cb.data_ptr(), cb.shape[0],
                                     cb.shape[1], gs, bias.data_ptr(), y_once.data_ptr(), 1)
            assert rc == 0 and torch.equal(y_plan, y_once)
            check(y_plan, ref64(x, idx, cb, bias, inn, gs, ib), inn)


def test_many_groups_skip_the_cache():
    out, inn = cpu.PLAN_MAX_GROUPS + 6, 48
    idx, cb, gs, ib = make_layer(out, inn, 16, 4, n_groups=out)
    before = len(cpu._plans)
    x = torch.randn(1, inn)
    check(cpu.gemv(x, idx, cb, None, inn, gs, ib), ref64(x, idx, cb, None, inn, gs, ib), inn)
    assert len(cpu._plans) == before


def _guarded(nbytes: int):
    """A uint8 tensor of nbytes ending exactly where an inaccessible page begins."""
    page = mmap.PAGESIZE
    npages = -(-nbytes // page) + 1
    buf = mmap.mmap(-1, npages * page, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    libc = ctypes.CDLL(None)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(base + (npages - 1) * page, page, 0) == 0  # PROT_NONE
    arr = np.frombuffer(buf, dtype=np.uint8, count=nbytes, offset=(npages - 1) * page - nbytes)
    return buf, arr


@pytest.mark.parametrize("bits,k", [(4, 16), (8, 16), (8, 32), (8, 64)])
@pytest.mark.parametrize("inn", [128, 130, 131, 133, 192, 64, 65, 66, 67])
def test_index_loads_stay_inside_the_indices(bits, k, inn):
    """Rows whose bytes end on, or 1-3 bytes after, a 64-byte block, the last one against a guard
    page (a read past the indices would crash the test process)."""
    out = 9
    idx, cb, gs, ib = make_layer(out, inn, k, bits, seed=inn)
    buf, arr = _guarded(idx.numel())
    arr[:] = idx.numpy().reshape(-1)
    gidx = torch.from_numpy(arr).view(idx.shape)
    for level, m in itertools.product(LEVELS, (1, 2, 5)):
        x = torch.randn(m, inn)
        with cpu.force_isa(level):
            check(cpu.gemv(x, gidx, cb, None, inn, gs, ib), ref64(x, idx, cb, None, inn, gs, ib), inn)
    x = torch.randn(20, inn)  # and the fused GEMM, where this CPU has it
    y = cpu.lut_gemm(x, gidx, cb, None, inn, gs, ib)
    if y is not None:
        check(y, ref64(x, idx, cb, None, inn, gs, ib), inn)
    del gidx, arr
