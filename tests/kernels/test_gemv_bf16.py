"""bf16 compute on the GEMV, for few rows of x: plans made by wc_lut_plan_new_bf16 (csrc/api.c).

The plan rounds the codebook to bf16; each call rounds x and the bias, the GEMV accumulates in
float32 and the result is rounded to bf16. These are the values of the path it replaced: x cast to
bf16, the one-shot C GEMV on the bf16 codebook widened to float32, the result cast to bf16. The
tests check that bit for bit on every ISA level, check the result against a float64 reference to
within bf16 rounding, and check that NaN, infinities and ties round as torch rounds them.
"""
import copy

import pytest
import torch

from wclust.clustering.modules import ClusteredLinear, ClusteredParts
from wclust.kernels import cpu, reference
from wclust.kernels.ops import lut_linear

from .test_kernels_cpu import LEVELS

pytestmark = pytest.mark.skipif(cpu.native() is None, reason="C library not built")
BF = torch.bfloat16
IN = 53


def layer(k, bits, groups, out=37, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, k, (out, IN), generator=g).to(torch.uint8).numpy()
    cb = torch.randn(groups, k, generator=g)
    parts = ClusteredParts((out, IN), idx, cb, -(-out // groups), bits)
    return ClusteredLinear(parts, torch.randn(out, generator=g) if bias else None)


def replaced_path(x, m):
    """What bf16 compute on few rows gave before: casts around the one-shot C GEMV (a plan built
    per call from the bf16 codebook's values), the result cast to bf16."""
    cb = m.codebook.to(BF)
    b = None if m.bias is None else m.bias.to(BF)
    x2 = x.to(BF).reshape(-1, IN)
    y = cpu.gemv(x2, m.indices, cb, b, IN, m.group_size, m.index_bits).to(BF)
    return y.reshape(*x.shape[:-1], -1)


def ref64(x, m):
    """float64 product of the bf16-rounded operands."""
    w = reference.dequantize(m.indices, m.codebook.to(BF).double(), IN, m.group_size, m.index_bits)
    b = 0 if m.bias is None else m.bias.to(BF).double()
    return x.to(BF).double() @ w.t() + b


CASES = [(16, 4, 1), (16, 8, 1), (32, 8, 2), (64, 6, 3), (256, 8, 1)]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("k, bits, groups", CASES)
def test_bf16_compute_equals_the_path_it_replaced(level, k, bits, groups):
    g = torch.Generator().manual_seed(k + bits + groups)
    with cpu.force_isa(level), torch.no_grad():
        rows = cpu.gemv_rows(k, BF)
        for bias in (True, False):
            m = layer(k, bits, groups, bias=bias)
            m.compute_dtype = BF
            for shape in [(1, IN), (rows, IN), (1, 1, IN)]:
                x = torch.randn(*shape, generator=g)
                y = m(x)  # float32 activations, bf16 compute: float32 out, holding bf16 values
                assert y.dtype == torch.float32 and torch.equal(y, replaced_path(x, m).float())
                assert torch.equal(y, y.to(BF).float())
                torch.testing.assert_close(y.double(), ref64(x, m), rtol=2 ** -7, atol=1e-5)
                # the op on bf16 x, and a model cast to bf16 as a whole (bf16 codebook and bias)
                assert torch.equal(lut_linear(x.to(BF), m.indices, m.codebook, m.bias, IN, m.group_size,
                                              m.index_bits), replaced_path(x, m))
                b = copy.deepcopy(m).to(BF)
                b.compute_dtype = None
                yb = b(x.to(BF))
                assert yb.dtype == BF and torch.equal(yb, replaced_path(x, b))
            assert id(m.indices) in cpu._fast[True] and id(b.indices) in cpu._fast[True]


def test_more_rows_than_the_gemv_takes_go_on_to_the_other_paths():
    m = layer(64, 8, 1)
    m.compute_dtype = BF
    x = torch.randn(cpu.gemv_rows(64, BF) + 1, IN)
    assert cpu.fast_gemv(x, m.indices, m.codebook, m.bias, IN, m.group_size, m.index_bits, bf16=True) is None
    with torch.no_grad():
        torch.testing.assert_close(m(x).double(), ref64(x, m), rtol=2 ** -7, atol=1e-5)


def test_codebook_changed_in_place_is_seen():
    m = layer(16, 4, 1)
    m.compute_dtype = BF
    b = copy.deepcopy(m).to(BF)
    x = torch.randn(1, IN)
    with torch.no_grad():
        m(x), b(x.to(BF))
        for mod, xin in ((m, x), (b, x.to(BF))):
            mod.codebook.mul_(-3.0)
            mod.codebook[0, 1] = 7.5
            assert torch.equal(mod(xin), replaced_path(x, mod).to(xin.dtype))


def test_rounding_of_x_bias_and_y_is_torch_s():
    """One weight of 1 (or 0): y is x (or the bias) rounded as torch rounds to bf16, ties to even,
    NaN kept, infinities kept, subnormals kept (a zero's sign is the float32 sum's: 0 + -0 = +0)."""
    f = torch.tensor([1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8), 3.0e38, 3.4e38, float("inf"), float("-inf"),
                      float("nan"), 1e-40, -1e-40, 0.0, -0.0, 65504.0, 1 / 3])
    f = torch.cat([f, torch.randn(200) * 10 ** torch.randint(-30, 30, (200,)).float()])
    one = ClusteredParts((1, 1), torch.zeros(1, 1, dtype=torch.uint8).numpy(), torch.ones(1, 1), 1, 8)
    zero = ClusteredParts((1, 1), torch.zeros(1, 1, dtype=torch.uint8).numpy(), torch.zeros(1, 1), 1, 8)
    for v in f:
        want = v.reshape(1, 1).to(BF).float()
        y = cpu.fast_gemv(v.reshape(1, 1), *_args(ClusteredLinear(one, None)), bf16=True)
        torch.testing.assert_close(y, want, rtol=0, atol=0, equal_nan=True)
        y = cpu.fast_gemv(torch.zeros(1, 1), *_args(ClusteredLinear(zero, v.reshape(1))), bf16=True)
        torch.testing.assert_close(y, want, rtol=0, atol=0, equal_nan=True)


def _args(m):
    return m.indices, m.codebook, m.bias, m.in_features, m.group_size, m.index_bits


def test_threads_give_the_same_bits():
    m = layer(64, 8, 1, out=300)
    m.compute_dtype = BF
    x = torch.randn(cpu.gemv_rows(64, BF), IN)
    old = torch.get_num_threads()
    try:
        with torch.no_grad():
            torch.set_num_threads(1)
            one = m(x)
            torch.set_num_threads(2)
            two = m(x)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one, two) and torch.equal(one, replaced_path(x, m).float())
