"""wclust.load builds the architecture with its parameters on the meta device, so the float weights
a file replaces by indices are never allocated: the same model, bit for bit, as the float build."""
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import wclust
from wclust.clustering import architecture
from wclust.clustering.architecture import hf_source_dict, materialize, parameters_on_meta

_REGISTER = nn.Module.register_parameter


def _tiny_hf(name):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if name == "bert":
        return transformers.BertModel(transformers.BertConfig(
            vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
            max_position_embeddings=32))
    if name == "bert-mlm":   # decoder tied to the word embeddings
        return transformers.BertForMaskedLM(transformers.BertConfig(
            vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48,
            max_position_embeddings=32))
    if name == "gpt2":       # Conv1D layers (wrapped), a tied head, causal-mask buffers
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=64, n_embd=32, n_layer=2, n_head=2, n_positions=32))
    if name == "vit":
        return transformers.ViTForImageClassification(transformers.ViTConfig(
            image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=48, num_labels=10))
    raise ValueError(name)


def _inputs(name):
    g = torch.Generator().manual_seed(3)
    if name == "vit":
        return {"pixel_values": torch.randn(2, 3, 32, 32, generator=g)}
    return {"input_ids": torch.randint(0, 64, (2, 7), generator=g)}


def _tensors(model):
    return dict(model.named_parameters(remove_duplicate=False)) | dict(model.named_buffers(remove_duplicate=False))


def _shared_groups(model):
    """Names grouped by the tensor object they hold: the model's tying structure."""
    groups = {}
    for n, t in _tensors(model).items():
        groups.setdefault(id(t), []).append(n)
    return sorted(sorted(g) for g in groups.values())


def _load_both(path, monkeypatch):
    calls = []

    def spy(model, filled):
        ok = materialize(model, filled)
        calls.append(ok)
        return ok

    monkeypatch.setattr(architecture, "materialize", spy)
    lean = wclust.load(path)
    monkeypatch.setattr(architecture, "materialize", lambda model, filled: False)   # the float build
    full = wclust.load(path)
    return lean, full, calls


@pytest.mark.parametrize("name", ["bert", "bert-mlm", "gpt2", "vit"])
@pytest.mark.parametrize("include_embeddings", [False, True])
def test_lean_load_equals_the_float_build(name, include_embeddings, tmp_path, monkeypatch):
    model = _tiny_hf(name).eval()
    model.wclust_source = hf_source_dict(model)
    cfg = wclust.ClusterConfig(16, min_size=64, exclude=[] if include_embeddings else ["*embed*", "*wte*", "*wpe*"])
    wclust.compress(model, cfg, progress=False)
    path = tmp_path / f"{name}.wclust"
    wclust.save(model, path)

    lean, full, calls = _load_both(path, monkeypatch)
    assert calls == [True], "the lean build was not used"
    a, b = _tensors(lean), _tensors(full)
    assert a.keys() == b.keys()
    for n in a:
        assert not a[n].is_meta, n
        assert a[n].dtype == b[n].dtype and torch.equal(a[n], b[n]), n
    assert _shared_groups(lean) == _shared_groups(full)
    with torch.no_grad():
        ya, yb, y0 = lean(**_inputs(name)), full(**_inputs(name)), model(**_inputs(name))
    out = "logits" if name != "bert" else "last_hidden_state"
    assert torch.equal(ya[out], yb[out]) and torch.equal(ya[out], y0[out])


class _BufferFromWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.register_buffer("norms", self.lin.weight.detach().norm(dim=1), persistent=False)


class _AttributeFromWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.col_sums = self.lin.weight.detach().sum(0)                # a plain attribute, not a buffer


def test_materialize_refuses_what_the_file_cannot_fill():
    for cls in (_BufferFromWeight, _AttributeFromWeight):
        with parameters_on_meta():
            m = cls()
        assert m.lin.weight.is_meta
        assert materialize(m, {"lin.weight", "lin.bias"}) is False  # a tensor computed from a meta weight
        assert m.lin.weight.is_meta                                   # untouched

    with parameters_on_meta():
        m = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
        m.register_buffer("step", torch.arange(3))                    # buffers stay real
    assert not m.step.is_meta and torch.equal(m.step, torch.arange(3))
    assert materialize(m, {"0.weight", "0.bias", "1.weight"}) is False  # 1.bias not in the file
    assert all(p.is_meta for p in m.parameters())
    assert materialize(m, {"0.weight", "0.bias", "1.weight", "1.bias"}) is True
    assert not any(p.is_meta for p in m.parameters())
    assert all(p.requires_grad for p in m.parameters())              # requires_grad kept as built


def test_materialize_keeps_shared_parameters_shared():
    with parameters_on_meta():
        m = nn.ModuleDict({"a": nn.Embedding(5, 3), "b": nn.Linear(3, 5, bias=False)})
        m["b"].weight = m["a"].weight
    assert materialize(m, {"b.weight"})                               # one name of the pair is enough
    assert m["a"].weight is m["b"].weight and not m["a"].weight.is_meta
    assert nn.Module.register_parameter is _REGISTER                 # the patch is gone after the block


def test_the_patch_is_undone_after_an_error():
    with pytest.raises(RuntimeError):
        with parameters_on_meta():
            raise RuntimeError("boom")
    assert nn.Module.register_parameter is _REGISTER
    assert not nn.Linear(2, 2).weight.is_meta


PEAK_CHILD = r"""
import sys, torch, transformers, wclust
from transformers import BertModel, BertConfig
def status(key):  # KiB; VmHWM is this process's peak resident memory (ru_maxrss carries the parent's over)
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
start = status("VmHWM")
wclust.load(sys.argv[1])
print((status("VmHWM") - start) * 1024)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_loading_never_holds_the_float_weights(tmp_path):
    """A BERT with 64 MiB of float Linear weights, clustered at 8 bits from random parts (no k-means):
    loading it in a fresh process peaks far below the float weights (the float build peaked above)."""
    transformers = pytest.importorskip("transformers")
    from wclust.clustering.modules import ClusteredParts, swap_in

    torch.manual_seed(0)
    model = transformers.BertModel(transformers.BertConfig(
        vocab_size=64, hidden_size=512, num_hidden_layers=8, num_attention_heads=8, intermediate_size=1536,
        max_position_embeddings=32)).eval()
    model.wclust_source = hf_source_dict(model)
    g = torch.Generator().manual_seed(0)
    float_bytes = 0
    for n, m in list(model.named_modules()):
        if isinstance(m, nn.Linear):
            float_bytes += m.weight.numel() * 4
            parts = ClusteredParts(tuple(m.weight.shape), torch.randint(0, 256, m.weight.shape, generator=g,
                                                                         dtype=torch.uint8).numpy(),
                                   torch.randn(1, 256, generator=g), m.weight.shape[0], 8)
            swap_in(model, n, parts)
    path = tmp_path / "big.wclust"
    wclust.save(model, path)
    from tests.conftest import ROOT as root
    out = subprocess.run([sys.executable, "-c", PEAK_CHILD, str(path)], cwd=root, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    peak = int(out.stdout.split()[-1])
    assert float_bytes > 2**26
    # the file, its unpacked indices and the arena, 1 byte a weight each (0.63x the float bytes
    # here), where the float build peaked at 1.6x
    assert peak < 0.8 * float_bytes, f"peak {peak / 2**20:.0f} MiB for {float_bytes / 2**20:.0f} MiB of float weights"


def test_an_architecture_that_fails_on_meta_parameters_is_built_the_float_way(tmp_path, monkeypatch):
    import contextlib

    model = _tiny_hf("bert").eval()
    model.wclust_source = hf_source_dict(model)
    wclust.compress(model, wclust.ClusterConfig(16, min_size=64), progress=False)
    wclust.save(model, tmp_path / "b.wclust")

    @contextlib.contextmanager
    def failing():
        raise RuntimeError("this architecture reads a weight's value in __init__")
        yield

    monkeypatch.setattr(architecture, "parameters_on_meta", failing)
    loaded = wclust.load(tmp_path / "b.wclust")
    with torch.no_grad():
        assert torch.equal(loaded(**_inputs("bert")).last_hidden_state, model(**_inputs("bert")).last_hidden_state)


def test_other_threads_build_real_parameters_meanwhile():
    import threading

    inside, done = threading.Event(), threading.Event()
    built = {}

    def loader():
        with parameters_on_meta():
            built["here"] = nn.Linear(3, 3)
            inside.set()
            done.wait(30)

    t = threading.Thread(target=loader)
    t.start()
    assert inside.wait(30)
    other = nn.Linear(3, 3)            # this thread, while the loader's block is open
    done.set()
    t.join()
    assert built["here"].weight.is_meta and not other.weight.is_meta
    assert nn.Module.register_parameter is _REGISTER
