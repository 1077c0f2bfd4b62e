"""The boards' ARM CPUs in the platform model: rates from llvm-mca on the NEON kernels' loops
(benchmarks/arm_mca.py), picked by codebook length and index width, and estimated beside the GPU
when a board is named."""
import json
import os

import pytest

from wclust.cli import main
from wclust.performance import platforms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cycles_are_the_saved_llvm_mca_results():
    with open(os.path.join(ROOT, "benchmarks", "results", "arm_mca.json")) as f:
        saved = json.load(f)
    for model, cyc in platforms.ARM_MCA_CYCLES.items():
        loops = saved["models"][model]["loops"]
        for path, c in cyc.items():
            assert loops[path]["cycles_per_16"] == c, (model, path)


@pytest.mark.parametrize("name, cores, clock, model", [("jetson-tx2-cpu", 4, 2.0e9, "cortex-a57"),
                                                       ("jetson-xavier-cpu", 8, 2.265e9, "neoverse-n2")])
def test_arm_cpu_rates(name, cores, clock, model):
    spec = platforms.get(name)
    cyc = platforms.ARM_MCA_CYCLES[model]
    assert spec.flops_rate == pytest.approx(32 * cores * clock / cyc["f32_dense"])
    board = platforms.get(name.removesuffix("-cpu"))
    assert platforms.CPU_OF[board.name] == name
    assert spec.bandwidth == board.bandwidth and spec.lookup_tile is None

    def rate(path):  # lookups/s: 16 per cycles beyond the dense loop, on every core
        return 16 * cores * clock / (cyc[path] - cyc["f32_dense"])

    assert spec.lookup_rate_for(16) == pytest.approx(rate("f32_4bit"))          # 4-bit indices
    assert spec.lookup_rate_for(16, bits=8) == pytest.approx(rate("f32_8bit_k16"))
    assert spec.lookup_rate_for(32) == pytest.approx(rate("f32_8bit_k32"))
    assert spec.lookup_rate_for(64) == pytest.approx(rate("f32_8bit_k64"))
    assert spec.lookup_rate_for(65) == spec.lookup_rate_for(256) == pytest.approx(rate("f32_8bit_k256_gather"))
    assert spec.lookup_rate_for(None) == spec.lookup_rate
    for key in ("flops_rate", "lookup_rate", "bandwidth", "dram_j_per_byte", "j_per_flop", "static_w", "sram"):
        assert spec.sources.get(key), key


def test_predict_uses_the_rate_of_the_codebook():
    spec = platforms.get("jetson-xavier-cpu")
    rec = {"op": "aten::mm", "group": "matmul", "flops": 2 * 768 * 768, "weight_bytes": 4 * 768 * 768,
           "act_bytes": 0, "clusterable_numel": 768 * 768, "n_clusterable": 1, "weights": ["w"]}
    for k in (16, 64, 256):
        p = platforms.predict([rec], spec, n_clusters=k)
        compute = rec["flops"] / spec.flops_rate + 768 * 768 / spec.lookup_rate_for(k)
        assert p["time_s"] == pytest.approx(max(compute, p["bytes"] / spec.bandwidth))
    # one token on this CPU is compute-bound for every k: fewer bytes do not make it faster than fp32
    assert platforms.predict([rec], spec, n_clusters=64)["time_s"] > platforms.predict([rec], spec)["time_s"]


def test_cli_names_a_board_and_gets_its_cpu(monkeypatch, capsys, tiny, tiny_inputs):
    import wclust.sources.models as models

    ids, img = tiny_inputs
    monkeypatch.setattr(models, "load_source", lambda s: tiny)
    monkeypatch.setattr(models, "example_inputs", lambda m, b=1: {"ids": ids, "img": img})
    assert main(["estimate", "tiny", "--platform", "jetson-xavier", "-k", "16", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert list(res["platforms"]) == ["jetson-xavier", "jetson-xavier-cpu"]
    assert main(["estimate", "tiny", "--platform", "paper", "-k", "16", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)["platforms"]) == set(platforms.PAPER)


def _arm_mca():
    import importlib.util

    spec = importlib.util.spec_from_file_location("arm_mca", os.path.join(ROOT, "benchmarks", "arm_mca.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_arm_mca_cuts_loop_bodies_between_markers():
    asm = ("f:\n\tmov x0, 1\n#APP\n// 12 \"loops.c\" 1\n\t// LLVM-MCA-BEGIN a\n// 0 \"\" 2\n#NO_APP\n"
           "\tldr q0, [x1]\n\ttbl v0.16b, {v1.16b}, v0.16b\n#APP\n\t// LLVM-MCA-END a\n#NO_APP\n\tret\n")
    assert _arm_mca().regions(asm) == {"a": "\tldr q0, [x1]\n\ttbl v0.16b, {v1.16b}, v0.16b\n"}


def test_arm_mca_saved_result_renders_and_is_consistent():
    mod = _arm_mca()
    with open(os.path.join(ROOT, "benchmarks", "results", "arm_mca.json")) as f:
        saved = json.load(f)
    text = mod.markdown(saved)
    assert "| `f32_dense` |" in text and "jetson-xavier" in text
    for board, b in saved["boards"].items():
        for name, p in b["paths"].items():  # the token time is the larger of compute and DRAM
            assert p["token_ms"] == max(p["compute_ms"], p["dram_ms"]), (board, name)
            assert p["compute_ms"] == pytest.approx(
                b["weights"] / 16 * p["cycles_per_16"] / b["clock_hz"] / b["cores"] * 1e3, abs=1e-3)
