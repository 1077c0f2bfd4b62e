"""The C LUT kernels (every ISA level this CPU has) against the pure-torch reference."""
import itertools

import numpy as np
import pytest
import torch

from wclust.kernels import cpu, reference
from wclust.kernels.ops import lut_linear
from wclust.clustering.packing import pack_rows_4bit

pytestmark = pytest.mark.skipif(cpu.native() is None, reason="C library not built")

LEVELS = [lvl for lvl in (2, 1, 0) if cpu.native() is not None and cpu.native().wc_lut_isa() >= lvl]


def make_layer(out, inn, k, bits, n_groups=1, seed=0):
    """Random layer in the in-memory layout: (indices, codebook, group_size, index_bits)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, k, (out, inn), dtype=torch.uint8, generator=g)
    group_size = -(-out // n_groups)
    cb = torch.randn(n_groups, k, generator=g)
    index_bits = 4 if bits <= 4 else 8
    if index_bits == 4:
        idx = torch.from_numpy(pack_rows_4bit(idx.numpy()))
    return idx, cb, group_size, index_bits


def ref64(x, idx, cb, bias, inn, gs, ib, dtype=torch.float32):
    """float64 reference on the values the kernel computes with (codebook rounded to ``dtype``)."""
    cb = cb.to(dtype).double()
    b = None if bias is None else bias.to(dtype).double()
    return reference.lut_linear(x.double(), idx, cb, b, inn, gs, ib)


def check(y, ref, inn, dtype=torch.float32):
    assert y.shape == ref.shape and y.dtype == dtype
    scale = ref.abs().max().item() + 1.0
    tol = (2e-6 * np.sqrt(inn) if dtype == torch.float32 else 1e-2) * scale
    assert (y.double() - ref).abs().max().item() <= tol


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("m", [1, 3, 197])
def test_all_widths_odd_shapes(level, m):
    """Every width 1..8 bits, K < 2**bits, odd in/out, group codebooks, bias or none."""
    rng = np.random.default_rng(level * 10 + m)
    with cpu.force_isa(level):
        for bits in range(1, 9):
            for k in sorted({2 ** bits, max(2, 2 ** bits - 3), 2 ** (bits - 1) + 1}):
                if k > 2 ** bits or k < 2:
                    continue
                out, inn = int(rng.integers(1, 90)), int(rng.choice([1, 7, 63, 64, 65, 131, 200]))
                n_groups = int(rng.choice([1, 3]))
                idx, cb, gs, ib = make_layer(out, inn, k, bits, n_groups, seed=bits * 1000 + k)
                bias = torch.randn(out) if rng.random() < 0.5 else None
                x = torch.randn(m, inn)
                y = cpu.lut_linear_cpu(x, idx, cb, bias, inn, gs, ib)
                check(y, ref64(x, idx, cb, bias, inn, gs, ib), inn)


@pytest.mark.parametrize("level", LEVELS)
def test_every_lookup_mode(level):
    """Each AVX-512 mode (4-bit, K<=16, <=32, <=64, <=128, <=256) on both paths, tails included."""
    with cpu.force_isa(level):
        for k, bits, (out, inn), m in itertools.product([2, 16, 17, 32, 33, 64, 65, 128, 129, 256], [4, 8],
                                                        [(5, 33), (64, 257), (19, 128)], [1, 2, 4, 5, 9, 20]):
            if bits == 4 and k > 16:
                continue
            idx, cb, gs, ib = make_layer(out, inn, k, bits, n_groups=2, seed=k + m)
            x, bias = torch.randn(m, inn), torch.randn(out)
            check(cpu.lut_linear_cpu(x, idx, cb, bias, inn, gs, ib), ref64(x, idx, cb, bias, inn, gs, ib), inn)


@pytest.mark.parametrize("level", LEVELS)
def test_gemv_every_row_count(level):
    """The GEMV's passes of up to 8 rows of x, every remainder, every lookup mode."""
    with cpu.force_isa(level):
        for k, bits in [(16, 4), (16, 8), (32, 8), (64, 8), (128, 8), (256, 8)]:
            idx, cb, gs, ib = make_layer(21, 77, k, bits, n_groups=2, seed=k + bits)
            bias = torch.randn(21)
            for m in range(1, 18):
                x = torch.randn(m, 77)
                check(cpu.gemv(x, idx, cb, bias, 77, gs, ib), ref64(x, idx, cb, bias, 77, gs, ib), 77)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("bits", [4, 8])
def test_dequantize_matches_reference(level, bits):
    for k in ([3, 16] if bits == 4 else [5, 64, 100, 256]):
        for inn in (1, 63, 64, 130):
            idx, cb, gs, ib = make_layer(21, inn, k, bits, n_groups=4, seed=k + inn)
            with cpu.force_isa(level):
                w32 = cpu.dequantize_into(idx, cb, inn, gs, ib, torch.float32)
                w16 = cpu.dequantize_into(idx, cb, inn, gs, ib, torch.bfloat16)
            assert torch.equal(w32, reference.dequantize(idx, cb, inn, gs, ib))
            assert torch.equal(w16, reference.dequantize(idx, cb, inn, gs, ib, dtype=torch.bfloat16))


@pytest.mark.parametrize("m", [1, 3, 197])
@pytest.mark.parametrize("bits", [4, 6, 8])
def test_bf16_compute(m, bits):
    idx, cb, gs, ib = make_layer(70, 131, 2 ** bits, bits, n_groups=2, seed=m)
    x, bias = torch.randn(2, m, 131).to(torch.bfloat16), torch.randn(70)
    y = lut_linear(x, idx, cb, bias, 131, gs, ib)
    ref = ref64(x, idx, cb, bias, 131, gs, ib, torch.bfloat16)
    check(y, ref, 131, torch.bfloat16)


def test_threads_split_rows():
    idx, cb, gs, ib = make_layer(301, 96, 64, 6, n_groups=5)
    x = torch.randn(3, 96)
    want = ref64(x, idx, cb, None, 96, gs, ib)
    old = torch.get_num_threads()
    try:
        for n in (1, 2, 3, 8):
            torch.set_num_threads(n)
            check(cpu.lut_linear_cpu(x, idx, cb, None, 96, gs, ib), want, 96)
            check(cpu.lut_linear_cpu(torch.randn(40, 96) * 0 + x[:1], idx, cb, None, 96, gs, ib),
                  want[:1].expand(40, -1), 96)
    finally:
        torch.set_num_threads(old)


def test_op_dispatches_to_c_and_leading_dims():
    idx, cb, gs, ib = make_layer(33, 50, 64, 6)
    x = torch.randn(2, 3, 50)
    y = lut_linear(x, idx, cb, None, 50, gs, ib)
    assert y.shape == (2, 3, 33)
    check(y.reshape(6, 33), ref64(x.reshape(6, 50), idx, cb, None, 50, gs, ib), 50)
    assert lut_linear(torch.randn(0, 50), idx, cb, None, 50, gs, ib).shape == (0, 33)


def test_unsupported_falls_back_to_reference():
    idx, cb, gs, ib = make_layer(9, 20, 16, 4)
    x = torch.randn(2, 20, dtype=torch.float64)  # C kernel has no float64 path
    y = lut_linear(x, idx, cb.double(), None, 20, gs, ib)
    assert torch.allclose(y, reference.lut_linear(x, idx, cb.double(), None, 20, gs, ib))
    xh = torch.randn(2, 20).half()
    assert lut_linear(xh, idx, cb, None, 20, gs, ib).dtype == torch.float16


def test_fp16_codebook():
    idx, cb, gs, ib = make_layer(17, 40, 200, 8)
    cb = cb.half()
    x = torch.randn(3, 40)
    check(lut_linear(x, idx, cb, None, 40, gs, ib), ref64(x, idx, cb, None, 40, gs, ib), 40)


@pytest.mark.parametrize("m", [1, 12, 40])  # GEMV; beyond its rows the fused GEMM (fp32), AMX or packed bf16
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_opcheck(m, dtype):
    idx, cb, gs, ib = make_layer(24, 40, 16, 4, n_groups=2)
    x = torch.randn(m, 40).to(dtype)
    torch.library.opcheck(torch.ops.wclust.lut_linear.default, (x, idx, cb, torch.randn(24), 40, gs, ib))
    idx8, cb8, gs8, ib8 = make_layer(24, 40, 100, 7)
    torch.library.opcheck(torch.ops.wclust.lut_linear.default, (x, idx8, cb8, None, 40, gs8, ib8))


def test_clustered_linear_uses_fast_path():
    """A ClusteredLinear module (per-layer codebook) matches its dequantized weight in both dtypes."""
    from wclust.clustering.compute import set_compute_dtype
    from wclust.clustering.modules import ClusteredLinear

    lin = torch.nn.Linear(70, 45)
    mod = ClusteredLinear.from_module(lin, n_clusters=32)
    x = torch.randn(4, 70)
    want = torch.nn.functional.linear(x.double(), mod.dequantize().double(), lin.bias.double())
    check(mod(x), want, 70)
    set_compute_dtype(mod, torch.bfloat16)
    yb = mod(x)
    assert yb.dtype == torch.float32
    assert (yb.double() - want).abs().max() < 0.1 * want.abs().max()


def test_openmp_team_and_pthread_pool_agree():
    """Rows split the same way on torch's OpenMP team and on the private pool: identical bits."""
    lib = cpu.native()
    if cpu.openmp_runtime is None:
        pytest.skip("no OpenMP runtime loaded by torch")
    idx, cb, gs, ib = make_layer(301, 96, 64, 6, n_groups=5)
    xs = (torch.randn(1, 96), torch.randn(40, 96))
    old = torch.get_num_threads()
    outs = []
    try:
        torch.set_num_threads(3)
        for path in (None, cpu.openmp_runtime):
            assert lib.wc_lut_use_openmp(path.encode() if path else None) == (1 if path else 0)
            outs.append([cpu.lut_linear_cpu(x, idx, cb, None, 96, gs, ib) for x in xs])
    finally:
        torch.set_num_threads(old)
        cpu.use_openmp(lib)
    for a, b in zip(*outs):
        assert torch.equal(a, b)
    assert lib.wc_lut_use_openmp(b"/no/such/libgomp.so.1") == -1 and cpu.use_openmp(lib) is None
    assert cpu.openmp_runtime is not None
