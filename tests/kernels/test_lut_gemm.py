"""The fused C LUT-GEMM (kernels/cpu.lut_gemm, csrc/x86/avx512_gemm.c) against a float64 reference."""
import itertools

import pytest
import torch

from wclust.kernels import cpu, reference
from wclust.clustering.packing import pack_rows_4bit

pytestmark = pytest.mark.skipif(cpu.native() is None, reason="C library not built")
HAS_FUSED = cpu.native() is not None and cpu.native().wc_lut_isa() >= 2
needs_fused = pytest.mark.skipif(not HAS_FUSED, reason="no AVX-512 VBMI on this CPU")


def make(out, inn, k, bits, n_groups, seed):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, k, (out, inn), dtype=torch.uint8, generator=g)
    if bits == 4:
        idx = torch.from_numpy(pack_rows_4bit(idx.numpy()))
    cb = torch.randn(n_groups, k, generator=g)
    gs = -(-out // n_groups)
    if n_groups > 1 and gs % 16 == 0:  # make groups straddle the kernel's 16-row halves
        gs += 1
        cb = torch.cat([cb, torch.randn(1, k, generator=g)]) if n_groups * gs < out else cb
    return idx, cb, gs, g


def ref64(x, idx, cb, bias, inn, gs, bits):
    b = None if bias is None else bias.double()
    return reference.lut_linear(x.double(), idx, cb.double(), b, inn, gs, bits)


def check(y, want, inn):
    assert y is not None and y.dtype == torch.float32 and y.shape == want.shape
    scale = want.abs().max().item() + 1.0
    assert (y.double() - want).abs().max().item() <= 2e-6 * inn ** 0.5 * scale


CASES = (
    [(m, 37, 53, k, 8) for m, k in itertools.product([13, 14, 15, 29, 197], [2, 16, 33, 64, 256])]
    + [(m, 100, 130, k, 8) for m, k in itertools.product([14, 197], [16, 33, 100, 256])]
    + [(m, out, inn, k, 4) for m, (out, inn), k in itertools.product([13, 15, 29, 197], [(37, 53), (100, 131)], [2, 11, 16])]
    + [(m, out, inn, k, 8) for m, (out, inn), k in itertools.product([13, 197], [(37, 53), (100, 131)], [17, 32])]
)


@needs_fused
@pytest.mark.parametrize("m,out,inn,k,bits", CASES)
def test_matches_reference(m, out, inn, k, bits):
    for n_groups, with_bias in ((1, True), (3, False), (5, True)):
        idx, cb, gs, g = make(out, inn, k, bits, n_groups, seed=m * 1000 + k * 10 + n_groups)
        x = torch.randn(m, inn, generator=g)
        bias = torch.randn(out, generator=g) if with_bias else None
        check(cpu.lut_gemm(x, idx, cb, bias, inn, gs, bits), ref64(x, idx, cb, bias, inn, gs, bits), inn)


@needs_fused
@pytest.mark.parametrize("bits,k", [(8, 16), (8, 32), (8, 64), (8, 256), (4, 16)])
def test_blocking_edges(bits, k):
    """k-block (256) and m-chunk boundaries, tiny and single-row shapes, group_size 1."""
    for m, out, inn, n_groups in [(300, 33, 513, 1), (250, 70, 256, 1), (1, 1, 1, 1), (2, 5, 17, 5), (40, 48, 300, 48)]:
        idx, cb, gs, g = make(out, inn, k, bits, n_groups, seed=m + out + inn)
        x, bias = torch.randn(m, inn, generator=g), torch.randn(out, generator=g)
        check(cpu.lut_gemm(x, idx, cb, bias, inn, gs, bits), ref64(x, idx, cb, bias, inn, gs, bits), inn)


@needs_fused
@pytest.mark.parametrize("bits,k", [(8, 16), (4, 16), (8, 256)])
def test_panel_chunks_and_x_buffers(bits, k):
    """More output panels than one chunk (y of a chunk <= 768 KB: 31 panels at M=197): x packed for
    all k-blocks into the per-thread buffer (in=300), or per k-block when that buffer would pass 1 MB
    (M=250, in=1200: also two m-chunks); 1 and 2 threads."""
    old = torch.get_num_threads()
    try:
        for m, out, inn, n_groups in [(197, 1000, 300, 1), (250, 1100, 1200, 3)]:
            idx, cb, gs, g = make(out, inn, k, bits, n_groups, seed=m + out)
            x, bias = torch.randn(m, inn, generator=g), torch.randn(out, generator=g)
            want = ref64(x, idx, cb, bias, inn, gs, bits)
            for n in (1, 2):
                torch.set_num_threads(n)
                check(cpu.lut_gemm(x, idx, cb, bias, inn, gs, bits), want, inn)
    finally:
        torch.set_num_threads(old)


@needs_fused
def test_vit_shape_and_threads():
    idx, cb, gs, g = make(768, 768, 256, 8, 1, seed=7)
    x, bias = torch.randn(197, 768, generator=g), torch.randn(768, generator=g)
    want = ref64(x, idx, cb, bias, 768, gs, 8)
    old = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            check(cpu.lut_gemm(x, idx, cb, bias, 768, gs, 8), want, 768)
    finally:
        torch.set_num_threads(old)


def test_lower_isa_and_unsupported_return_none():
    idx, cb, gs, g = make(37, 53, 16, 8, 1, seed=1)
    x = torch.randn(20, 53, generator=g)
    for level in (1, 0):
        with cpu.force_isa(level):
            assert cpu.lut_gemm(x, idx, cb, None, 53, gs, 8) is None
    assert cpu.lut_gemm(x.double(), idx, cb, None, 53, gs, 8) is None  # float32 only
    assert cpu.lut_gemm(x.bfloat16(), idx, cb, None, 53, gs, 8) is None
    assert cpu.lut_gemm(x[:, :50], idx, cb, None, 53, gs, 8) is None  # in_features mismatch
    big = torch.randint(0, 17, (37, 27), dtype=torch.uint8)
    assert cpu.lut_gemm(x, big, torch.randn(1, 17), None, 53, 37, 4) is None  # 4-bit K > 16
    if HAS_FUSED:
        check(cpu.lut_gemm(x, idx, cb, None, 53, gs, 8), ref64(x, idx, cb, None, 53, gs, 8), 53)


@needs_fused
def test_noncontiguous_and_empty():
    idx, cb, gs, g = make(40, 64, 64, 8, 2, seed=3)
    x = torch.randn(64, 30, generator=g).t()  # (30, 64), not contiguous
    check(cpu.lut_gemm(x, idx, cb, None, 64, gs, 8), ref64(x, idx, cb, None, 64, gs, 8), 64)
    assert cpu.lut_gemm(torch.randn(0, 64), idx, cb, None, 64, gs, 8).shape == (0, 40)
