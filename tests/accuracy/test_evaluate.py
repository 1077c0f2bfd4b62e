import copy
import json
import os

import numpy as np
import pytest
import torch

import wclust
from wclust.cli import main
from wclust.accuracy.evaluate import Evaluator, cluster_copy, dense_view, evaluate, weight_bytes
from wclust.accuracy.sweeps import plot_sweep, sweep
from wclust.accuracy.tasks import get_task

from tests.helpers_eval import digits_evaluator, save_tiny, tiny_dinov2


@pytest.fixture(autouse=True)
def _one_thread_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WCLUST_CACHE", str(tmp_path / "cache"))
    n = torch.get_num_threads()
    torch.set_num_threads(1)      # tiny models: threads only add overhead
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def digits_eval():
    return digits_evaluator(n_train=500, n_test=400)


def test_probe_on_fp32_features_is_well_above_chance(digits_eval):
    model, ev = digits_eval
    assert ev.fp32["n"] == 400
    assert ev.fp32["top1"] > 50 and ev.fp32["top5"] > ev.fp32["top1"]     # chance is 10%
    assert 0 < ev.fp32["top1_ci95"] < 6
    again = ev.score(model)
    assert again["top1"] == ev.fp32["top1"] and again["drop_top1"] == 0


def test_clustered_scores_dense_view_equals_kernel(digits_eval):
    model, ev = digits_eval
    c = cluster_copy(model, wclust.ClusterConfig(16))
    dense, kern = ev.score(c), ev.score(c, kernel=True)
    assert abs(dense["top1"] - kern["top1"]) <= 100 / 400 + 1e-9     # same weights: at most one flip
    assert dense["bytes"] < ev.fp32["bytes"]
    c256 = cluster_copy(model, wclust.ClusterConfig(256))
    f = torch.nn.functional.cosine_similarity(torch.from_numpy(ev.features(c256)), torch.from_numpy(ev.test_fp32))
    assert f.mean() > 0.99


def test_dense_view_matches_dequantized_weights(tiny, tiny_inputs):
    wclust.compress(tiny, wclust.ClusterConfig(8, outliers=0.01), progress=False)
    d = dense_view(tiny)
    assert not any(isinstance(m, wclust.ClusteredLinear) for m in d.modules())
    with torch.no_grad():
        torch.testing.assert_close(d(*tiny_inputs), tiny(*tiny_inputs), rtol=1e-4, atol=1e-4)


def test_weight_bytes_counts_indices_codebook_and_outliers():
    lin = torch.nn.Sequential(torch.nn.Linear(64, 32, bias=False))
    assert weight_bytes(lin) == 64 * 32 * 4
    wclust.compress(lin, wclust.ClusterConfig(16, outliers=0.01), progress=False)
    n_out = round(0.01 * 64 * 32)
    assert weight_bytes(lin) == 64 * 32 // 2 + 16 * 4 + n_out * (4 + 4)


def test_sweep_rows_complete_plot_and_resume(tmp_path, monkeypatch):
    model = tiny_dinov2()
    task = get_task("digits", n_train=400, n_test=300)
    out = tmp_path / "sw"
    out.mkdir()
    res = sweep(model, task, [4, 256], ["layer", "model"], str(out), image_size=16, progress=False)
    saved = json.loads((out / "sweep.json").read_text())
    assert [(r["scope"], r["k"]) for r in saved["rows"]] == [("fp32", None), ("layer", 4), ("layer", 256),
                                                             ("model", 4), ("model", 256)]
    for r in saved["rows"][1:]:
        for f in ("top1", "top5", "top1_ci95", "drop_top1", "drop_top1_ci95", "bytes", "sqnr_db", "n", "seconds"):
            assert r[f] is not None, f
        assert r["n"] == 300
    assert saved["rows"][2]["sqnr_db"] > saved["rows"][1]["sqnr_db"]
    assert (out / "sweep.png").stat().st_size > 1000
    import wclust.accuracy.sweeps as sweeps_mod

    def boom(*a, **k):
        raise AssertionError("a finished row was recomputed")
    monkeypatch.setattr("wclust.accuracy.evaluate.cluster_copy", boom)
    again = sweeps_mod.sweep(model, task, [4, 256], ["layer", "model"], str(out), image_size=16, progress=False)
    assert [r["top1"] for r in again["rows"]] == [r["top1"] for r in res["rows"]]
    with pytest.raises(AssertionError, match="recomputed"):
        sweeps_mod.sweep(model, task, [4], ["layer"], str(out), image_size=16, progress=False, fresh=True)
    plot_sweep(saved, str(tmp_path / "again.png"))


def test_cli_eval_float_clustered_and_wclust_file(tmp_path, capsys):
    src = "hf:" + save_tiny(tmp_path / "tiny")
    common = ["--task", "digits", "--image-size", "16", "--n-train", "300", "--n-test", "200", "--json"]
    assert main(["eval", src, *common]) == 0
    fp32 = json.loads(capsys.readouterr().out)
    assert fp32["n"] == 200 and "top5" in fp32 and fp32["seconds"] > 0
    assert main(["eval", src, "-k", "256", "--scope", "group", "--group-size", "24", *common]) == 0
    row = json.loads(capsys.readouterr().out)
    assert abs(row["top1"] - fp32["top1"]) < 3 and row["scope"] == "group"
    assert main(["compress", src, "-k", "256", "-o", str(tmp_path / "t.wclust"), "--json"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "t.wclust"), "--reference", src, *common]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(row["top1"], abs=3)
    assert main(["eval", str(tmp_path / "t.wclust"), *common]) == 2        # no reference known
    assert "--reference" in capsys.readouterr().err


def test_bf16_compute_runs_in_bf16_and_scores_near_fp32(digits_eval):
    from wclust.accuracy.evaluate import with_compute

    model, ev = digits_eval
    c = cluster_copy(model, wclust.ClusterConfig(64))
    fp32 = ev.score(c, kernel=True)
    lin = next(m for m in c.modules() if isinstance(m, wclust.ClusteredLinear))
    for compute, want_in in (("bf16", torch.float32), ("bf16-model", torch.bfloat16)):
        m = with_compute(copy.deepcopy(c), compute)
        seen = []
        layer = next(x for x in m.modules() if isinstance(x, wclust.ClusteredLinear))
        h = layer.register_forward_hook(lambda mod, a, out: seen.append((a[0].dtype, out.dtype)))
        try:
            feats = ev.features(m)
        finally:
            h.remove()
        assert seen and all(s == (want_in, want_in) for s in seen), (compute, seen[:1])
        assert (layer.compute_dtype == torch.bfloat16) == (compute == "bf16")
        assert layer.codebook.dtype == (torch.bfloat16 if compute == "bf16-model" else torch.float32)
        cos = torch.nn.functional.cosine_similarity(torch.from_numpy(feats), torch.from_numpy(ev.features(c)))
        assert cos.min() > 0.98 and not np.array_equal(feats, ev.features(c))     # rounded, not another model
        r = ev.score(m)
        assert abs(r["top1"] - fp32["top1"]) <= 5
    assert lin.compute_dtype is None                 # with_compute changed the copies only


def test_evaluate_compute_option_errors(digits_eval):
    from wclust.errors import WclustError

    model, _ = digits_eval
    with pytest.raises(WclustError, match="compute must be one of"):
        evaluate(model, "digits", compute="fp16")
    with pytest.raises(WclustError, match="bf16-model"):
        evaluate(model, "digits", compute="bf16")


def test_cli_eval_compute_bf16_model_of_a_float_model(tmp_path, capsys):
    src = "hf:" + save_tiny(tmp_path / "tiny")
    common = ["--task", "digits", "--image-size", "16", "--n-train", "300", "--n-test", "200", "--json"]
    assert main(["eval", src, "--compute", "bf16-model", *common]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["compute"] == "bf16-model" and row["n"] == 200
    # a random-init tiny model loses a few points to bf16 rounding; a broken path falls to chance (10%)
    assert abs(row["drop_top1"]) <= 10 and row["fp32"]["top1"] > 50
    assert main(["eval", src, "-k", "64", "--compute", "bf16", *common]) == 0
    assert json.loads(capsys.readouterr().out)["compute"] == "bf16"


def test_fidelity_task(digits_eval):
    model = tiny_dinov2()
    task = get_task("fidelity:digits", n_test=100)
    ev = Evaluator(model, task, image_size=16, progress=False, cache=False)
    assert ev.fp32["fidelity"] == pytest.approx(1.0)
    r = ev.score(cluster_copy(model, wclust.ClusterConfig(8)))
    assert 0.5 < r["fidelity"] < 1.0 and r["fidelity_min"] <= r["fidelity"]


def test_feature_cache_is_reused(tmp_path):
    model = tiny_dinov2()
    task = get_task("digits", n_train=200, n_test=100)
    Evaluator(model, task, image_size=16, progress=False)
    files = sorted(os.listdir(tmp_path / "cache" / "features"))
    assert len(files) == 2
    ev = Evaluator(model, get_task("digits", n_train=200, n_test=100), image_size=16, progress=False)
    assert sorted(os.listdir(tmp_path / "cache" / "features")) == files
    np.testing.assert_array_equal(ev.test_fp32, np.load(tmp_path / "cache" / "features" / files[0]))


def test_imagenet_head_models_and_mismatches():
    import importlib.util

    import transformers

    if importlib.util.find_spec("foolbox") is None:
        pytest.skip("foolbox sample images not installed")
    cfg = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                 image_size=32, patch_size=8, num_labels=1000)
    clf = transformers.ViTForImageClassification(cfg).eval()
    row = evaluate(clf, "imagenet-samples", progress=False)
    assert row["n"] == 20 and 0 <= row["top1"] <= row["top5"] <= 100
    with pytest.raises(wclust.WclustError, match="own classes"):
        evaluate(clf, "digits", progress=False)
    with pytest.raises(wclust.WclustError, match="backbone"):
        evaluate(tiny_dinov2(), "imagenet-samples", image_size=16, progress=False)
