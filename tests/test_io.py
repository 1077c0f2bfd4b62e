import filecmp
import os

import pytest
import torch

import wclust
from wclust.errors import FormatError


def test_round_trip_bit_identical(tiny, tiny_inputs, tmp_path):
    wclust.compress(tiny, wclust.ClusterConfig(16, scope="group", group_size=10, outliers=0.002,
                                               channel_scale=True), progress=False)
    p = tmp_path / "t.wclust"
    wclust.save(tiny, p)
    from tests.conftest import TinyTransformer

    loaded = wclust.load(p, model=TinyTransformer())
    ids, img = tiny_inputs
    with torch.no_grad():
        assert torch.equal(tiny(ids, img), loaded(ids, img))
    assert loaded.head.indices is loaded.embed.indices
    p2 = tmp_path / "t2.wclust"
    wclust.save(loaded, p2)
    assert filecmp.cmp(p, p2, shallow=False)


@pytest.mark.parametrize("k,bits", [(16, None), (64, None), (64, 8), (256, None)])
def test_file_size_tracks_bits(tmp_path, k, bits):
    m = torch.nn.Sequential(torch.nn.Linear(256, 256, bias=False))
    wclust.compress(m, wclust.ClusterConfig(k, bits=bits), progress=False)
    p = tmp_path / "m.wclust"
    wclust.save(m, p)
    b = bits or {16: 4, 64: 6, 256: 8}[k]
    payload = 256 * 256 * b // 8
    assert payload <= os.path.getsize(p) <= payload + 4 * k + 2048
    h = wclust.read_header(p)
    assert h["format_version"] == 1 and h["modules"]["0"]["bits"] == b


def test_deterministic_files(tiny, tmp_path):
    import copy

    a, b = copy.deepcopy(tiny), copy.deepcopy(tiny)
    for m, name in ((a, "a"), (b, "b")):
        wclust.compress(m, wclust.ClusterConfig(32, scope="layer"), progress=False)
        wclust.save(m, tmp_path / f"{name}.wclust")
    assert filecmp.cmp(tmp_path / "a.wclust", tmp_path / "b.wclust", shallow=False)


def test_no_temp_files_left_and_plain_safetensors_refused(tiny, tmp_path):
    wclust.compress(tiny, wclust.ClusterConfig(16), progress=False)
    wclust.save(tiny, tmp_path / "x.wclust")
    assert os.listdir(tmp_path) == ["x.wclust"]
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(3)}, str(tmp_path / "plain.wclust"))
    with pytest.raises(FormatError, match="not a .wclust"):
        wclust.load(tmp_path / "plain.wclust", model=tiny)


def test_load_into_wrong_skeleton_is_refused(tiny, tmp_path):
    wclust.compress(tiny, wclust.ClusterConfig(16), progress=False)
    wclust.save(tiny, tmp_path / "x.wclust")
    from tests.conftest import TinyTransformer

    with pytest.raises(FormatError, match="shape"):
        wclust.load(tmp_path / "x.wclust", model=TinyTransformer(hidden=81))
    with pytest.raises(FormatError, match="does not describe its architecture"):
        wclust.load(tmp_path / "x.wclust")
