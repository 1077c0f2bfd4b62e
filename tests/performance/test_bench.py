"""wclust bench: structure of the result (no timing thresholds), memory subprocess, CLI."""
import json

import pytest
import torch
from torch import nn

from wclust.performance import bench


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 96), nn.GELU(), nn.Linear(96, 64))


def test_run_bench_structure_with_pressure():
    res = bench.run_bench(tiny(), k=16, repeats=2, quick=True, pressure=1, memory=False,
                          inputs={"input": torch.randn(3, 64)})
    assert set(res["latency"]) == set(bench.VARIANTS) | set(bench.BF16_MODEL_VARIANTS)
    for name in bench.VARIANTS:
        lat = res["latency"][name]
        assert lat["runs"] == 2 and lat["median_ms"] > 0 and lat["speedup_vs_fp32"] > 0
        assert res["pressure"]["latency"][name]["median_ms"] > 0
    assert res["latency"]["fp32"]["speedup_vs_fp32"] == 1.0 == res["latency"]["fp32"]["speedup_paired"]
    base = res["latency"]["fp32"]["runs_ms"]
    for lat in res["latency"].values():   # the paired speed-up: median of the per-round ratios
        assert len(lat["runs_ms"]) == 2 and min(lat["runs_ms"]) == pytest.approx(lat["min_ms"], rel=1e-5)
        ratios = [b / t for b, t in zip(base, lat["runs_ms"])]   # runs_ms keep 6 significant digits
        assert min(ratios) * (1 - 1e-4) <= lat["speedup_paired"] <= max(ratios) * (1 + 1e-4)
        assert lat["speedup_min"] == pytest.approx(res["latency"]["fp32"]["min_ms"] / lat["min_ms"])
    mem = res["memory"]
    assert mem["clustered_fp32"]["param_mb"] < mem["fp32"]["param_mb"]
    assert mem["int8_dynamic"]["param_mb"] < mem["fp32"]["param_mb"]
    assert res["threads"] == 1 and res["kernel_isa"]
    assert res["index_pages"] == "ordinary"  # ~10 KB of indices: below one huge page, left in place
    json.dumps(res)


def test_run_bench_names_where_the_indices_are():
    from wclust.clustering import arena

    big = torch.nn.Sequential(torch.nn.Linear(1024, 1536), torch.nn.ReLU(), torch.nn.Linear(1536, 1024))
    res = bench.run_bench(big, k=64, repeats=1, quick=True, memory=False, bf16_models=False,
                          inputs={"input": torch.randn(2, 1024)})
    assert res["index_pages"] == ("huge" if arena.enabled() else "ordinary")  # 3 MiB of 8-bit indices


def test_measure_memory_in_subprocess():
    m = nn.Sequential(nn.Linear(512, 2048))
    mem = bench.measure_memory(m)
    assert "error" not in mem, mem
    assert mem["file_mb"] > 3.5 and mem["rss_mb"] > 2.0  # the 4 MiB weight is resident


def test_variants_compute_the_same_function():
    model = tiny()
    variants = bench.build_variants(model, k=64, bf16_models=True)
    x = torch.randn(5, 64)
    with torch.inference_mode():
        want = model(x)
        for name, (m, cdt, idt) in variants.items():
            if cdt is not None:
                bench.set_linear_compute_dtype(m, None if cdt == torch.float32 else cdt)
            y = m(x if idt is None else x.to(idt)).float()
            rel = ((y - want).norm() / want.norm()).item()
            assert rel < 0.1, (name, rel)


def test_pressure_workers_stop():
    with bench.Pressure(1, mb=8) as p:
        assert all(proc.is_alive() for proc in p.procs)
    assert not any(proc.is_alive() for proc in p.procs)


@pytest.mark.slow
def test_cli_bench_vit(capsys):
    from wclust.cli import main

    assert main(["bench", "arch:vit-b16", "-k", "64", "--quick", "--no-memory", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["latency"]["clustered_bf16"]["median_ms"] > 0


def test_cli_bench_args(capsys):
    from wclust.cli import main

    assert main(["bench", "zoo:nope", "--threads", "0"]) == 2
    assert "threads" in capsys.readouterr().err


def test_wclust_file_runs_as_stored_against_its_dense_twin(tmp_path, capsys):
    import warnings

    import wclust
    from wclust.cli import main

    model = wclust.compress(tiny(), wclust.ClusterConfig(n_clusters=16, scope="layer"), progress=False)
    path = str(tmp_path / "t.wclust")
    wclust.save(model, path)
    loaded = wclust.load(path, model=tiny())  # a plain Sequential: the header cannot rebuild it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second clustering ("no layer matched")
        variants = bench.build_variants(loaded, k=64, bf16_models=False)
    assert variants["clustered_fp32"][0] is loaded
    dense = variants["fp32"][0]
    from wclust.clustering.modules import clustered_modules

    assert not clustered_modules(dense) and all(p.dtype == torch.float32 for p in dense.parameters())
    x = torch.randn(5, 64)
    with torch.inference_mode():
        torch.testing.assert_close(dense(x), loaded(x), rtol=1e-4, atol=1e-5)  # the same weights
    res = bench.run_bench(loaded, k=64, repeats=1, quick=True, memory=False, bf16_models=False,
                          inputs={"input": torch.randn(3, 64)})
    assert res["stored"] and (res["n_clusters"], res["scope"]) == (16, "layer")
    assert main(["bench", path, "-k", "32"]) == 2
    assert "as stored" in capsys.readouterr().err


def test_time_rounds_advances_the_progress_bar_once_per_run():
    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    work = lambda: sum(range(1000))  # noqa: E731  (a run that takes measurable time)
    out = bench.time_rounds({"fp32": work, "other": work}, repeats=3, warmup=2, bar=bar)
    assert bar.n == 2 * (3 + 2) and out["other"]["runs"] == 3


def test_round_order_is_a_reproducible_shuffle_that_moves_neighbours():
    names = ["fp32", "int8", "a", "b", "c", "d"]
    orders = [bench.round_order(names, r) for r in range(30)]
    assert all(sorted(o) == sorted(names) for o in orders)
    assert orders == [bench.round_order(names, r) for r in range(30)]      # seeded
    before_fp32 = {o[o.index("fp32") - 1] for o in orders if o.index("fp32") > 0}
    assert len(before_fp32) >= 4  # not always behind the same candidate (a rotation would be)


class _TinyText(nn.Module):
    """A text model as example_inputs knows them (config.vocab_size): embedding, two Linear layers."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.config = type("Config", (), {"vocab_size": 30000})()
        self.emb = nn.Embedding(30000, 64)
        self.body = tiny()
        self.seen = set()

    def forward(self, input_ids, attention_mask):
        self.seen.add(tuple(input_ids.shape))
        return self.body(self.emb(input_ids) * attention_mask[..., None])


def test_seq_len_sets_the_tokens_of_a_text_model_and_is_refused_elsewhere():
    from wclust.errors import WclustError

    m = _TinyText()
    res = bench.run_bench(m, k=16, repeats=1, quick=True, memory=False, bf16_models=False, seq_len=3)
    assert res["seq_len"] == 3 and m.seen == {(1, 3)}
    assert bench.run_bench(_TinyText(), k=16, repeats=1, quick=True, memory=False, bf16_models=False)["seq_len"] == 128
    vision = tiny()
    vision.pretrained_cfg = {"input_size": (3, 8, 8)}  # a timm model's: example_inputs gives an image
    with pytest.raises(WclustError, match="text models"):
        bench.run_bench(vision, k=16, repeats=1, quick=True, memory=False, seq_len=3)


@pytest.mark.parametrize("runs, noisy", [([100.0, 110.0, 104.0], False), ([100.0, 140.0, 104.0], True)])
def test_cli_table_warns_when_the_fp32_runs_spread(monkeypatch, capsys, runs, noisy):
    from wclust.cli import main

    def fake(*args, **kwargs):
        lat = {"median_ms": 104.0, "min_ms": min(runs), "runs_ms": runs, "speedup_vs_fp32": 1.0,
               "speedup_paired": 1.0, "speedup_min": 1.0}
        return {"source": "x", "n_clusters": 64, "scope": "layer", "threads": 1, "repeats": 3, "kernel_isa": "c",
                "bf16_kernel": "amx-bf16", "clock": "thread", "seq_len": None, "latency": {"fp32": lat},
                "memory": {"fp32": {"param_mb": 1.0}}}

    monkeypatch.setattr(bench, "run_bench", fake)
    assert main(["bench", "zoo:minilm"]) == 0
    out = capsys.readouterr().out
    assert ("note: the fp32 runs ranged 100.0-140.0 ms" in out) == noisy and "minima" in out


@pytest.mark.parametrize("has_bf16", [True, False])
def test_cli_leaves_out_emulated_bf16_unless_asked(monkeypatch, capsys, has_bf16):
    from wclust.cli import main
    from wclust.kernels import machine

    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs)
        lat = {"median_ms": 1.0, "min_ms": 1.0, "runs_ms": [1.0], "speedup_vs_fp32": 1.0, "speedup_paired": 1.0,
               "speedup_min": 1.0}
        return {"source": "x", "n_clusters": 64, "scope": "layer", "threads": 1, "repeats": 1, "kernel_isa": "c",
                "bf16_kernel": "x", "clock": "thread", "seq_len": None, "latency": {"fp32": lat},
                "memory": {"fp32": {"param_mb": 1.0}}}

    monkeypatch.setattr(bench, "run_bench", fake)
    monkeypatch.setattr(machine, "has_bf16", lambda: has_bf16)
    assert main(["bench", "zoo:minilm"]) == 0
    err = capsys.readouterr().err
    if has_bf16:
        assert seen["variants"] is None and seen["bf16_models"] and "no bf16" not in err
    else:
        assert "clustered_bf16" not in seen["variants"] and "clustered_int8" in seen["variants"]
        assert not seen["bf16_models"] and "no bf16 instructions" in err
    seen.clear()
    assert main(["bench", "zoo:minilm", "--variants", "clustered_bf16"]) == 0  # asked: always timed
    assert seen["variants"] == ["clustered_bf16"]


def test_plot_bench_draws_every_run_each_median_and_speed_up(monkeypatch, tmp_path):
    from matplotlib.collections import LineCollection, PathCollection

    from wclust import figures

    res = bench.run_bench(tiny(), k=16, repeats=3, quick=True, pressure=1, memory=False,
                          inputs={"input": torch.randn(3, 64)})
    drawn = {}

    def keep(fig, path, **kw):
        drawn["fig"] = fig
        return path

    monkeypatch.setattr(figures, "save", keep)
    assert bench.plot_bench(res, str(tmp_path / "b.png")) == str(tmp_path / "b.png")
    runs_ax, mem_ax = drawn["fig"].axes[:2]
    dots = sorted(float(y) for c in runs_ax.collections if isinstance(c, PathCollection) for _, y in c.get_offsets())
    want = sorted(t for d in (res["latency"], res["pressure"]["latency"]) for v in d.values() for t in v["runs_ms"])
    assert len(dots) == 2 * len(res["latency"]) * 3 and dots == pytest.approx(want)  # every run, both settings
    medians = sorted(float(seg[0][1]) for c in runs_ax.collections if isinstance(c, LineCollection)
                     for seg in c.get_segments())
    want = sorted(d[v]["median_ms"] for d in (res["latency"], res["pressure"]["latency"]) for v in d)
    assert medians == pytest.approx(want)
    labels = {t.get_text() for t in runs_ax.texts}
    for d in (res["latency"], res["pressure"]["latency"]):
        for v in d.values():
            assert f"{v['speedup_vs_fp32']:.2f}x\n({v['speedup_paired']:.2f}x)" in labels
    assert [p.get_height() for p in mem_ax.patches] == pytest.approx([res["memory"][v]["param_mb"] for v in res["latency"]])
    assert "indices in ordinary pages" in drawn["fig"]._suptitle.get_text()


def test_cli_bench_writes_json_and_figure(monkeypatch, tmp_path, capsys):
    from wclust.cli import main

    res = bench.run_bench(tiny(), k=16, repeats=2, quick=True, memory=True, bf16_models=False,
                          inputs={"input": torch.randn(3, 64)})
    calls = []
    monkeypatch.setattr(bench, "run_bench", lambda *a, **kw: calls.append(a) or res)
    out = tmp_path / "out"
    assert main(["bench", "zoo:minilm", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "bench.png"]
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "bench.json").read_text())
    assert saved["latency"]["clustered_fp32"]["runs_ms"] == res["latency"]["clustered_fp32"]["runs_ms"]
    assert saved["files"] == [str(out / "bench.png")]
    assert f"wrote {out / 'bench.png'}" in capsys.readouterr().out
    # an output directory that cannot be made is refused before minutes of timing
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["bench", "zoo:minilm", "-o", str(blocker / "sub")]) == 2
    assert len(calls) == 1 and "output directory" in capsys.readouterr().err
