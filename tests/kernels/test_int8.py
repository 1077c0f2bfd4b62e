"""Integer compute on indices (kernels/int8.py, csrc/portable/int8_c.c, csrc/x86/avx2_int8.c):
the C quantizers give the reference's bytes, every kernel at every ISA level this CPU allows
equals the float64 reference of the same integer math, and a clustered model runs on it."""
import ctypes

import numpy as np
import pytest
import torch
from torch import nn

from wclust.clustering.packing import pack_rows_4bit
from wclust.kernels import cpu, int8, reference

pytestmark = pytest.mark.skipif(not int8.available(), reason="the C library is not built here")


def levels():
    """ISA levels to run at: portable C and every SIMD level this CPU has."""
    lib = cpu.native()
    return list(range(lib.wc_lut_isa() + 1)) if lib is not None else []


def layer(out, inn, k, bits, group_size, seed):
    g = torch.Generator().manual_seed(seed)
    n_groups = -(-out // group_size)
    cb = torch.randn(n_groups, k, generator=g) * 0.05
    idx = torch.randint(0, k, (out, inn), dtype=torch.uint8, generator=g)
    packed = torch.from_numpy(pack_rows_4bit(idx.numpy())) if bits == 4 else idx
    return packed, cb, torch.randn(out, generator=g)


def check(y, ref):
    """float32 rounding of the final scaling only: the integer sums are exact"""
    scale = ref.abs().max().item() + 1e-12
    assert (y.double() - ref).abs().max().item() <= 2e-6 * scale


def test_quantizers_match_the_reference_bit_for_bit():
    lib = cpu.native()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 301, generator=g) * torch.tensor([0.01, 1, 10, 100, 1e-30, 3, 0.5])[:, None]
    x[4] = 0.0  # an all-zero row: scale 1, zero point 0
    x[5] = x[5].abs()  # no negative values: zero point 0
    x[6] = -x[6].abs()  # no positive values: zero point 127
    q, s, z = int8.quantize_activations(x)
    for level in levels():
        with cpu.force_isa(level):
            ldq = 320
            xq = np.zeros((7, ldq), np.uint8)
            xs, xz = np.zeros(7, np.float32), np.zeros(7, np.int32)
            lib.wc_i8_quantize_x(x.data_ptr(), 7, 301, xq.ctypes.data, ldq, xs.ctypes.data, xz.ctypes.data)
            assert np.array_equal(xq[:, :301], q.numpy()) and not xq[:, 301:].any()
            assert np.array_equal(xs, s.numpy()) and np.array_equal(xz, z.numpy())
    assert z[5] == 0 and z[6] == 127 and s[4] == 1 and int(q.max()) <= 127
    cb = torch.randn(3, 40, generator=g)
    cb[1] = 0.0
    qc, qs = int8.quantize_codebook(cb)
    qtab, qsc = np.zeros((3, 256), np.int8), np.zeros(3, np.float32)
    lib.wc_i8_quantize_codebook(cb.data_ptr(), 3, 40, qtab.ctypes.data, qsc.ctypes.data)
    assert np.array_equal(qtab[:, :40], qc.numpy()) and not qtab[:, 40:].any() and np.array_equal(qsc, qs.numpy())
    assert qc.abs().max() == 127 and qs[1] == 1


def test_reference_by_hand():
    """codebook [-1, 0.5] -> int8 [-127, 64] (scale 1/127); x = [1, -1] -> scale 2/127, zero point 64,
    x quantized [127, 0]; W = [[-1, 0.5], [0.5, 0.5]] -> y = (acc - 64 rs) * (2/127) (1/127) + bias"""
    cb = torch.tensor([[-1.0, 0.5]])
    idx = torch.tensor([[0, 1], [1, 1]], dtype=torch.uint8)
    x = torch.tensor([[1.0, -1.0]])
    q, s = int8.quantize_codebook(cb)
    assert q.tolist() == [[-127, 64]]
    xq, xs, xz = int8.quantize_activations(x)
    assert xq.tolist() == [[127, 0]] and xz.tolist() == [64]
    acc = torch.tensor([127 * -127 + 0 * 64, 127 * 64 + 0 * 64])
    rs = torch.tensor([-127 + 64, 128])
    want = (acc - 64 * rs).double() * (xs.double() * s.double())
    y = int8.reference_linear(x, idx, cb, torch.tensor([0.25, 0.0]), 2, 2, 8)
    assert torch.allclose(y[0], want + torch.tensor([0.25, 0.0], dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.allclose(y.float(), torch.tensor([[-1.5 + 0.25, 0.0]]), atol=0.02)  # near the float math


@pytest.mark.parametrize("bits,k", [(4, 2), (4, 16), (8, 3), (8, 16), (8, 31), (8, 64), (8, 100), (8, 256)])
def test_kernels_equal_the_reference_at_every_level(bits, k):
    shapes = [(37, 100), (16, 64), (33, 129), (5, 7), (48, 259)]
    for si, (out, inn) in enumerate(shapes):
        for gs in (out, 8, 3):
            idx, cb, b = layer(out, inn, k, bits, gs, seed=si * 7 + gs)
            for m in (1, 3, 4, 5, 9):
                x = torch.randn(m, inn, generator=torch.Generator().manual_seed(m)) * 2 + 0.3
                ref = int8.reference_linear(x, idx, cb, b, inn, gs, 4 if bits == 4 else 8)
                for level in levels():
                    with cpu.force_isa(level):
                        check(int8.linear(x, idx, cb, b, inn, gs, 4 if bits == 4 else 8), ref)


def test_index_bits_1_to_8_run_on_the_two_in_memory_widths():
    """packed widths 1..4 hold their indices two per byte in memory, 5..8 one per byte"""
    for k in (2, 4, 8, 16, 32, 64, 128, 256):
        bits = 4 if k <= 16 else 8
        idx, cb, b = layer(24, 70, k, bits, 24, seed=k)
        x = torch.randn(6, 70, generator=torch.Generator().manual_seed(k))
        check(int8.linear(x, idx, cb, None, 70, 24, bits), int8.reference_linear(x, idx, cb, None, 70, 24, bits))


def test_near_float_compute_and_zero_rows():
    """int8 compute stays close to the float math (SQNR > 30 dB on a Gaussian layer at k=16)"""
    idx, cb, b = layer(64, 512, 16, 4, 64, seed=3)
    x = torch.randn(10, 512, generator=torch.Generator().manual_seed(4))
    w = reference.dequantize(idx, cb, 512, 64, 4)
    y_float = x @ w.t() + b
    y = int8.linear(x, idx, cb, b, 512, 64, 4)
    sqnr = 20 * torch.log10(y_float.norm() / (y - y_float).norm())
    assert sqnr > 30
    z = int8.linear(torch.zeros(3, 512), idx, cb, b, 512, 64, 4)
    assert torch.allclose(z, b.expand(3, -1), atol=1e-6)
    assert int8.linear(torch.zeros(0, 512), idx, cb, b, 512, 64, 4).shape == (0, 64)


def test_a_changed_codebook_is_never_computed_stale():
    idx, cb, b = layer(32, 96, 64, 8, 32, seed=5)
    x = torch.randn(2, 96)
    y0 = int8.linear(x, idx, cb, b, 96, 32, 8)
    cb.mul_(2.0)  # in place: the plan's copy no longer matches
    y1 = int8.linear(x, idx, cb, b, 96, 32, 8)
    check(y1, int8.reference_linear(x, idx, cb, b, 96, 32, 8))
    assert not torch.allclose(y0, y1)


def test_clustered_model_runs_on_int8_compute():
    import wclust

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 96), nn.GELU(), nn.Linear(96, 32))
    x = torch.randn(5, 64)
    wclust.compress(model, wclust.ClusterConfig(n_clusters=16, scope="layer"))
    with torch.no_grad():
        y_float = model(x)
        wclust.set_compute_dtype(model, "int8")
        y = model(x)
        lin = [m for m in model.modules() if isinstance(m, wclust.ClusteredLinear)]
        assert all(m.compute_dtype is torch.int8 for m in lin)
        h = int8.reference_linear(x, lin[0].indices, lin[0].codebook, lin[0].bias, 64, lin[0].group_size,
                                  lin[0].index_bits).float()
        want = int8.reference_linear(torch.nn.functional.gelu(h), lin[1].indices, lin[1].codebook, lin[1].bias,
                                     96, lin[1].group_size, lin[1].index_bits)
    check(y, want)
    assert 20 * torch.log10(y_float.norm() / (y - y_float).norm()) > 25
    with pytest.raises(ValueError, match="compute dtype"):
        wclust.set_compute_dtype(model, "int4")
