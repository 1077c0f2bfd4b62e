import json
import re

import pytest

from wclust import report


def _sweep():
    fp32 = {"top1": 80.0, "top5": 99.0, "ci95": 1.0, "bytes": 1000, "n": 2000}
    rows = [{"scope": s, "k": k, "top1": t, "bytes": b, "sqnr_db": 20.0, "label": f"{s} k={k}"}
            for s, k, t, b in [("layer", 16, 70.0, 130), ("layer", 64, 79.7, 190), ("layer", 256, 80.1, 250),
                               ("model", 16, 75.0, 128), ("model", 64, 79.0, 188)]]
    return {"fp32": fp32, "rows": rows}


def test_recommend_smallest_within_drop():
    rows = report.tradeoff_rows(_sweep(), None, None)
    rec = report.recommend(rows, 0.5)
    assert (rec["scope"], rec["k"]) == ("layer", 64)  # model k=64 is smaller but drops 1.0 pt
    assert rec["drop"] == pytest.approx(0.3)
    assert report.recommend(rows, 0.0)["k"] == 256    # only the row that gained accuracy
    assert report.recommend([r for r in rows if r["drop"] > 1], 0.5) is None


def test_tradeoff_joins_speed_and_energy():
    bench = {"by_k": {"64": {"speedup_fp32": 1.2, "speedup_bf16": 2.5}}}
    est = {"platforms": {"jetson-tx2": {"k": {"64": {"energy_saving_pct": 20.0}, "16": {"energy_saving_pct": 30.0}}}}}
    rows = {(r["scope"], r["k"]): r for r in report.tradeoff_rows(_sweep(), bench, est)}
    assert rows[("layer", 64)]["speedup_fp32"] == 1.2 and "speedup_fp32" not in rows[("layer", 16)]
    assert rows[("model", 16)]["energy_saving_pct"] == {"jetson-tx2": 30.0}
    assert rows[("layer", 64)]["bytes_ratio"] == pytest.approx(1000 / 190)


def test_markdown_numbers_come_from_results(tmp_path):
    sw = _sweep()
    rows = report.tradeoff_rows(sw, None, None)
    res = {"model": {"source": "zoo:x", "class": "M", "params_total": 250, "bytes_fp32": 1000},
           "task": {"name": "digits"}, "sweep": sw, "tradeoff": rows, "recommendation": report.recommend(rows, 0.5),
           "max_drop": 0.5, "run": {"seconds": 3.0, "threads": 1}}
    md = report.render_markdown(res)
    assert "**layer k=64**" in md and "0.30 pt" in md
    for r in rows:
        assert f"| {r['scope']} | {r['k']} | {r['top1']:.2f} |" in md
    report.plot_tradeoff(rows, sw["fp32"], str(tmp_path / "t.png"))
    assert (tmp_path / "t.png").stat().st_size > 1000
