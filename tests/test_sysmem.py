"""Freed memory goes back to the OS after wclust.load and wclust.compress (wclust.sysmem)."""
import weakref

import torch
from torch import nn

from wclust import sysmem
from wclust.clustering import arena
from wclust.clustering import io as wio
from wclust.clustering import validate
from wclust.clustering.compress import compress
from wclust.clustering.config import ClusterConfig


def _model(seed=0):
    g = torch.Generator().manual_seed(seed)  # 3 MiB of 8-bit indices: enough for the arena
    m = nn.Sequential(nn.Linear(1024, 1536), nn.GELU(), nn.Linear(1536, 1024))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return m


def test_release_free_memory_answers_and_can_be_called_again():
    assert isinstance(sysmem.release_free_memory(), bool)
    assert isinstance(sysmem.release_free_memory(), bool)


def test_load_drops_the_file_and_the_unpacked_indices_before_giving_memory_back(tmp_path, monkeypatch):
    path = tmp_path / "m.wclust"
    wio.save(compress(_model(), ClusterConfig(n_clusters=64), progress=False), path)
    file_refs, part_refs, seen = [], [], {}
    read, parts = validate.read_file, wio._parts

    def read_file(p):
        header, tensors, entries = read(p)
        file_refs.extend(weakref.ref(t) for t in tensors.values())
        return header, tensors, entries

    def _parts(header, tensors):
        out = parts(header, tensors)
        part_refs.extend(weakref.ref(p.indices) for p in out.values())
        return out

    def release():
        seen["file"] = [r() is None for r in file_refs]
        seen["parts"] = [r() is None for r in part_refs]
        return False

    monkeypatch.setattr(validate, "read_file", read_file)
    monkeypatch.setattr(wio, "_parts", _parts)
    monkeypatch.setattr(wio, "release_free_memory", release)
    model = wio.load(path, _model(9))
    assert len(seen["file"]) >= 6 and all(seen["file"])  # every tensor read from the file is gone
    assert arena.placed(model) == arena.enabled()
    if arena.enabled():  # the indices moved to the arena: the unpacked arrays are gone too
        assert len(seen["parts"]) == 2 and all(seen["parts"])
