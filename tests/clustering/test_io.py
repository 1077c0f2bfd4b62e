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


def test_save_into_a_missing_directory_names_it(tiny, tmp_path):
    wclust.compress(tiny, wclust.ClusterConfig(16), progress=False)
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as e:
        wclust.save(tiny, missing / "x.wclust")
    assert f"directory {missing} does not exist" in str(e.value) and ".tmp" not in str(e.value)
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is not a directory") as e:
        wclust.save(tiny, tmp_path / "file" / "x.wclust")
    assert ".tmp" not in str(e.value)
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(PermissionError, match="not writable"):
            wclust.save(tiny, ro / "x.wclust")


def test_save_refuses_non_finite_tensors(tiny, tmp_path):
    wclust.compress(tiny, wclust.ClusterConfig(16), progress=False)
    with torch.no_grad():
        tiny.norm.weight[3] = float("inf")
    with pytest.raises(ValueError, match="tensor norm.weight holds NaN or Inf"):
        wclust.save(tiny, tmp_path / "x.wclust")
    assert os.listdir(tmp_path) == []


def test_load_into_wrong_skeleton_is_refused(tiny, tmp_path):
    wclust.compress(tiny, wclust.ClusterConfig(16), progress=False)
    wclust.save(tiny, tmp_path / "x.wclust")
    from tests.conftest import TinyTransformer

    with pytest.raises(FormatError, match="shape"):
        wclust.load(tmp_path / "x.wclust", model=TinyTransformer(hidden=81))
    with pytest.raises(FormatError, match="does not describe its architecture"):
        wclust.load(tmp_path / "x.wclust")


# ---- determinism: same model + config -> the same bytes, in any process; no timings or paths ----

DET_CHILD = r"""
import sys, torch, wclust
from tests.clustering.test_io import _det_files
torch.set_num_threads(int(sys.argv[2]))
_det_files(sys.argv[1])
"""


def _det_files(d):
    import transformers

    from tests.conftest import TinyTransformer

    torch.manual_seed(0)
    m = wclust.compress(TinyTransformer(), wclust.ClusterConfig(16, scope="group", group_size=10, outliers=0.01,
                                                                channel_scale=True, min_size=64), progress=False)
    wclust.save(m, os.path.join(d, "tiny.wclust"))
    torch.manual_seed(0)
    bert = transformers.BertModel(transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1,
                                                          num_attention_heads=2, intermediate_size=48,
                                                          max_position_embeddings=32))
    bert.save_pretrained(os.path.join(d, "hf"))
    m = wclust.load_source("hf:" + os.path.join(d, "hf"))   # records the directory as _name_or_path
    wclust.compress(m, wclust.ClusterConfig(8, scope="model", min_size=256), progress=False)
    wclust.save(m, os.path.join(d, "bert.wclust"))


def test_same_bytes_across_processes_and_thread_counts(tmp_path):
    import subprocess
    import sys

    pytest.importorskip("transformers")
    from tests.conftest import ROOT as root
    dirs = [tmp_path / "a", tmp_path / "b"]
    # two processes started together (the same code even while the tree is being edited), 1 and 2 threads
    procs = []
    for d, threads in zip(dirs, ("1", "2")):
        d.mkdir()
        procs.append(subprocess.Popen([sys.executable, "-c", DET_CHILD, str(d), threads], cwd=root,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    here, there = dirs
    for name in ("tiny.wclust", "bert.wclust"):
        if (here / name).read_bytes() != (there / name).read_bytes():
            ha, hb = wclust.read_header(here / name), wclust.read_header(there / name)
            raise AssertionError(f"{name} differs; header fields: {[k for k in ha if ha[k] != hb.get(k)]}")
        _assert_no_timings_or_paths(wclust.read_header(here / name), str(tmp_path))
    assert wclust.read_header(here / "bert.wclust")["source"]["class"] == "BertModel"
    wclust.load(here / "bert.wclust")   # still rebuilds from the header alone


def _assert_no_timings_or_paths(obj, tmp: str, where="header"):
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert not any(w in k.lower() for w in ("second", "time", "path", "date")), f"{where}.{k}"
            _assert_no_timings_or_paths(v, tmp, f"{where}.{k}")
    elif isinstance(obj, list):
        for v in obj:
            _assert_no_timings_or_paths(v, tmp, where)
    elif isinstance(obj, str):
        assert tmp not in obj and not obj.startswith(("/", "~")) and os.sep + "tmp" not in obj, (where, obj)
