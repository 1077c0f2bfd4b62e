"""hf:DIR loads the class config.json names, or the bare model when the checkpoint lacks that class's head."""
import json
import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")

import wclust  # noqa: E402


def _config():
    # 304 parameters: embeddings 64+32+8 (+8 LayerNorm), one layer 80+8+40+36+8, pooler 20
    return transformers.BertConfig(vocab_size=16, hidden_size=4, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=8, max_position_embeddings=8, type_vocab_size=2)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_bare_checkpoint_named_as_a_masked_lm_loads_the_bare_model(tmp_path):
    torch.manual_seed(5)
    bare = transformers.BertModel(_config())
    assert sum(p.numel() for p in bare.parameters()) == 304
    bare.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["architectures"] = ["BertForMaskedLM"]                   # what sentence-transformers exports say
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.warns(UserWarning) as record:
        model = wclust.load_source(f"hf:{tmp_path}")
    said = [str(w.message) for w in record if "lacks its head" in str(w.message)]
    # the head's own tensors: transform.dense weight 16 + bias 4, its LayerNorm 4 + 4, the output bias 16
    # (decoder.bias is that same tensor; decoder.weight is tied to the word embeddings)
    assert len(said) == 1 and "BertForMaskedLM" in said[0] and "44 parameters in 5 tensors" in said[0]
    assert type(model) is transformers.BertModel and model.wclust_source["class"] == "BertModel"
    want, got = _state(bare), _state(model)
    assert sorted(got) == sorted(want) and "pooler.dense.weight" in got     # the checkpoint's pooler kept
    for k in want:
        assert torch.equal(got[k], want[k]), k                               # bit for bit
    assert not any(k.startswith("cls.") for k in got)                        # no random head


def test_checkpoint_with_its_head_keeps_the_head_class(tmp_path):
    torch.manual_seed(6)
    full = transformers.BertForMaskedLM(_config())
    full.save_pretrained(tmp_path)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*lacks its head")
        model = wclust.load_source(f"hf:{tmp_path}")
    assert type(model) is transformers.BertForMaskedLM
    want, got = _state(full), _state(model)
    assert sorted(got) == sorted(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_missing_keys_of_the_base_model_are_not_a_missing_head():
    from wclust.sources.models import missing_head_tensors

    lm = transformers.BertForMaskedLM(_config())
    assert missing_head_tensors(lm, ["bert.pooler.dense.weight", "bert.embeddings.word_embeddings.weight"]) == []
    assert len(missing_head_tensors(lm, ["cls.predictions.bias", "cls.predictions.decoder.bias"])) == 1  # tied
    assert missing_head_tensors(transformers.BertModel(_config()), ["pooler.dense.weight"]) == []
