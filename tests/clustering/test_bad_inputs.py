"""Bad configs and odd models (complements tests/test_compress.py, which covers n_clusters=1,
bits 5 for k=64, bits 9, NaN weights, the no-match warning, fp16/bf16 dtypes in memory and five
distinct values at k=64)."""
import warnings

import pytest
import torch

import wclust
from tests.conftest import TinyTransformer


def _lin(n_in=64, n_out=32, dtype=torch.float32):
    return torch.nn.Sequential(torch.nn.Linear(n_in, n_out)).to(dtype)


@pytest.mark.parametrize("k", [0, -3, 257, 1000, 2.5, True, "64", None])
def test_n_clusters_out_of_range_or_not_int(k):
    with pytest.raises(ValueError, match="n_clusters"):
        wclust.ClusterConfig(k)


@pytest.mark.parametrize("k,bits", [(17, 4), (2, 0), (256, 7), (3, 1), (16, 10), (16, 4.0), (16, True)])
def test_bits_below_log2_k_or_above_8(k, bits):
    with pytest.raises(ValueError, match="bits"):
        wclust.ClusterConfig(k, bits=bits)


@pytest.mark.parametrize("k,bits,expect", [(2, None, 1), (3, None, 2), (17, None, 5), (256, None, 8),
                                           (17, 5, 5), (17, 8, 8), (2, 8, 8)])
def test_bits_boundaries_accepted(k, bits, expect):
    assert wclust.ClusterConfig(k, bits=bits).bits == expect


@pytest.mark.parametrize("field,value", [("scope", "tensor"), ("group_size", 0), ("outliers", 0.5),
                                         ("outliers", float("nan")), ("min_size", -1), ("types", ["lstm"]),
                                         ("types", 5), ("include", [1]), ("channel_scale", "yes"),
                                         ("weighting", "hessian"), ("threads", 0)])
def test_other_bad_fields(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]):
        wclust.ClusterConfig(16, **{field: value})


def test_from_dict_refuses_unknown_fields():
    with pytest.raises(ValueError, match="unknown config field"):
        wclust.ClusterConfig.from_dict({"n_clusters": 16, "colour": "red"})
    assert wclust.ClusterConfig.from_dict(wclust.ClusterConfig(16).to_dict()) == wclust.ClusterConfig(16)


@pytest.mark.parametrize("bad", [float("inf"), float("-inf")])
def test_inf_weights_refused(bad):
    m = _lin()
    with torch.no_grad():
        m[0].weight[0, 0] = bad
    with pytest.raises(ValueError, match="NaN/Inf"):
        wclust.compress(m, wclust.ClusterConfig(16), progress=False)
    assert isinstance(m[0], torch.nn.Linear)   # nothing swapped


def test_nan_in_one_layer_leaves_whole_model_untouched(tiny):
    with torch.no_grad():
        tiny.fc2.weight[1, 1] = float("nan")
    with pytest.raises(ValueError, match="fc2"):
        wclust.compress(tiny, wclust.ClusterConfig(16, min_size=64), progress=False)
    assert not any(isinstance(m, wclust.ClusteredLinear) for m in tiny.modules())


def test_integer_weights_refused():
    m = _lin()
    m[0].weight = torch.nn.Parameter(torch.ones(32, 64, dtype=torch.int32), requires_grad=False)
    with pytest.raises(ValueError, match="int32"):
        wclust.compress(m, wclust.ClusterConfig(16), progress=False)


def test_meta_weights_refused():
    with torch.device("meta"):
        m = _lin()
    with pytest.raises(ValueError, match="meta"):
        wclust.compress(m, wclust.ClusterConfig(16), progress=False)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_weights_keep_dtype_through_the_file(tmp_path, dtype):
    m = wclust.compress(_lin(dtype=dtype), wclust.ClusterConfig(16), progress=False)
    p = tmp_path / "h.wclust"
    wclust.save(m, p)
    assert wclust.clustering.validate.read_file(p)[2]["0.codebook"]["dtype"] == {torch.float16: "F16",
                                                                      torch.bfloat16: "BF16"}[dtype]
    loaded = wclust.load(p, model=_lin(dtype=dtype))
    assert loaded[0].codebook.dtype == dtype and loaded[0].bias.dtype == dtype
    x = torch.randn(3, 64, dtype=dtype)
    assert torch.equal(loaded(x), m(x))


def test_tied_weights_stored_once(tmp_path):
    m = wclust.compress(TinyTransformer(), wclust.ClusterConfig(16, min_size=64), progress=False)
    p = tmp_path / "t.wclust"
    wclust.save(m, p)
    h = wclust.read_header(p)
    assert h["modules"]["embed"]["tied"] == ["head"] and "head" not in h["modules"]
    names = wclust.clustering.validate.read_file(p)[2]
    assert "embed.indices" in names and not any(n.startswith("head.") for n in names)


def test_no_matching_layer_warns_and_leaves_model_bit_identical(tiny):
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    with pytest.warns(UserWarning, match="no layer matched"):
        out = wclust.compress(tiny, wclust.ClusterConfig(16, include=["no.such.*"]), progress=False)
    assert out is tiny and not hasattr(tiny, "wclust_info")
    after = tiny.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="no clustered module"):
        wclust.save(tiny, "never-written.wclust")


@pytest.mark.parametrize("scope", ["layer", "group", "model"])
def test_fewer_distinct_values_than_clusters_is_exact(tmp_path, scope):
    m = _lin()
    with torch.no_grad():
        m[0].weight.fill_(0.25)
        m[0].weight[::3] = -1.5          # two distinct values, k = 256
    w = m[0].weight.detach().clone()
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no warning either
        wclust.compress(m, wclust.ClusterConfig(256, scope=scope, group_size=8), progress=False)
    assert torch.equal(m[0].dequantize(), w)
    p = tmp_path / "c.wclust"
    wclust.save(m, p)
    assert torch.equal(wclust.load(p, model=_lin())[0].dequantize(), w)


def test_all_zero_weight_is_exact():
    m = _lin()
    with torch.no_grad():
        m[0].weight.zero_()
    wclust.compress(m, wclust.ClusterConfig(16), progress=False)
    assert torch.equal(m[0].dequantize(), torch.zeros(32, 64))
