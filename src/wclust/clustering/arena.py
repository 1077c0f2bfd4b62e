"""One huge-page arena for a model's clustered indices.

At one token the LUT kernels stream every layer's indices once per forward pass, and the 4-bit
GEMV is fast enough for the page size to show: with the indices in 2 MiB transparent huge pages
instead of 4 KiB pages, the 4-bit ClusteredLinear modules ran one ViT-B block 1.17-1.30x faster
(`python benchmarks/kernels.py --threads 1 --m 1 --model-pass --page-twins`, both placements
timed side by side in 2 runs; 1.01-1.12x over the 48 matrices right after another model's pass,
k=64 8-bit 0.96-1.16x). The likely cause is the TLB: the software prefetches run
several rows ahead of the kernel and cross a 4 KiB page every few rows.

``consolidate(model)`` copies the indices of every clustered module into one private anonymous
mapping advised with ``MADV_HUGEPAGE`` (64-byte aligned slots, the layers in module order) and
makes each module's ``indices`` buffer a view of it; tied modules keep sharing one tensor. It
needs Linux's ``madvise``; elsewhere, for CUDA tensors, below one huge page of indices, or with
``WCLUST_NO_HUGEPAGES=1`` it leaves the model as it is. The mapping adds at most one huge page
of resident memory (the rest of the last page). It copies one tensor at a time and lets go of
each old one before the next, so the indices are never all held twice. ``torch.save`` and
``copy.deepcopy`` write and make ordinary tensors.
"""
from __future__ import annotations

import mmap
import os

import torch

HUGE_PAGE = 2 << 20
SLOT_ALIGN = 64


def enabled() -> bool:
    """Huge-page placement is available here and not switched off (``WCLUST_NO_HUGEPAGES=1``)."""
    return (os.environ.get("WCLUST_NO_HUGEPAGES", "") in ("", "0") and hasattr(mmap, "MADV_HUGEPAGE")
            and hasattr(mmap, "MAP_ANONYMOUS") and hasattr(mmap, "MAP_PRIVATE"))


def hugepage_bytes(nbytes: int) -> torch.Tensor | None:
    """A uint8 tensor of ``nbytes`` starting on a huge-page boundary of a private anonymous
    mapping advised for transparent huge pages; None where that is not available. The tensor
    keeps the mapping alive."""
    if not enabled() or nbytes <= 0:
        return None
    try:
        mm = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        mm.madvise(mmap.MADV_HUGEPAGE)
    except (OSError, ValueError):  # no THP in this kernel, or no memory: ordinary tensors stay
        return None
    start = (-torch.frombuffer(mm, dtype=torch.uint8, count=1).data_ptr()) % HUGE_PAGE
    # a storage of exactly the arena (what torch.save writes), holding the mapping alive
    return torch.frombuffer(mm, dtype=torch.uint8, count=nbytes, offset=start)


def _layout(tensors: list[torch.Tensor]) -> tuple[list[int], int]:
    """(offset of each tensor in the arena, the arena's size): in order, 64-byte aligned slots."""
    offsets, total = [], 0
    for t in tensors:
        offsets.append(total)
        total += -(-t.numel() * t.element_size() // SLOT_ALIGN) * SLOT_ALIGN
    return offsets, total


def _copy_into(arena: torch.Tensor, offset: int, t: torch.Tensor) -> torch.Tensor:
    """t copied into the arena at ``offset``: a view of the arena with t's dtype and shape."""
    v = arena[offset:offset + t.numel() * t.element_size()].view(t.dtype).view(t.shape)
    v.copy_(t)
    return v


def place(tensors: list[torch.Tensor]) -> list[torch.Tensor] | None:
    """Copies of contiguous CPU ``tensors`` (any dtype) side by side in one huge-page arena, in
    order, each slot 64-byte aligned; None where the arena is not available."""
    offsets, total = _layout(tensors)
    arena = hugepage_bytes(total)
    if arena is None:
        return None
    return [_copy_into(arena, o, t) for t, o in zip(tensors, offsets)]


def _in_arena(module) -> bool:
    return getattr(module, "_arena_ptr", None) == module.indices.data_ptr()


def placed(model: torch.nn.Module) -> bool:
    """Every clustered module of ``model`` has its indices in an arena (False with none)."""
    from .modules import clustered_modules

    mods = list(clustered_modules(model).values())
    return bool(mods) and all(_in_arena(m) for m in mods)


def consolidate(model: torch.nn.Module, min_bytes: int = HUGE_PAGE) -> int:
    """Move the indices of ``model``'s clustered modules into one huge-page arena (see the module
    docstring); returns the bytes placed, 0 where nothing was moved (already placed, not
    available, CUDA, or less than ``min_bytes`` of indices)."""
    from .modules import clustered_modules

    mods = [m for m in clustered_modules(model).values()
            if m.indices.device.type == "cpu" and m.indices.is_contiguous()]
    if all(_in_arena(m) for m in mods):
        return 0
    groups: dict[int, tuple[torch.Tensor, list]] = {}  # each tensor once, with the modules holding it
    for m in mods:
        groups.setdefault(id(m.indices), (m.indices, []))[1].append(m)
    entries = list(groups.values())
    del groups
    nbytes = sum(t.numel() for t, _ in entries)
    if nbytes < min_bytes:
        return 0
    offsets, total = _layout([t for t, _ in entries])
    arena = hugepage_bytes(total)
    if arena is None:
        return 0
    # one tensor at a time, each old one freed once copied: the peak is the arena plus one layer,
    # not twice the model's indices
    for i, o in enumerate(offsets):
        t, holders = entries[i]
        entries[i] = None
        v = _copy_into(arena, o, t)
        del t
        for m in holders:
            m._buffers["indices"] = v
            m._arena_ptr = v.data_ptr()
    return nbytes
