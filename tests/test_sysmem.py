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


# In a fresh process: 128 MiB of 64 KiB blocks (heap, below glibc's mmap threshold) touched, then
# freed while one block allocated after them pins the top of the heap, so free() alone cannot shrink
# it. release_free_memory must then say True and the resident size fall by most of the 128 MiB.
_CHILD = r"""
import ctypes, ctypes.util, json, os
from wclust import sysmem
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
blocks = [libc.malloc(65536) for _ in range(2048)]
for b in blocks:
    ctypes.memset(b, 1, 65536)
pin = libc.malloc(65536)
ctypes.memset(pin, 1, 65536)
held = rss()
for b in blocks:
    libc.free(b)
freed = rss()
released = sysmem.release_free_memory()
print(json.dumps({"held": held, "freed": freed, "after": rss(), "released": released}))
"""


def test_release_free_memory_gives_a_freed_heap_back_and_says_so():
    import json
    import os
    import subprocess
    import sys

    import pytest

    if sysmem._trim() is None:
        pytest.skip("no malloc_trim in this C library")
    root = os.path.dirname(os.path.dirname(os.path.abspath(sysmem.__file__)))
    r = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=root, MALLOC_TRIM_THRESHOLD_="134217728"))
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    mib = 2**20
    assert m["freed"] > m["held"] - 32 * mib          # free() kept the pages (the top was pinned)
    assert m["released"] is True
    assert m["after"] < m["freed"] - 96 * mib         # most of the 128 MiB went back to the OS


def test_release_free_memory_is_false_without_malloc_trim(monkeypatch):
    import ctypes.util

    sysmem._trim.cache_clear()
    try:
        monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)    # no C library found
        assert sysmem._trim() is None and sysmem.release_free_memory() is False
        sysmem._trim.cache_clear()
        monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libc.so.6")
        monkeypatch.setattr(sysmem.ctypes, "CDLL", lambda name: object())      # one without malloc_trim
        assert sysmem._trim() is None and sysmem.release_free_memory() is False
        sysmem._trim.cache_clear()

        def missing(name):
            raise OSError("cannot load")
        monkeypatch.setattr(sysmem.ctypes, "CDLL", missing)
        assert sysmem.release_free_memory() is False
    finally:
        monkeypatch.undo()
        sysmem._trim.cache_clear()
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
