"""`wclust study` end to end on a tiny (random) DINOv2-shaped model and scikit-learn's digits."""
import json
import os
import re

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def tiny_dinov2(tmp_path_factory):
    d = tmp_path_factory.mktemp("tinydino")
    cfg = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                                    patch_size=14, image_size=28)
    import torch

    torch.manual_seed(0)
    transformers.Dinov2Model(cfg).save_pretrained(d)
    return f"hf:{d}"


def test_study_writes_report_json_and_figures(tiny_dinov2, tmp_path):
    from wclust.study import run_study

    out = tmp_path / "study"
    sizes = {"n_train": 200, "n_test": 150, "image_size": 28}
    res = run_study(tiny_dinov2, "digits", [16, 256], ["layer", "model"], max_drop=100.0, quick=True,
                    out_dir=str(out), progress=False, log=lambda s: None, sizes=sizes)
    for f in ["report.md", "results.json", *res["figures"]]:
        assert (out / f).is_file(), f
    assert len([f for f in os.listdir(out) if f.endswith(".png")]) >= 5
    saved = json.loads((out / "results.json").read_text())
    md = (out / "report.md").read_text()
    # every trade-off row of the report carries the numbers of results.json
    for r in saved["tradeoff"]:
        assert f"| {r['scope']} | {r['k']} | {r['top1']:.2f} | {r['drop']:.2f} |" in md
    assert saved["recommendation"] is not None and f"**{saved['recommendation']['label']}**" in md
    assert saved["sweep"]["fp32"]["top1"] > 20  # well above 10% chance on digits
    # a re-run resumes: the parts are reused (same results, much less work)
    res2 = run_study(tiny_dinov2, "digits", [16, 256], ["layer", "model"], max_drop=100.0, quick=True,
                     out_dir=str(out), progress=False, log=lambda s: None, sizes=sizes)
    assert res2["bench"] == saved["bench"] and res2["profile"]["time"] == saved["profile"]["time"]
    assert [r["top1"] for r in res2["tradeoff"]] == [r["top1"] for r in saved["tradeoff"]]
    # every timed run of one k is drawn: the recommended configuration's (quick: k=64 only is timed)
    assert "bench.png" in saved["figures"] and "![bench](bench.png)" in md
    assert saved["bench"]["figure_k"] == 64 and len(saved["bench"]["runs"]["64"]["latency"]["fp32"]["runs_ms"]) == 5
    assert f"Every timed run at k={saved['bench']['figure_k']}" in md
    assert f"indices in {saved['bench']['index_pages']} pages" in md  # where the kernels read them from
    assert saved["bench"]["runs"]["64"]["source"] == tiny_dinov2  # the figure's title names the study's source
    # a bench part cached by an earlier version (medians only) is reused as it is, without the figure
    part = out / "parts" / "bench.json"
    cached = json.loads(part.read_text())
    del cached["result"]["runs"]
    part.write_text(json.dumps(cached))
    (out / "bench.png").unlink()
    res3 = run_study(tiny_dinov2, "digits", [16, 256], ["layer", "model"], max_drop=100.0, quick=True,
                     out_dir=str(out), progress=False, log=lambda s: None, sizes=sizes)
    assert res3["bench"]["by_k"] == saved["bench"]["by_k"] and "bench.png" not in res3["figures"]
    assert not (out / "bench.png").exists() and "![bench]" not in (out / "report.md").read_text()
