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
    planes = np.unpackbits(idx[:, None], axis=1, count=bits, bitorder="little")
    return np.packbits(planes.reshape(-1), bitorder="little")


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
    stream = np.unpackbits(data, count=count * bits, bitorder="little")
    return np.packbits(stream.reshape(count, bits), axis=1, bitorder="little").reshape(-1)


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
