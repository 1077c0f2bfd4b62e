import numpy as np
import pytest
import torch

import wclust
from wclust.clustering.modules import ClusteredConv2d, ClusteredEmbedding, ClusteredLinear


def _clustered(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, (ClusteredLinear, ClusteredEmbedding, ClusteredConv2d))}


@pytest.mark.parametrize("k", [2, 16, 64, 256])
@pytest.mark.parametrize("scope", ["model", "layer", "group"])
def test_invariants(tiny, k, scope):
    w_before = {n: m.weight.detach().clone() for n, m in tiny.named_modules() if hasattr(m, "weight")
                and isinstance(m.weight, torch.Tensor) and m.weight.numel() >= 1024}
    wclust.compress(tiny, wclust.ClusterConfig(k, scope=scope, group_size=7), progress=False)
    cms = _clustered(tiny)
    assert set(cms) == {"embed", "patch", "fc1", "fc2", "head"}
    for name, m in cms.items():
        idx = m.unpacked_indices()
        assert idx.dtype == torch.uint8 and int(idx.max()) < k
        for g in range(m.codebook.shape[0]):
            rows = slice(g * m.group_size, (g + 1) * m.group_size)
            assert len(torch.unique(m.dequantize().reshape(m.out_features, -1)[rows])) <= k
        w_hat = m.dequantize()
        assert w_hat.shape == w_before[name if name != "head" else "embed"].shape
    codebooks = {m.codebook.numpy().tobytes() for m in cms.values()}
    if scope == "model":
        assert len(codebooks) == 1
        assert all(m.codebook.shape[0] == 1 for m in cms.values())
    if scope == "group":
        assert cms["fc1"].codebook.shape[0] == -(-80 // 7)  # 80 rows, groups of 7: last one has 3 rows


def test_tied_weights_clustered_once_and_stay_tied(tiny, tiny_inputs):
    wclust.compress(tiny, wclust.ClusterConfig(16), progress=False)
    assert tiny.head.indices is tiny.embed.indices and tiny.head.codebook is tiny.embed.codebook
    assert tiny.wclust_info["stats"]["n_tied"] == 1
    ids, img = tiny_inputs
    assert tiny(ids, img).shape == (2, 5, 97)


def test_already_clustered_model_is_refused(tiny, tmp_path):
    wclust.compress(tiny, wclust.ClusterConfig(16, min_size=64), progress=False)
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    with pytest.raises(ValueError, match="already clustered.*float source"):
        wclust.compress(tiny, wclust.ClusterConfig(n_clusters=4, min_size=1), progress=False)
    wclust.save(tiny, tmp_path / "x.wclust")
    from tests.conftest import TinyTransformer

    loaded = wclust.load(tmp_path / "x.wclust", model=TinyTransformer())
    with pytest.raises(ValueError, match="already clustered"):
        wclust.compress(loaded, wclust.ClusterConfig(n_clusters=4, min_size=1), progress=False)
    partly = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64))
    wclust.compress(partly, wclust.ClusterConfig(16, include=["0"]), progress=False)
    with pytest.raises(ValueError, match="already clustered"):   # would mix two configs under one header
        wclust.compress(partly, wclust.ClusterConfig(4, include=["1"]), progress=False)
    after = tiny.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_output_close_to_float_at_256(tiny, tiny_inputs):
    ids, img = tiny_inputs
    with torch.no_grad():
        ref = tiny(ids, img)
        wclust.compress(tiny, wclust.ClusterConfig(256), progress=False)
        out = tiny(ids, img)
    sqnr = 20 * torch.log10(ref.norm() / (ref - out).norm())
    assert sqnr > 25
    assert tiny.wclust_info["stats"]["sqnr_db"] > 25


def test_outliers_are_exact_and_improve_error(tiny):
    import copy

    a, b = copy.deepcopy(tiny), copy.deepcopy(tiny)
    wclust.compress(a, wclust.ClusterConfig(4), progress=False)
    wclust.compress(b, wclust.ClusterConfig(4, outliers=0.01), progress=False)
    w = tiny.fc2.weight.detach()
    top = w.abs().reshape(-1).topk(int(round(0.01 * w.numel()))).indices
    torch.testing.assert_close(b.fc2.dequantize().reshape(-1)[top], w.reshape(-1)[top])
    assert b.wclust_info["stats"]["sqnr_db"] > a.wclust_info["stats"]["sqnr_db"]


def test_fp16_and_bf16_weights_keep_dtype():
    for dt in (torch.float16, torch.bfloat16):
        lin = torch.nn.Sequential(torch.nn.Linear(64, 32)).to(dt)
        wclust.compress(lin, wclust.ClusterConfig(16), progress=False)
        assert lin[0].codebook.dtype == dt
        assert lin(torch.randn(2, 64, dtype=dt)).dtype == dt


def test_position_embeddings_and_small_tensors_stay_float():
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.position_embeddings = torch.nn.Embedding(64, 32)
            self.small = torch.nn.Linear(8, 8)
            self.big = torch.nn.Linear(32, 64)

    m = wclust.compress(M(), wclust.ClusterConfig(16), progress=False)
    assert set(_clustered(m)) == {"big"}
    m = wclust.compress(M(), wclust.ClusterConfig(16, exclude=[]), progress=False)
    assert set(_clustered(m)) == {"big", "position_embeddings"}


def test_bad_inputs():
    with pytest.raises(ValueError, match="2..256"):
        wclust.ClusterConfig(1)
    with pytest.raises(ValueError, match="bits"):
        wclust.ClusterConfig(64, bits=5)
    with pytest.raises(ValueError, match="bits"):
        wclust.ClusterConfig(16, bits=9)
    lin = torch.nn.Linear(64, 64)
    with torch.no_grad():
        lin.weight[3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        wclust.compress(torch.nn.Sequential(lin), wclust.ClusterConfig(16), progress=False)
    with pytest.warns(UserWarning, match="no layer matched"):
        m = torch.nn.Sequential(torch.nn.LayerNorm(8))
        assert wclust.compress(m, wclust.ClusterConfig(16), progress=False) is m


def test_fewer_distinct_values_than_clusters():
    lin = torch.nn.Linear(64, 64)
    with torch.no_grad():
        lin.weight.copy_(torch.randint(-2, 3, (64, 64)).float() / 4)
    seq = wclust.compress(torch.nn.Sequential(lin), wclust.ClusterConfig(64), progress=False)
    torch.testing.assert_close(seq[0].dequantize(), lin.weight.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("rows,group", [(70, 32), (50, 64), (33, 1)])
def test_group_scope_equals_a_per_group_reference(rows, group):
    from wclust.clustering.kmeans import Assigner

    lin = torch.nn.Linear(40, rows)
    w = lin.weight.detach().clone()
    seq = wclust.compress(torch.nn.Sequential(lin), wclust.ClusterConfig(8, scope="group", group_size=group,
                                                                         min_size=0), progress=False)
    m = seq[0]
    assert m.codebook.shape[0] == -(-rows // group)
    w_hat = m.dequantize()
    for g, r0 in enumerate(range(0, rows, group)):
        block = w[r0:r0 + group]
        km = wclust.KMeans1D(8).fit(block)
        cb = np.zeros(8, np.float32)
        cb[:km.codebook_.size] = km.codebook_
        cb[km.codebook_.size:] = km.codebook_[-1]
        np.testing.assert_allclose(m.codebook[g].numpy(), cb, rtol=1e-6, atol=1e-7)
        ref = cb[Assigner(cb)(block.numpy())[0]]
        np.testing.assert_array_equal(w_hat[r0:r0 + group].numpy(), ref)


def test_channel_scale_shares_one_codebook_and_rescues_uneven_rows():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48, bias=False)
    with torch.no_grad():
        lin.weight.mul_(torch.logspace(-2, 1, 48)[:, None])     # rows on very different scales
    w = lin.weight.detach().clone()
    plain = wclust.compress(torch.nn.Sequential(_copy_linear(lin)), wclust.ClusterConfig(8), progress=False)
    scaled = wclust.compress(torch.nn.Sequential(_copy_linear(lin)), wclust.ClusterConfig(8, channel_scale=True),
                             progress=False)
    m = scaled[0]
    assert m.codebook.shape == (1, 8) and m.scale.shape == (48,)
    rel = lambda x: ((x - w).norm(dim=1) / w.norm(dim=1)).max()   # noqa: E731
    assert rel(m.dequantize()) < rel(plain[0].dequantize())
    torch.testing.assert_close(m.dequantize(), m.codebook[0][m.unpacked_indices().long()] * m.scale[:, None])


def test_fisher_weighting_protects_important_weights():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 64)
    important = torch.zeros_like(lin.weight, dtype=torch.bool)
    important[0, :3] = True
    with torch.no_grad():
        lin.weight[0, :3] = torch.tensor([0.3, -0.25, 0.2])     # a few weights the loss is sensitive to
    w = lin.weight.detach().clone()
    sw = torch.where(important, torch.tensor(1e4), torch.tensor(1.0))
    uni = wclust.compress(torch.nn.Sequential(_copy_linear(lin)), wclust.ClusterConfig(4), progress=False)
    fis = wclust.compress(torch.nn.Sequential(_copy_linear(lin)), wclust.ClusterConfig(4, weighting="fisher"),
                          sample_weights={"0": sw}, progress=False)
    err = lambda m: (m[0].dequantize() - w)[important].pow(2).mean()   # noqa: E731
    assert err(fis) < 0.5 * err(uni)
    with pytest.raises(ValueError, match="sample_weights"):
        wclust.compress(torch.nn.Sequential(lin), wclust.ClusterConfig(4, weighting="fisher"), progress=False)


def _copy_linear(lin):
    import copy
    return copy.deepcopy(lin)


def test_interrupt_stops_the_workers_and_leaves_the_model_float(monkeypatch):
    import wclust.clustering.compress as cm

    model = torch.nn.Sequential(*[torch.nn.Linear(64, 256) for _ in range(4)])
    calls = []
    real = cm._fit_codebook

    def fit(h, k):
        calls.append(k)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(h, k)

    monkeypatch.setattr(cm, "_fit_codebook", fit)
    with pytest.raises(KeyboardInterrupt):
        wclust.compress(model, wclust.ClusterConfig(8, scope="group", group_size=8, threads=2), progress=False)
    assert len(calls) < 16       # 128 codebooks in all: both workers stopped at their next one
    assert not any(isinstance(m, ClusteredLinear) for m in model.modules())
