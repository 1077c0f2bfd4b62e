"""The huge-page arena of a model's clustered indices (wclust.clustering.arena)."""
import copy
import io
import os
import re

import pytest
import torch
from torch import nn

from wclust.clustering import arena
from wclust.clustering.compress import compress
from wclust.clustering.config import ClusterConfig
from wclust.clustering.io import load, save
from wclust.clustering.modules import clustered_modules

needs_arena = pytest.mark.skipif(not arena.enabled(), reason="no madvise(MADV_HUGEPAGE) here")


def _thp_mode() -> str | None:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return re.search(r"\[(\w+)\]", f.read()).group(1)
    except (OSError, AttributeError):
        return None


def _model(seed=0):
    g = torch.Generator().manual_seed(seed)
    m = nn.Sequential(nn.Linear(96, 160), nn.GELU(), nn.Linear(160, 72), nn.GELU(), nn.Linear(72, 40))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return m


def _storages(model):
    return {m.indices.untyped_storage().data_ptr() for m in clustered_modules(model).values()}


@needs_arena
@pytest.mark.parametrize("bits", [4, 8])
def test_consolidate_moves_indices_and_keeps_outputs(bits, monkeypatch):
    monkeypatch.setenv("WCLUST_NO_HUGEPAGES", "1")  # compress leaves the indices where they are
    model = compress(_model(), ClusterConfig(n_clusters=16 if bits == 4 else 64), progress=False)
    monkeypatch.delenv("WCLUST_NO_HUGEPAGES")
    mods = clustered_modules(model)
    assert len(_storages(model)) == len(mods) == 3
    before = {n: m.indices.clone() for n, m in mods.items()}
    x = torch.randn(5, 96, generator=torch.Generator().manual_seed(1))
    y0 = model(x)
    placed = arena.consolidate(model, min_bytes=0)
    assert placed == sum(t.numel() for t in before.values())
    assert len(_storages(model)) == 1
    storage = next(iter(mods.values())).indices.untyped_storage()
    assert storage.nbytes() < placed + 3 * arena.SLOT_ALIGN  # torch.save writes no padding page
    ptrs = sorted(m.indices.data_ptr() for m in mods.values())
    assert ptrs[0] % arena.HUGE_PAGE == 0 and all(p % arena.SLOT_ALIGN == 0 for p in ptrs)
    for n, m in mods.items():
        assert m.indices.dtype == torch.uint8 and m.indices.is_contiguous()
        assert torch.equal(m.indices, before[n])
    assert torch.equal(model(x), y0)  # bit for bit
    assert arena.consolidate(model, min_bytes=0) == 0  # already placed


@needs_arena
def test_tied_modules_keep_sharing_one_tensor():
    emb = nn.Embedding(200, 64)
    head = nn.Linear(64, 200, bias=False)
    head.weight = emb.weight
    model = nn.Sequential(emb, head)
    model = compress(model, ClusterConfig(n_clusters=16), progress=False)
    arena.consolidate(model, min_bytes=0)
    a, b = model[0], model[1]
    assert a.indices is b.indices
    assert a.indices.untyped_storage().data_ptr() == b.indices.untyped_storage().data_ptr()


@needs_arena
def test_copies_saves_and_files_after_consolidate(tmp_path):
    model = compress(_model(2), ClusterConfig(n_clusters=16), progress=False)
    x = torch.randn(3, 96, generator=torch.Generator().manual_seed(3))
    y = model(x)
    path = tmp_path / "m.wclust"
    save(model, path)
    ref = load(path, _model(9))
    assert torch.equal(ref(x), y)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    assert torch.equal(torch.load(buf, weights_only=False)(x), y)
    twin = copy.deepcopy(model)
    assert torch.equal(twin(x), y)
    assert arena.consolidate(twin, min_bytes=0) > 0  # a deep copy holds ordinary tensors again
    assert torch.equal(twin(x), y)
    path2 = tmp_path / "twin.wclust"
    save(twin, path2)
    assert path.read_bytes() == path2.read_bytes()


def test_switched_off_or_small_leaves_the_model(monkeypatch):
    model = compress(_model(4), ClusterConfig(n_clusters=16), progress=False)
    arena.consolidate(model, min_bytes=0)
    x = torch.randn(2, 96)
    y = model(x)
    twin = copy.deepcopy(model)
    ids = {n: id(m.indices) for n, m in clustered_modules(twin).items()}
    assert arena.consolidate(twin) == 0  # ~10 KB of indices: below one huge page
    monkeypatch.setenv("WCLUST_NO_HUGEPAGES", "1")
    assert not arena.enabled() and arena.hugepage_bytes(1 << 20) is None
    assert arena.consolidate(twin, min_bytes=0) == 0
    assert {n: id(m.indices) for n, m in clustered_modules(twin).items()} == ids
    assert torch.equal(twin(x), y)


@needs_arena
def test_place_keeps_every_dtype_bit_for_bit():
    g = torch.Generator().manual_seed(5)
    ts = [torch.randint(0, 256, (37, 11), dtype=torch.uint8, generator=g), torch.randn(13, generator=g),
          torch.randn(3, 5, generator=g).bfloat16(), torch.arange(7, dtype=torch.int64)]
    out = arena.place(ts)
    assert [o.dtype for o in out] == [t.dtype for t in ts] and [o.shape for o in out] == [t.shape for t in ts]
    for o, t in zip(out, ts):
        assert torch.equal(o.view(torch.uint8) if o.dtype != torch.uint8 else o,
                           t.view(torch.uint8) if t.dtype != torch.uint8 else t)
        assert o.data_ptr() % arena.SLOT_ALIGN == 0
    assert len({o.untyped_storage().data_ptr() for o in out}) == 1


@needs_arena
@pytest.mark.skipif(_thp_mode() not in ("always", "madvise"), reason="transparent huge pages are off here")
def test_arena_is_backed_by_huge_pages():
    t = arena.hugepage_bytes(4 * arena.HUGE_PAGE)
    t.fill_(1)  # first touch: the kernel backs the advised range with huge pages
    start, end = t.data_ptr(), t.data_ptr() + t.numel()
    with open(f"/proc/{os.getpid()}/smaps") as f:
        text = f.read()
    for block in re.split(r"\n(?=[0-9a-f]+-[0-9a-f]+ )", text):
        lo, hi = (int(v, 16) for v in block.split()[0].split("-"))
        if lo <= start < hi:
            kb = int(re.search(r"AnonHugePages:\s+(\d+) kB", block).group(1))
            assert kb >= 2048, f"the arena's mapping has {kb} kB in huge pages"
            assert end <= hi
            return
    pytest.fail("the arena's mapping is not in /proc/self/smaps")


@needs_arena
def test_consolidate_frees_each_old_tensor_before_copying_the_next(monkeypatch):
    import weakref

    monkeypatch.setenv("WCLUST_NO_HUGEPAGES", "1")
    model = compress(_model(6), ClusterConfig(n_clusters=64), progress=False)
    monkeypatch.delenv("WCLUST_NO_HUGEPAGES")
    refs = [weakref.ref(m.indices) for m in clustered_modules(model).values()]
    alive_at_copy = []
    copy_into = arena._copy_into

    def watched(a, offset, t):
        alive_at_copy.append([r() is not None for r in refs])
        return copy_into(a, offset, t)

    monkeypatch.setattr(arena, "_copy_into", watched)
    assert arena.consolidate(model, min_bytes=0) > 0
    # copying layer i, the layers before it no longer hold memory twice: the peak is the arena
    # plus one layer, not two copies of every index
    assert alive_at_copy == [[j >= i for j in range(len(refs))] for i in range(len(refs))]
    assert all(r() is None for r in refs)
