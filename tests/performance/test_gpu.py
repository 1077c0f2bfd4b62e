"""The GPU harness (``wclust.performance.gpu``, run as ``benchmarks/gpu.py``) checked without a GPU:
its correctness checks and bookkeeping on the CPU under Triton's interpreter, its whole-model part
with a stand-in timer, and its --compile-only report built with triton's ptxas."""
import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT
from wclust.performance import gpu


NO_TRITON = importlib.util.find_spec("triton") is None


def _triton_aot_available() -> bool:
    try:
        from wclust.kernels import triton_aot
    except ImportError:
        return False
    return triton_aot.available()


@pytest.mark.skipif(NO_TRITON, reason="triton not installed")
def test_gpu_benchmark_checks_pass_interpreted():
    """The checks the harness runs first on a GPU, here on the CPU under the interpreter (its small cases), so that a session lent a GPU does not find the harness itself broken."""
    script = textwrap.dedent(r"""
        import torch
        from wclust.performance import gpu
        failures = gpu.check(torch.device("cpu"), cases=[gpu.CASES[i] for i in (0, 1, 3)])  # small ones
        assert failures == [], failures
        # bench's bookkeeping, with a stand-in timer (do_bench needs CUDA) and small shapes
        import time, triton.testing
        def fake_bench(fn):
            t = time.perf_counter(); fn(); return time.perf_counter() - t
        triton.testing.do_bench = fake_bench
        gpu.SHAPES, gpu.ROWS = [(64, 48)], [1, 20]
        rows = gpu.bench(torch.device("cpu"), quick=True)
        assert [(r["M"], r["dtype"]) for r in rows] == [(1, "float32"), (1, "bfloat16"), (20, "float32"),
                                                         (20, "bfloat16")], rows
        for r in rows:
            assert "errors" not in r, r
            for name, _, _ in gpu.CONFIGS:
                assert r[name + "_vs_dense"] == r["dense_ms"] / r[name + "_ms"] > 0
                both = r["M"] <= 8  # few rows: both paths timed, each one's best kept
                assert (name + "_gemv_ms" in r and name + "_gemm_ms" in r) == both, r
                assert r[name + "_path"] in (("gemv", "gemm") if both else ("gemm",))
        # the whole run as main() does it on a GPU, saved after every stage: a run stopped by a time
        # limit leaves a whole JSON of what it measured, marked incomplete
        import argparse, json, os, tempfile
        gpu.CASES = [gpu.CASES[0]]
        path = os.path.join(tempfile.mkdtemp(), "gpu.json")
        seen = []
        def peeking_bench(fn):
            if os.path.exists(path):
                seen.append(json.load(open(path)))
            return fake_bench(fn)
        triton.testing.do_bench = peeking_bench
        args = argparse.Namespace(quick=True, out=path, budget_s=None, no_e2e=True)
        out = gpu.run_all(torch.device("cpu"), args, time.monotonic(), {"device": "cpu"})
        assert out["complete"] and out["check_failures"] == [] and len(out["timings"]) == 4
        assert "timings_cut" not in out and json.load(open(path)) == json.loads(json.dumps(out))
        assert os.listdir(os.path.dirname(path)) == ["gpu.json"]  # no temp file left
        assert seen[0]["complete"] is False and seen[0]["check_failures"] == [] and "timings" not in seen[0]
        assert [len(s.get("timings", [])) for s in seen][-1] == 3  # the rows before the last, saved
        # a budget already spent: no timing row starts, the cut is recorded
        args.budget_s, args.out = 0.0, None
        out = gpu.run_all(torch.device("cpu"), args, time.monotonic(), {"device": "cpu"})
        assert out["timings"] == [] and out["timings_cut"] == {"after_s": 0.0, "rows_left": 4} and out["complete"]
        print("ok")
    """)
    env = dict(os.environ, TRITON_INTERPRET="1")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().endswith("ok")


@pytest.mark.skipif(NO_TRITON, reason="triton not installed")
def test_gpu_benchmark_whole_model_bookkeeping():
    """The harness's whole-model part, run on the CPU with a stand-in timer and a tiny ViT:
    every variant timed, the clustered model agrees with its dequantized twin, weights shrink."""
    import time

    import torch

    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                                 image_size=32, patch_size=8, num_labels=10)
    calls = []

    def timer(fn):
        t = time.perf_counter()
        fn()
        calls.append(1)
        return (time.perf_counter() - t) * 1e3

    out = gpu.e2e(torch.device("cpu"), transformers.ViTForImageClassification(cfg), k=16, timer=timer)
    names = ["fp32", "dense_bf16_model", "clustered_fp32", "clustered_bf16", "clustered_bf16_model"]
    assert list(out["ms"]) == names and len(calls) == 5
    assert out["source"] == "ViTForImageClassification" and out["n_clusters"] == 16
    assert out["speedup_vs_fp32"]["fp32"] == 1.0
    assert out["clustered_vs_twin_rel_err"] < 1e-4
    assert out["weights_mb"]["clustered_fp32"] < 0.5 * out["weights_mb"]["fp32"]


@pytest.mark.skipif(not _triton_aot_available(), reason="triton's NVIDIA backend / ptxas not installed")
def test_gpu_benchmark_compile_only_reports_every_variant(monkeypatch, capsys):
    """``python benchmarks/gpu.py --compile-only``: what a session without a GPU can check of it."""
    import json

    monkeypatch.setattr(gpu, "GEMV_BLOCKS", [(1, 32, 64)])
    monkeypatch.setattr(gpu, "BLOCKS", [(32, 32, 32)])
    monkeypatch.setattr(gpu, "SMALL_M_BLOCKS", [(16, 32, 64)])
    assert gpu.main(["--compile-only"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["arch"] == "sm_90" and out["failures"] == []
    got = {(v["kernel"], v["dtype"], v["index_bits"], tuple(v["blocks"])) for v in out["variants"]}
    assert got == {(k, d, b, blk) for k, blk in (("gemv", (1, 32, 64)), ("gemm", (16, 32, 64)), ("gemm", (32, 32, 32)))
                   for d in ("fp32", "bf16") for b in (8, 4)}
    assert out["spilling"] == sum(v["spill_bytes"] > 0 for v in out["variants"])
