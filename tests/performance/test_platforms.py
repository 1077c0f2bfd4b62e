import json
import math

import pytest
import torch

import wclust
from wclust.performance import platforms
from wclust.cli import main
from wclust.performance.profile import trace_ops


def _spec(**kw):
    base = dict(name="toy", description="toy", flops_rate=1e9, bandwidth=1e9, dram_j_per_byte=1e-10,
                j_per_flop=1e-11, process_nm=45, static_w=1.0, lookup_rate=1e9, lookup_tile=None)
    base.update(kw)
    return platforms.PlatformSpec(**base)


def _rec(flops, weight_bytes, act_bytes, cn=0, group="matmul"):
    return {"op": "aten::mm", "group": group, "flops": flops, "weight_bytes": weight_bytes, "act_bytes": act_bytes,
            "clusterable_numel": cn, "n_clusterable": 1 if cn else 0, "weights": ["w"] if cn else []}


def test_registry_numbers_have_sources():
    for name in platforms.PAPER:
        spec = platforms.get(name)
        d = spec.to_dict()
        for key in ("flops_rate", "bandwidth", "dram_j_per_byte", "j_per_flop", "static_w", "sram"):
            assert d["sources"].get(key), (name, key)
        assert spec.flops_rate > 0 and spec.bandwidth > 0 and spec.static_w > 0
    assert platforms.get("desktop-2080ti").bandwidth == pytest.approx(616e9)
    assert platforms.get("jetson-tx2").bandwidth == pytest.approx(59.7e9)
    assert platforms.get("desktop-2080ti").flops_rate == pytest.approx(2 * 4352 * 1.545e9)
    with pytest.raises(ValueError):
        platforms.get("nope")


def test_sram_energy_grows_with_table():
    s = platforms.get("jetson-tx2")
    e = [s.sram_j_per_access(b) for b in (64, 256, 1024)]
    assert e[0] < e[1] < e[2] and e[2] == pytest.approx(2 * e[1])


def test_roofline_memory_vs_compute_bound():
    spec = _spec()
    mem = platforms.predict([_rec(flops=10, weight_bytes=1000, act_bytes=0)], spec)
    assert mem["time_s"] == pytest.approx(1000 / 1e9) and mem["memory_bound_share"] == 1.0
    comp = platforms.predict([_rec(flops=10_000, weight_bytes=100, act_bytes=0)], spec)
    assert comp["time_s"] == pytest.approx(10_000 / 1e9) and comp["memory_bound_share"] == 0.0
    half = platforms.predict([_rec(flops=10, weight_bytes=1000, act_bytes=0)], spec, contention=0.5)
    assert half["time_s"] == pytest.approx(2 * mem["time_s"])


def test_activation_dram_share():
    recs = [_rec(flops=10, weight_bytes=1000, act_bytes=500)]
    assert platforms.predict(recs, _spec(), activation_dram=0.0)["bytes"] == 1000
    assert platforms.predict(recs, _spec(), activation_dram=0.5)["bytes"] == 1250
    with pytest.raises(ValueError):
        platforms.predict(recs, _spec(), activation_dram=2.0)


def test_energy_components_add_up():
    spec = _spec()
    recs = [_rec(flops=4096, weight_bytes=4 * 1024, act_bytes=512, cn=1024)]
    for k in (None, 16):
        p = platforms.predict(recs, spec, n_clusters=k)
        e = p["energy"]
        assert p["energy_j"] == pytest.approx(sum(e.values()))
        assert e["dram"] == pytest.approx(spec.dram_j_per_byte * p["bytes"])
        assert e["compute"] == pytest.approx(spec.j_per_flop * p["flops"])
        assert e["static"] == pytest.approx(spec.static_w * p["time_s"])
        assert e["codebook_sram"] == pytest.approx(spec.sram_j_per_access(4 * 16) * p["lookups"] if k else 0.0)


def test_fewer_clusters_fewer_bytes():
    recs = [_rec(flops=2 * 1024, weight_bytes=4 * 1024, act_bytes=100, cn=1024)]
    spec = _spec()
    b = {k: platforms.predict(recs, spec, n_clusters=k)["bytes"] for k in (None, 256, 64, 16)}
    assert b[None] > b[256] > b[64] > b[16]
    # hand-computed: 1024 weights at 4 bits + a 16-entry fp32 codebook + activations
    assert b[16] == 1024 * 4 // 8 + 16 * 4 + 100
    assert platforms.predict(recs, spec, n_clusters=16, bits=8)["bytes"] == 1024 + 16 * 4 + 100


def test_lookup_tile_and_overhead():
    recs = [_rec(flops=2 * 1024 * 200, weight_bytes=4 * 1024, act_bytes=0, cn=1024)]  # each weight used 200x
    once = platforms.predict(recs, _spec(), n_clusters=64)
    tiled = platforms.predict(recs, _spec(lookup_tile=64), n_clusters=64)
    assert once["lookups"] == 1024 and tiled["lookups"] == 1024 * math.ceil(200 / 64)
    slow = platforms.predict(recs, _spec(lookup_rate=1e6), n_clusters=64)
    assert slow["time_s"] > once["time_s"]


def test_ideal_is_bytes_ratio(tiny, tiny_inputs):
    ids, img = tiny_inputs
    recs = trace_ops(tiny, {"ids": ids, "img": img})
    res = platforms.estimate(tiny, platforms=list(platforms.PAPER), ks=[16, 256], records=recs)
    for name, d in res["platforms"].items():
        for k, p in d["k"].items():
            assert p["speedup_ideal"] == pytest.approx(d["fp32"]["bytes"] / p["bytes"])
            assert p["energy_rel"] == pytest.approx(p["energy_j"] / d["fp32"]["energy_j"])
        assert d["k"]["16"]["bytes"] < d["k"]["256"]["bytes"] < d["fp32"]["bytes"]
    json.dumps(res)


def test_estimate_clustered_model_and_plot(tiny, tiny_inputs, tmp_path, monkeypatch):
    import wclust.sources.models as models

    ids, img = tiny_inputs
    monkeypatch.setattr(models, "example_inputs", lambda m, b=1: {"ids": ids, "img": img})
    want = tiny(ids, img)
    wclust.compress(tiny, wclust.ClusterConfig(n_clusters=16, min_size=1))
    flt = wclust.clustering.modules.dense_view(tiny, torch.float32)
    assert not any(isinstance(m, wclust.clustering.modules.ClusteredModule) for m in flt.modules())
    torch.testing.assert_close(flt(ids, img), tiny(ids, img))
    assert want.shape == flt(ids, img).shape
    res = platforms.estimate(tiny, platforms=["jetson-tx2"], ks=[16])
    assert res["platforms"]["jetson-tx2"]["k"]["16"]["bytes"] < res["platforms"]["jetson-tx2"]["fp32"]["bytes"]
    path = platforms.plot_estimate(res, str(tmp_path / "e.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_host_calibration_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("WCLUST_CACHE", str(tmp_path))
    monkeypatch.setattr(platforms, "_HOST", {})
    calls = []
    fake = {"bandwidth": 1e10, "flops_rate": 1e11, "op_overhead_s": 1e-6, "lookup_rate": 1e8, "threads": 1}
    monkeypatch.setattr(platforms, "measure_host", lambda t=None: calls.append(t) or dict(fake))
    a = platforms.get("host")
    assert len(calls) == 1 and (tmp_path / "host_calibration.json").is_file()
    assert a.sources["bandwidth"].startswith("measured")
    # each new process measures again, keeping the best numbers, until HOST_MEASUREMENTS are cached
    for i in range(2, platforms.HOST_MEASUREMENTS + 3):
        monkeypatch.setattr(platforms, "_HOST", {})
        fake["bandwidth"] = 1e10 * (2 if i == 2 else 0.5)   # one better measurement, then worse ones
        b = platforms.calibrate_host()
        assert len(calls) == min(i, platforms.HOST_MEASUREMENTS) and b.bandwidth == 2e10
    assert f"best of {platforms.HOST_MEASUREMENTS}" in b.sources["calibration"]


def test_cli_estimate(monkeypatch, tmp_path, capsys, tiny, tiny_inputs):
    import wclust.sources.models as models

    ids, img = tiny_inputs
    monkeypatch.setattr(models, "load_source", lambda s: tiny)
    monkeypatch.setattr(models, "example_inputs", lambda m, b=1: {"ids": ids, "img": img})
    out = tmp_path / "est"
    assert main(["estimate", "tiny", "--platform", "paper", "-k", "16", "64", "--contention", "0.5",
                 "--json", "-o", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["platforms"]) == set(platforms.PAPER) and res["ks"] == [16, 64]
    assert (out / "estimate.png").is_file() and (out / "estimate.json").is_file()
    assert main(["estimate", "tiny", "--platform", "jetson-tx2", "-k", "64"]) == 0
    assert "jetson-tx2" in capsys.readouterr().out
    assert main(["estimate", "tiny", "--contention", "1.5"]) == 2
    assert main(["estimate", "tiny", "-k", "1000"]) == 2
