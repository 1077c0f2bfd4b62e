"""bf16 compute on AMX tiles: the fused LUT-GEMM of csrc/x86/amx_bf16.c (``cpu.amx_linear``)."""
import numpy as np
import pytest
import torch

import wclust
from wclust.clustering.modules import ClusteredLinear
from wclust.kernels import cpu

from .test_kernels_cpu import make_layer, ref64

pytestmark = pytest.mark.skipif(cpu.native() is None or not cpu.amx_available(),
                                reason="no AMX on this CPU / OS (bf16 compute takes oneDNN's path)")

# (out, in, rows of x, codebook length, index bits, codebook groups): ViT-B shapes; rows not a
# multiple of 16 or 32 (a lone 16-row tile), features not a multiple of 32 (odd too: a half
# feature pair of padding), outputs not a multiple of 32 (a part panel), group codebooks whose
# boundaries fall inside 16-row units, every lookup mode (4-bit, 8-bit K <= 16, 32, 64, 128, 256),
# rows of x in two chunks (4096 features: 192 rows of x in bf16 per 1.5 MiB chunk)
SHAPES = [(2304, 768, 197, 64, 8, 1), (768, 3072, 197, 16, 4, 1), (100, 50, 13, 256, 8, 1), (70, 33, 40, 16, 4, 3),
          (33, 31, 17, 200, 8, 5), (65, 64, 16, 32, 8, 1), (96, 130, 48, 100, 8, 4), (17, 9, 1, 3, 8, 1),
          (40, 301, 33, 16, 8, 2), (64, 7, 100, 7, 4, 1), (40, 4096, 300, 64, 8, 1)]


def bf16_bound(y, ref, inn):
    """|y - ref| within half a bf16 ulp of ref (the one rounding) plus float32 accumulation error."""
    scale = ref.abs().max().item() + 1.0
    err = (y.double() - ref).abs()
    assert (err <= ref.abs() * 2.0 ** -8 + 1e-5 * np.sqrt(inn) * scale).all(), err.max().item()


@pytest.mark.parametrize("n_out,n_in,rows,k,bits,groups", SHAPES)
def test_amx_matches_float64_within_one_bf16_rounding(n_out, n_in, rows, k, bits, groups):
    idx, cb, gs, ib = make_layer(n_out, n_in, k, bits, groups, seed=n_out * 7 + n_in)
    g = torch.Generator().manual_seed(rows)
    x, bias = torch.randn(rows, n_in, generator=g), torch.randn(n_out, generator=g)
    for b in (bias, None):
        want = ref64(x.to(torch.bfloat16), idx, cb, b, n_in, gs, ib, torch.bfloat16)
        y = cpu.amx_linear(x.to(torch.bfloat16), idx, cb.to(torch.bfloat16), b, n_in, gs, ib, torch.bfloat16)
        assert y.dtype == torch.bfloat16 and y.shape == (rows, n_out)
        bf16_bound(y, want, n_in)
        # float32 in and out: x rounded in the kernel, the same bf16 values widened, bit for bit
        y32 = cpu.amx_linear(x, idx, cb, b, n_in, gs, ib, torch.float32)
        assert y32.dtype == torch.float32 and torch.equal(y32, y.float())


def test_amx_is_the_same_on_any_number_of_threads():
    idx, cb, gs, ib = make_layer(1000, 200, 64, 8, 3, seed=9)
    x = torch.randn(50, 200)
    before = torch.get_num_threads()
    try:
        out = []
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            out.append(cpu.amx_linear(x, idx, cb, None, 200, gs, ib, torch.float32))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])


def test_op_takes_amx_for_many_bf16_rows_and_not_when_the_isa_is_lowered():
    idx, cb, gs, ib = make_layer(96, 64, 64, 8, seed=3)
    x = torch.randn(40, 64).to(torch.bfloat16)
    cbb = cb.to(torch.bfloat16)
    y = cpu.lut_linear_cpu(x, idx, cbb, None, 64, gs, ib)
    assert torch.equal(y, cpu.amx_linear(x, idx, cbb, None, 64, gs, ib, torch.bfloat16))
    with cpu.force_isa(1):
        assert not cpu.amx_available()
        assert cpu.amx_linear(x, idx, cbb, None, 64, gs, ib, torch.bfloat16) is None
        y2 = cpu.lut_linear_cpu(x, idx, cbb, None, 64, gs, ib)  # dequantize + oneDNN's matmul
    torch.testing.assert_close(y.float(), y2.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("rows", [1, 2, 4, 197])
def test_module_bf16_compute_on_float32_activations_equals_cast_op_cast(rows):
    """ClusteredLinear(compute_dtype=bf16) on float32 x skips the casts around the op (AMX kernel
    with float32 in and out): the same bits as casting x, the op in bf16, casting back."""
    torch.manual_seed(rows)
    lin = torch.nn.Linear(130, 70)
    model = wclust.compress(torch.nn.Sequential(lin), wclust.ClusterConfig(n_clusters=32, scope="layer"))
    layer = model[0]
    assert isinstance(layer, ClusteredLinear)
    layer.compute_dtype = torch.bfloat16
    x = torch.randn(2, rows, 130)
    with torch.no_grad():
        y = layer(x)
        want = torch.ops.wclust.lut_linear(x.to(torch.bfloat16), layer.indices, layer.codebook, layer.bias,
                                           130, layer.group_size, layer.index_bits).float()
    assert y.dtype == torch.float32 and torch.equal(y, want)


def test_switched_off_by_flag(monkeypatch):
    """WCLUST_NO_AMX=1 (cpu.AMX_ENABLED): bf16 compute takes oneDNN's path, the GEMV keeps its rows."""
    idx, cb, gs, ib = make_layer(96, 64, 64, 8, seed=4)
    x = torch.randn(40, 64).to(torch.bfloat16)
    assert cpu.bf16_path() == "amx-bf16"
    monkeypatch.setattr(cpu, "AMX_ENABLED", False)
    assert not cpu.amx_available() and cpu.gemv_rows(64, torch.bfloat16) == cpu.GEMV_MAX_ROWS
    assert cpu.bf16_path() in ("onednn-packed", "dequantize+matmul")
    assert cpu.amx_linear(x, idx, cb, None, 64, gs, ib, torch.bfloat16) is None
    want = ref64(x, idx, cb, None, 64, gs, ib, torch.bfloat16)
    bf16_bound(cpu.lut_linear_cpu(x, idx, cb.to(torch.bfloat16), None, 64, gs, ib), want, 64)


def test_beyond_amx_max_rows_the_op_takes_onednns_path(monkeypatch):
    idx, cb, gs, ib = make_layer(70, 64, 64, 8, seed=6)
    monkeypatch.setattr(cpu, "AMX_MAX_ROWS", 20)
    x = torch.randn(21, 64).to(torch.bfloat16)
    calls = []
    real = cpu.amx_linear
    monkeypatch.setattr(cpu, "amx_linear", lambda *a: calls.append(a) or real(*a))
    y = cpu.lut_linear_cpu(x, idx, cb.to(torch.bfloat16), None, 64, gs, ib)
    assert calls == [] and cpu.amx_module_linear(x.float(), idx, cb, None, 64, gs, ib) is None
    bf16_bound(y, ref64(x, idx, cb, None, 64, gs, ib, torch.bfloat16), 64)
    cpu.lut_linear_cpu(x[:20], idx, cb.to(torch.bfloat16), None, 64, gs, ib)
    assert len(calls) == 1
