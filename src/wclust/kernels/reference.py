"""Reference (pure torch) implementation: the ground truth every fast kernel is tested against.

Layout of a clustered weight viewed as 2-D (out_features, in_features):
  indices: uint8 (out, in) when index_bits == 8, or (out, ceil(in / 2)) when index_bits == 4
           (two indices per byte, low nibble first, each row padded to whole bytes);
  codebook: (n_groups, K); row r uses codebook[r // group_size].
"""
from __future__ import annotations

import torch

TILE_ROWS = 512


def unpack_rows(indices: torch.Tensor, in_features: int, index_bits: int) -> torch.Tensor:
    if index_bits == 8:
        return indices
    if index_bits != 4:
        raise ValueError(f"in-memory index layout must be 8 or 4 bits, got {index_bits}")
    lo = indices & 0x0F
    hi = indices >> 4
    return torch.stack([lo, hi], dim=-1).reshape(indices.shape[0], -1)[:, :in_features]


def dequantize(indices: torch.Tensor, codebook: torch.Tensor, in_features: int, group_size: int,
               index_bits: int, rows: slice | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Float weight (rows of it, if ``rows`` is a slice) from indices + codebook."""
    start = 0 if rows is None else (rows.start or 0)
    idx = indices if rows is None else indices[rows]
    idx = unpack_rows(idx, in_features, index_bits).long()
    cb = codebook if dtype is None else codebook.to(dtype)
    n_groups, k = cb.shape
    if n_groups == 1:
        return cb[0][idx]
    g = torch.arange(start, start + idx.shape[0], device=idx.device) // group_size
    return cb.reshape(-1)[idx + (g * k)[:, None]]


def lut_linear(x: torch.Tensor, indices: torch.Tensor, codebook: torch.Tensor, bias: torch.Tensor | None,
               in_features: int, group_size: int, index_bits: int) -> torch.Tensor:
    """y = x @ W^T + bias with W dequantized TILE_ROWS output rows at a time (bounded memory)."""
    out_features = indices.shape[0]
    y = x.new_empty(*x.shape[:-1], out_features)
    for r0 in range(0, out_features, TILE_ROWS):
        r1 = min(r0 + TILE_ROWS, out_features)
        w = dequantize(indices, codebook, in_features, group_size, index_bits, slice(r0, r1), x.dtype)
        y[..., r0:r1] = torch.nn.functional.linear(x, w, None if bias is None else bias[r0:r1].to(x.dtype))
    return y
