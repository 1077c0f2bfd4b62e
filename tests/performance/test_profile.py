import json

import pytest
import torch

import wclust
from wclust.clustering import arena
from wclust.performance import profile
from wclust.cli import main


class One(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 32)

    def forward(self, x):
        return self.fc(x)


def test_op_group():
    assert profile.op_group("aten::addmm") == "matmul"
    assert profile.op_group("aten::bmm") == "matmul"
    assert profile.op_group("wclust::lut_linear") == "matmul"
    assert profile.op_group("aten::convolution") == "convolution"
    assert profile.op_group("aten::_softmax") == "softmax/attention"
    assert profile.op_group("aten::_scaled_dot_product_flash_attention_for_cpu") == "softmax/attention"
    assert profile.op_group("aten::native_layer_norm") == "layer norm"
    assert profile.op_group("aten::gelu") == "activation"
    assert profile.op_group("aten::add") == "elementwise"
    assert profile.op_group("aten::clone") == "copy/reshape"
    assert profile.op_group("aten::frobnicate") == "other"


def test_trace_linear_hand_computed():
    m = One().eval()
    recs = profile.trace_ops(m, {"x": torch.randn(3, 64)})
    mm = [r for r in recs if r["group"] == "matmul"]
    assert len(mm) == 1
    r = mm[0]
    assert r["flops"] == 2 * 3 * 64 * 32
    assert r["weight_bytes"] == 4 * (64 * 32 + 32)          # weight + bias
    assert r["act_bytes"] == 4 * (3 * 64 + 3 * 32)          # input read + output written
    assert r["clusterable_numel"] == 64 * 32 and r["n_clusterable"] == 1
    assert r["module"] == "fc"


@pytest.mark.parametrize("k,index_bytes", [(16, 64 * 32 // 2), (64, 64 * 32)])
def test_trace_clustered_linear(k, index_bytes):
    m = One().eval()
    wclust.compress(m, wclust.ClusterConfig(n_clusters=k))
    recs = profile.trace_ops(m, {"x": torch.randn(3, 64)})
    (r,) = [r for r in recs if r["group"] == "matmul"]
    assert r["op"] == "wclust::lut_linear" and r["flops"] == 2 * 3 * 64 * 32
    assert r["weight_bytes"] == index_bytes + 4 * k + 4 * 32      # indices in memory + codebook + bias
    assert r["clustered"]["n_clusters"] == k


def test_trace_attributes_each_layer_its_indices_in_one_arena():
    if not arena.enabled():
        pytest.skip("no huge-page arena here")
    m = torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.ReLU(), torch.nn.Linear(48, 32)).eval()
    wclust.compress(m, wclust.ClusterConfig(n_clusters=16))
    assert arena.consolidate(m, min_bytes=0) == (48 * 64 + 32 * 48) // 2
    recs = [r for r in profile.trace_ops(m, {"input": torch.randn(3, 64)}) if r["group"] == "matmul"]
    assert [r["weights"] for r in recs] == [["0.indices", "0.codebook", "0.bias"], ["2.indices", "2.codebook", "2.bias"]]
    assert [r["weight_bytes"] for r in recs] == [48 * 64 // 2 + 4 * 16 + 4 * 48, 32 * 48 // 2 + 4 * 16 + 4 * 32]


def test_trace_embedding_reads_only_gathered_rows():
    emb = torch.nn.Embedding(1000, 16)
    recs = profile.trace_ops(emb, {"input": torch.tensor([[1, 2, 3]])})
    r = [r for r in recs if r["weight_bytes"]][0]
    assert r["weight_bytes"] == 3 * 16 * 4 and r["clusterable_numel"] == 3 * 16


def _check_result(res):
    for key in ("model", "batch", "runs", "threads", "time", "params", "activations", "flops", "peak", "clustered"):
        assert key in res
    assert set(res["time"]["percent"]) == set(profile.GROUPS)
    assert sum(res["time"]["percent"].values()) == pytest.approx(100.0)
    assert sum(res["params"]["percent"].values()) == pytest.approx(100.0)
    assert sum(res["activations"]["percent"].values()) == pytest.approx(100.0)
    assert res["peak"]["total_bytes"] >= res["params"]["resident_bytes"]
    json.dumps(res)


def test_profile_tiny(tiny, tiny_inputs):
    ids, img = tiny_inputs
    res = profile.profile_model(tiny, runs=2, inputs={"ids": ids, "img": img})
    _check_result(res)
    p = res["params"]["bytes"]
    assert p["embeddings"] == 97 * 48 * 4                    # tied head counted once
    assert p["norms"] == 2 * 48 * 4
    assert p["matmul weights"] == 4 * (48 * 3 * 16 + 48 * 80 + 80 * 48)
    assert p["biases"] == 4 * (48 + 80 + 48)
    assert res["flops"]["by_group"]["matmul"] > 0 and res["flops"]["by_group"]["convolution"] > 0
    assert not res["clustered"]


@pytest.mark.parametrize("in_arena", [False, True])
def test_profile_clustered_counts_index_width(tiny, tiny_inputs, in_arena):
    ids, img = tiny_inputs
    wclust.compress(tiny, wclust.ClusterConfig(n_clusters=16, scope="layer", min_size=1))
    if in_arena:  # every layer's indices in one storage: each still counted as its own weight
        if not arena.enabled():
            pytest.skip("no huge-page arena here")
        assert arena.consolidate(tiny, min_bytes=0) > 0
    res = profile.profile_model(tiny, runs=1, inputs={"ids": ids, "img": img})
    _check_result(res)
    assert res["clustered"]
    n_weights = 97 * 48 + 48 * 3 * 16 + 48 * 80 + 80 * 48
    assert res["params"]["index_bytes"] == sum((n * 4 + 7) // 8 for n in (97 * 48, 48 * 48, 48 * 80, 80 * 48))
    assert res["params"]["index_bytes"] < n_weights * 4 / 7
    assert res["params"]["codebook_bytes"] == 4 * 16 * 4


def test_plots(tiny, tiny_inputs, tmp_path):
    ids, img = tiny_inputs
    res = profile.profile_model(tiny, runs=1, inputs={"ids": ids, "img": img})
    for fn, name in ((profile.plot_time, "t.png"), (profile.plot_memory, "m.png")):
        path = fn(res, str(tmp_path / name))
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_cli_profile(monkeypatch, tmp_path, capsys, tiny, tiny_inputs):
    import wclust.sources.models as models

    ids, img = tiny_inputs
    monkeypatch.setattr(models, "load_source", lambda s: tiny)
    monkeypatch.setattr(models, "example_inputs", lambda m, b=1: {"ids": ids, "img": img})
    assert main(["profile", "tiny", "--runs", "1", "--json", "-o", str(tmp_path / "out")]) == 0
    res = json.loads(capsys.readouterr().out)
    _check_result(res)
    for name in ("profile_time.png", "profile_memory.png", "profile.json"):
        assert (tmp_path / "out" / name).is_file()
    assert main(["profile", "tiny", "--runs", "1"]) == 0
    assert "matmul" in capsys.readouterr().out
    assert main(["profile", "tiny", "--runs", "0"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("source", ["arch:vit-b16", "arch:deit-b"])
def test_vit_deit_matmul_dominates(source):
    model = wclust.load_source(source)
    res = profile.profile_model(model, runs=1)
    assert res["time"]["largest"] == "matmul"
    assert res["params"]["largest"] == "matmul weights"
