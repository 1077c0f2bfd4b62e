"""``ClusteredParts``: everything that defines one clustered weight, and ``fit_parts`` to make one."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .kmeans import KMeans1D
from .packing import bits_for


@dataclass
class ClusteredParts:
    """Everything that defines one clustered weight (what is fitted, saved and loaded)."""

    shape: tuple[int, ...]
    indices: np.ndarray          # uint8 (out, in), unpacked
    codebook: torch.Tensor       # (n_groups, K), the weight's dtype
    group_size: int
    bits: int
    scale: torch.Tensor | None = None          # (out,)
    outlier_index: torch.Tensor | None = None  # int64 flat positions, sorted
    outlier_value: torch.Tensor | None = None  # exact values at those positions


def fit_parts(weight: torch.Tensor, n_clusters: int, bits: int | None = None) -> ClusteredParts:
    """A per-tensor clustering of one weight (what ``from_module`` uses when given no parts)."""
    km = KMeans1D(n_clusters).fit(weight)
    idx = km.predict(weight).reshape(weight.shape[0], -1)
    cb = torch.from_numpy(km.codebook_).to(weight.dtype)[None, :]
    return ClusteredParts(tuple(weight.shape), idx, cb, weight.shape[0], bits or bits_for(n_clusters))
