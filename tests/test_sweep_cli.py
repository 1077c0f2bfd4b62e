"""wclust sweep: refused runs leave no output directory."""
import pytest
import torch

import wclust.accuracy.evaluate as evaluate
from wclust.cli import main


def _cli(capsys, *args):
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr()


def test_bad_k_leaves_no_output_directory(capsys, tmp_path):
    rc, out = _cli(capsys, "sweep", "zoo:nope", "--task", "digits", "-k", "16", "300", "-o", tmp_path / "sw")
    assert rc == 2 and "2..256" in out.err
    assert not (tmp_path / "sw").exists()


def test_refused_source_removes_only_the_empty_directories_it_made(capsys, tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    bert = transformers.BertModel(transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1,
                                                          num_attention_heads=2, intermediate_size=48,
                                                          max_position_embeddings=32))
    bert.save_pretrained(tmp_path / "hf")
    src = f"hf:{tmp_path / 'hf'}"
    rc, out = _cli(capsys, "sweep", src, "--task", "digits", "-o", tmp_path / "sw" / "a" / "b")   # text model
    assert rc == 2 and "text model" in out.err
    assert not (tmp_path / "sw").exists()
    (tmp_path / "mine").mkdir()            # already there: kept
    rc, out = _cli(capsys, "sweep", src, "--task", "digits", "-o", tmp_path / "mine")
    assert rc == 2 and (tmp_path / "mine").is_dir()

