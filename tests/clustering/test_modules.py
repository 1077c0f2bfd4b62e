import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wclust.clustering.modules import (ClusteredConv2d, ClusteredEmbedding, ClusteredLinear, ClusteredModule,
                                       ClusteredParts, ClusteredWrapper, clustered_class_for, fit_parts)


def _parts(out, inp, k, bits, groups=1, scale=False, outliers=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, k, (out, inp), generator=g).to(torch.uint8).numpy()
    cb = torch.randn(groups, k, generator=g).sort(dim=1).values
    p = ClusteredParts((out, inp), idx, cb, -(-out // groups), bits)
    if scale:
        p.scale = torch.rand(out, generator=g) + 0.5
    if outliers:
        p.outlier_index = torch.randperm(out * inp, generator=g)[:outliers].sort().values
        p.outlier_value = torch.randn(outliers, generator=g) * 5
    return p


def _reference_weight(p):
    """float64 weight from parts, written independently of the module code."""
    out, inp = p.shape
    w = np.empty((out, inp))
    cb = p.codebook.double().numpy()
    for r in range(out):
        w[r] = cb[r // p.group_size][p.indices[r]]
    if p.scale is not None:
        w *= p.scale.double().numpy()[:, None]
    if p.outlier_index is not None:
        w.reshape(-1)[p.outlier_index.numpy()] = p.outlier_value.double().numpy()
    return torch.from_numpy(w)


@pytest.mark.parametrize("k,bits", [(4, 2), (16, 4), (64, 6), (256, 8)])
@pytest.mark.parametrize("groups,scale,outliers", [(1, False, 0), (3, False, 0), (1, True, 5), (2, True, 3)])
def test_linear_matches_float64_reference(k, bits, groups, scale, outliers):
    p = _parts(37, 29, k, bits, groups, scale, outliers)
    bias = torch.randn(37)
    m = ClusteredLinear(p, bias)
    x = torch.randn(3, 4, 29)
    w = _reference_weight(p)
    ref = F.linear(x.double(), w, bias.double())
    torch.testing.assert_close(m(x).double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(m.dequantize().double(), w, rtol=0, atol=1e-6)
    assert m.indices.dtype == torch.uint8
    assert m.indices.shape[1] == (15 if bits <= 4 else 29)


def test_linear_large_output_is_tiled():
    p = _parts(1300, 16, 16, 4)
    m = ClusteredLinear(p, None)
    x = torch.randn(2, 16)
    torch.testing.assert_close(m(x).double(), x.double() @ _reference_weight(p).T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bits", [3, 8])
def test_embedding(bits):
    p = _parts(50, 12, 2 ** bits, bits, groups=4, scale=True, outliers=4)
    m = ClusteredEmbedding(p)
    ids = torch.tensor([[0, 49, 7], [7, 3, 3]])
    torch.testing.assert_close(m(ids).double(), _reference_weight(p)[ids], rtol=0, atol=1e-6)


def test_conv_and_subclass_keep_their_math():
    class PadConv(torch.nn.Conv2d):  # pads inside forward, like "same" convs of some model zoos
        def forward(self, x):
            return F.conv2d(F.pad(x, (1, 2, 1, 2)), self.weight, self.bias, self.stride)

    for conv in (torch.nn.Conv2d(3, 8, 3, 2), PadConv(3, 8, 3, 2)):
        cls = clustered_class_for(conv)
        assert cls is ClusteredConv2d
        x = torch.randn(1, 3, 11, 11)
        ref = copy.deepcopy(conv)
        c = cls.from_module(conv, fit_parts(conv.weight, 16))
        with torch.no_grad():
            ref.weight.copy_(c.dequantize())
            torch.testing.assert_close(c(x), ref(x))
        assert c.kernel_size == (3, 3) and "weight" not in dict(c.named_parameters())


def test_linear_subclass_with_own_forward_is_wrapped():
    class Scaled(torch.nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    lin = Scaled(10, 6)
    assert clustered_class_for(lin) is ClusteredWrapper
    c = ClusteredWrapper.from_module(lin, fit_parts(lin.weight, 8))
    x = torch.randn(4, 10)
    torch.testing.assert_close(c(x), 2 * F.linear(x, c.dequantize(), lin.bias))


def test_bf16_compute_close_to_fp32():
    p = _parts(64, 96, 64, 6)
    m = ClusteredLinear(p, torch.randn(64))
    x = torch.randn(5, 96)
    y32 = m(x)
    m.compute_dtype = torch.bfloat16
    y16 = m(x)
    assert y16.dtype == torch.float32
    sqnr = 20 * torch.log10(y32.norm() / (y32 - y16).norm())
    assert sqnr > 30


def test_op_schema_opcheck():
    from wclust.kernels.ops import lut_linear

    p = _parts(9, 7, 16, 4)
    m = ClusteredLinear(p, torch.randn(9))
    x = torch.randn(2, 7)
    torch.library.opcheck(lut_linear, (x, m.indices, m.codebook, m.bias, 7, 9, 4),
                          test_utils=("test_schema", "test_faketensor"))


def test_wrapped_conv_honours_bf16_compute_dtype():
    conv = torch.nn.Conv2d(3, 8, 4, 4)
    c = ClusteredConv2d.from_module(conv, fit_parts(conv.weight, 64))
    x = torch.randn(2, 3, 16, 16)
    y32 = c(x)
    c.compute_dtype = torch.bfloat16
    y16 = c(x)
    assert y16.dtype == torch.float32 and c.inner.bias.dtype == torch.float32
    assert 20 * torch.log10(y32.norm() / (y32 - y16).norm()) > 30


@pytest.mark.parametrize("k, bits, groups", [(16, 4, 1), (64, 6, 3), (256, 8, 1)])
def test_few_rows_fast_path_equals_the_op(k, bits, groups):
    """Eager float32 inference with few rows goes straight to the C GEMV: the same bits as the op."""
    from wclust.kernels import cpu
    from wclust.kernels.ops import lut_linear

    if cpu.native() is None:
        pytest.skip("no C library")
    m = ClusteredLinear(_parts(37, 53, k, bits, groups), torch.randn(37))
    for shape in [(1, 53), (3, 53), (1, 1, 53), (2, 5, 53)]:
        x = torch.randn(*shape)
        want = lut_linear(x, m.indices, m.codebook, m.bias, 53, m.group_size, m.index_bits)
        assert torch.equal(m(x), want)
    e = cpu._fast[False][id(m.indices)]
    assert e[1]() is m.indices and e[4] is not None and e[5] == cpu.gemv_rows(k) * 53
    # a copy has new tensors: entries and plans of its own
    c = copy.deepcopy(m)
    x = torch.randn(2, 53)
    assert torch.equal(c(x), m(x)) and cpu._fast[False][id(c.indices)][1]() is c.indices
    assert cpu._fast[False][id(c.indices)][4] is not e[4]
    # bf16 activations take the bf16 plans (tests/test_gemv_bf16.py), not the float32 ones; too
    # many rows fall through to the op's other paths
    b = copy.deepcopy(m).to(torch.bfloat16)
    b(x[:1].bfloat16())
    assert id(b.indices) not in cpu._fast[False] and id(b.indices) in cpu._fast[True]
    assert cpu.fast_gemv(torch.randn(cpu.gemv_rows(k) + 1, 53), m.indices, m.codebook, m.bias, 53,
                         m.group_size, m.index_bits) is None
    # with scales and outliers the module's own shortcut is off; the op's kernel still serves
    s = ClusteredLinear(_parts(37, 53, k, bits, groups, scale=True, outliers=5), None)
    w = s.dequantize(torch.float64)
    torch.testing.assert_close(s(x).double(), x.double() @ w.reshape(37, 53).t(), rtol=1e-5, atol=1e-5)
    # the profiler sees the op, not the shortcut
    with torch.profiler.profile() as prof:
        m(torch.randn(1, 53))
    assert any(e.name == "wclust::lut_linear" for e in prof.events())
    # tracing records the op, not the shortcut
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace is deprecated
        traced = torch.jit.trace(m, torch.randn(1, 53), check_trace=False)
    assert "wclust::lut_linear" in str(traced.graph)


@pytest.mark.parametrize("dtype,rows", [(torch.float32, 1), (torch.float32, 40), (torch.bfloat16, 40)])
def test_torch_compile_of_a_clustered_model_matches_eager(dtype, rows):
    import wclust

    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.GELU(), torch.nn.Linear(96, 32)).eval()
    wclust.compress(m, wclust.ClusterConfig(16), progress=False)
    m = m.to(dtype)
    x = torch.randn(rows, 64).to(dtype)
    torch._dynamo.reset()
    with torch.inference_mode():
        want = m(x)
        got = torch.compile(m)(x)  # the op's fake kernel traces it; its CPU kernel runs it
    tol = 1e-5 if dtype == torch.float32 else 1e-2   # inductor may round the GELU differently
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)


def test_set_compute_dtype_all_or_some_kinds_and_dense_view_dtype():
    from wclust.clustering.compute import set_compute_dtype
    from wclust.clustering.modules import dense_view

    lin = ClusteredLinear(_parts(6, 8, 4, 2), None)
    conv = ClusteredConv2d.from_module(torch.nn.Conv2d(2, 3, 2), n_clusters=4)
    model = torch.nn.Sequential(lin, conv)
    assert set_compute_dtype(model, torch.bfloat16, kinds=(ClusteredLinear,)) is model
    assert (lin.compute_dtype, conv.compute_dtype) == (torch.bfloat16, None)
    set_compute_dtype(model, torch.bfloat16)
    assert conv.compute_dtype == torch.bfloat16
    set_compute_dtype(model, None)
    assert (lin.compute_dtype, conv.compute_dtype) == (None, None)
    half = ClusteredLinear(_parts(6, 8, 4, 2), torch.ones(6))
    half.codebook = half.codebook.to(torch.bfloat16)
    own, f32 = dense_view(torch.nn.Sequential(half)), dense_view(torch.nn.Sequential(half), torch.float32)
    assert type(own[0]) is torch.nn.Linear and own[0].weight.dtype == torch.bfloat16
    assert f32[0].weight.dtype == torch.float32
    assert torch.equal(f32[0].weight, half.dequantize(torch.float32)) and torch.equal(f32[0].bias, torch.ones(6))


class _Scaled(torch.nn.Linear):
    def forward(self, x):
        return 2 * super().forward(x)


def test_clustered_module_is_the_base_of_every_clustered_class():
    import wclust

    assert wclust.ClusteredModule is ClusteredModule and wclust.ClusteredWrapper is ClusteredWrapper
    mods = [ClusteredLinear(_parts(6, 8, 4, 2), None), ClusteredEmbedding(_parts(6, 8, 4, 2)),
            ClusteredConv2d.from_module(torch.nn.Conv2d(2, 3, 2), n_clusters=4),
            ClusteredWrapper.from_module(_Scaled(8, 6), n_clusters=4)]
    assert all(isinstance(m, wclust.ClusteredModule) for m in mods)
    assert not isinstance(torch.nn.Linear(2, 2), wclust.ClusteredModule)
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # the current names warn about nothing
        ClusteredWrapper.from_module(_Scaled(8, 6), n_clusters=4)
        copy.deepcopy(mods[3])


def test_old_wrapper_name_still_wraps_with_a_deprecation_warning():
    lin = _Scaled(8, 6)
    parts = fit_parts(lin.weight, 4)
    with pytest.warns(DeprecationWarning, match="use ClusteredWrapper"):
        a = ClusteredModule.from_module(copy.deepcopy(lin), parts)
    with pytest.warns(DeprecationWarning, match="use ClusteredWrapper"):
        b = ClusteredModule(parts, copy.deepcopy(lin))
    x = torch.randn(3, 8)
    for m in (a, b):
        assert type(m) is ClusteredWrapper and m.kind == "wrapped"
        torch.testing.assert_close(m(x), 2 * F.linear(x, m.dequantize(), lin.bias))


def test_wrapped_kind_in_a_file_loads_as_the_wrapper(tmp_path):
    import wclust

    torch.manual_seed(3)
    model = torch.nn.Sequential(_Scaled(16, 8))
    skeleton = copy.deepcopy(model)
    wclust.compress(model, wclust.ClusterConfig(4, min_size=1), progress=False)
    assert type(model[0]) is ClusteredWrapper
    wclust.save(model, tmp_path / "w.wclust")
    assert wclust.read_header(tmp_path / "w.wclust")["modules"]["0"]["kind"] == "wrapped"
    loaded = wclust.load(tmp_path / "w.wclust", model=skeleton)
    assert type(loaded[0]) is ClusteredWrapper
    x = torch.randn(2, 16)
    assert torch.equal(loaded(x), model(x))
