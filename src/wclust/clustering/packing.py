"""Pack / unpack 1..8-bit indices into bytes (little-endian bit order: index i starts at bit
``i * bits`` of the stream, low bits first). 8-bit is the identity, 4-bit puts the first index
in the low nibble."""
from __future__ import annotations

import math

import numpy as np


def packed_nbytes(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


def _check_bits(bits: int) -> None:
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
        raise ValueError(f"bits must be an int in 1..8, got {bits!r}")


def pack(indices: np.ndarray, bits: int) -> np.ndarray:
    """Flattened uint8 ``indices`` (each < 2**bits) -> packed uint8 stream."""
    _check_bits(bits)
    idx = np.ascontiguousarray(indices, dtype=np.uint8).reshape(-1)
    if idx.size and int(idx.max()) >> bits:
        raise ValueError(f"an index ({int(idx.max())}) does not fit in {bits} bits")
    if bits == 8:
        return idx.copy()
    if bits == 4:
        padded = np.zeros(idx.size + (idx.size & 1), np.uint8)
        padded[: idx.size] = idx
        return padded[0::2] | (padded[1::2] << 4)
    return _pack_groups(idx, bits)


def unpack(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of ``pack``: the first ``count`` indices as uint8."""
    _check_bits(bits)
    data = np.ascontiguousarray(packed, dtype=np.uint8).reshape(-1)
    need = packed_nbytes(count, bits)
    if data.size != need:
        raise ValueError(f"{count} indices at {bits} bits need {need} bytes, got {data.size}")
    if bits == 8:
        return data.copy()
    if bits == 4:
        out = np.empty(data.size * 2, np.uint8)
        out[0::2] = data & 0x0F
        out[1::2] = data >> 4
        return out[:count]
    return _unpack_groups(data, bits, count)


# Other widths go a group at a time: the shortest run of whole bytes that holds whole indices
# (4 indices of 6 bits in 3 bytes, 8 of 5 bits in 5 bytes), read as one little-endian 64-bit
# word, so each index is a shift and a mask (unpacking measured 6-8x faster than through a stream
# of one byte per bit, packing 1.0-1.5x).
_CHUNK = 1 << 18  # groups per step: bounds the 64-bit temporaries at a few MiB


def _group(bits: int) -> tuple[int, int]:
    """(indices, bytes) per group."""
    per = 8 // math.gcd(bits, 8)
    return per, per * bits // 8


def _pack_groups(idx: np.ndarray, bits: int) -> np.ndarray:
    per, nb = _group(bits)
    n = -(-idx.size // per)
    out = np.empty((n, nb), np.uint8)
    for a in range(0, n, _CHUNK):
        b = min(n, a + _CHUNK)
        part = np.zeros((b - a) * per, np.uint64)
        src = idx[a * per: b * per]
        part[: src.size] = src
        part = part.reshape(-1, per)
        word = np.zeros(b - a, np.uint64)
        for i in range(per):
            word |= part[:, i] << np.uint64(i * bits)
        out[a:b] = word.astype("<u8", copy=False).view(np.uint8).reshape(-1, 8)[:, :nb]
    return out.reshape(-1)[: packed_nbytes(idx.size, bits)]


def _unpack_groups(data: np.ndarray, bits: int, count: int) -> np.ndarray:
    per, nb = _group(bits)
    n = -(-count // per)
    out = np.empty((n, per), np.uint8)
    mask = np.uint64((1 << bits) - 1)
    for a in range(0, n, _CHUNK):
        b = min(n, a + _CHUNK)
        src = data[a * nb: b * nb]
        words = np.zeros((b - a, 8), np.uint8)
        if src.size == (b - a) * nb:
            words[:, :nb] = src.reshape(-1, nb)
        else:  # the stream's last group is cut short
            full = np.zeros((b - a) * nb, np.uint8)
            full[: src.size] = src
            words[:, :nb] = full.reshape(-1, nb)
        word = words.view("<u8").reshape(-1)
        for i in range(per):
            out[a:b, i] = (word >> np.uint64(i * bits)) & mask
    return out.reshape(-1)[:count]


def bits_for(n_clusters: int) -> int:
    """Narrowest index width for a codebook of n_clusters entries (at least 1)."""
    return max(1, math.ceil(math.log2(max(n_clusters, 2))))


def pack_rows_4bit(indices: np.ndarray) -> np.ndarray:
    """(rows, cols) indices < 16 -> (rows, ceil(cols/2)) bytes, low nibble first (the in-memory
    layout of 4-bit clustered weights)."""
    rows, cols = indices.shape
    padded = np.zeros((rows, cols + (cols & 1)), np.uint8)
    padded[:, :cols] = indices
    return padded[:, 0::2] | (padded[:, 1::2] << 4)


def unpack_rows_4bit(packed: np.ndarray, cols: int) -> np.ndarray:
    out = np.empty((packed.shape[0], packed.shape[1] * 2), np.uint8)
    out[:, 0::2] = packed & 0x0F
    out[:, 1::2] = packed >> 4
    return out[:, :cols]
