"""Exact weighted 1-D k-means (dynamic programming on a histogram) and fast assignment.

``KMeans1D(n_clusters).fit(values, sample_weight)`` follows scikit-learn's shape: it returns
self, with ``codebook_`` (sorted float32 centroids) and ``inertia_`` (weighted SSE of the
original values against that codebook). The histogram keeps exact moments per bin, so the
dynamic program's optimum is the optimal SSE over partitions into runs of bins: up to
``exact_limit`` values every distinct value is its own bin (the exact 1-D optimum); above it
values are binned by their top 10 mantissa bits (fp16's precision, float32's range).
"""
from __future__ import annotations

import numpy as np
import torch

from .. import _native

KEY_SHIFT = 13
N_KEYS = 1 << (32 - KEY_SHIFT)


def as_float32_array(values) -> np.ndarray:
    """Flatten a tensor / array / sequence to a contiguous float32 NumPy array (no copy if possible)."""
    if isinstance(values, torch.Tensor):
        if values.is_meta:
            raise ValueError("cannot cluster a meta tensor: it has no data (materialize the model first)")
        t = values.detach()
        if t.is_complex():
            raise ValueError("cannot cluster a complex tensor")
        return t.to(device="cpu", dtype=torch.float32).contiguous().reshape(-1).numpy()
    a = np.asarray(values)
    if a.dtype.kind not in "fiub":
        raise ValueError(f"cannot cluster values of dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float32).reshape(-1)


def _sortable_keys(x: np.ndarray) -> np.ndarray:
    u = x.view(np.uint32)
    s = np.where(u & np.uint32(0x80000000), ~u, u | np.uint32(0x80000000))
    return (s >> np.uint32(KEY_SHIFT)).astype(np.int64)


def _key_low_values() -> np.ndarray:
    """Smallest float of every key's bin, in key order (NaN for the non-finite keys)."""
    s = (np.arange(N_KEYS, dtype=np.uint64) << np.uint64(KEY_SHIFT)).astype(np.uint32)
    u = np.where(s & np.uint32(0x80000000), s & np.uint32(0x7FFFFFFF), ~s)
    return u.view(np.float32)


class Histogram:
    """Weighted histogram with exact moments (sum w, sum w*x, sum w*x^2) per bin."""

    def __init__(self, exact_limit: int = 65536):
        self.exact_limit = exact_limit
        self._small: list[tuple[np.ndarray, np.ndarray | None]] = []
        self._n_small = 0
        self._dense: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.count = 0

    def add(self, values, sample_weight=None) -> "Histogram":
        x = as_float32_array(values)
        w = None
        if sample_weight is not None:
            w = as_float32_array(sample_weight)
            if w.shape != x.shape:
                raise ValueError(f"sample_weight has {w.size} values for {x.size} values")
            if not np.isfinite(w).all() or (w < 0).any():
                raise ValueError("sample_weight must be finite and non-negative")
        if not np.isfinite(x).all():
            bad = int((~np.isfinite(x)).sum())
            raise ValueError(f"cannot cluster non-finite weights: {bad} NaN/Inf value(s)")
        self.count += x.size
        if self._dense is None and self._n_small + x.size <= self.exact_limit:
            self._small.append((x.copy(), None if w is None else w.copy()))
            self._n_small += x.size
            return self
        self._to_dense()
        self._accumulate(x, w)
        return self

    def _to_dense(self):
        if self._dense is None:
            self._dense = tuple(np.zeros(N_KEYS, np.float64) for _ in range(3))
            for x, w in self._small:
                self._accumulate(x, w)
            self._small, self._n_small = [], 0

    def _accumulate(self, x, w):
        c0, c1, c2 = self._dense
        lib = _native.lib()
        if lib is not None:
            lib.wc_hist_accumulate(_native.ptr(x), _native.ptr(w), x.size,
                                   _native.ptr(c0), _native.ptr(c1), _native.ptr(c2))
            return
        keys = _sortable_keys(x)
        xd = x.astype(np.float64)
        wd = np.ones_like(xd) if w is None else w.astype(np.float64)
        c0 += np.bincount(keys, weights=wd, minlength=N_KEYS)
        c1 += np.bincount(keys, weights=wd * xd, minlength=N_KEYS)
        c2 += np.bincount(keys, weights=wd * xd * xd, minlength=N_KEYS)

    def bins(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Moments of the bins with positive weight, in value order."""
        if self._dense is None:
            if not self._small:
                return (np.zeros(0),) * 3
            x = np.concatenate([s[0] for s in self._small]).astype(np.float64)
            w = np.concatenate([np.ones(s[0].size) if s[1] is None else s[1].astype(np.float64)
                                for s in self._small])
            uniq, inv = np.unique(x, return_inverse=True)
            c0 = np.bincount(inv, weights=w, minlength=uniq.size)
            c1 = np.bincount(inv, weights=w * x, minlength=uniq.size)
            c2 = np.bincount(inv, weights=w * x * x, minlength=uniq.size)
        else:
            c0, c1, c2 = self._dense
        keep = c0 > 0
        return c0[keep].copy(), c1[keep].copy(), c2[keep].copy()


def _dp_numpy(w, s1, s2, k):
    """Same dynamic program as the C one (divide and conquer per layer, vectorized per level)."""
    m = w.size
    k = min(k, m)
    p0 = np.concatenate([[0.0], np.cumsum(w)])
    p1 = np.concatenate([[0.0], np.cumsum(s1)])
    p2 = np.concatenate([[0.0], np.cumsum(s2)])

    def cost(i, j):
        ww = p0[j] - p0[i]
        s = p1[j] - p1[i]
        return np.maximum(p2[j] - p2[i] - s * s / ww, 0.0)

    j_all = np.arange(m + 1)
    prev = np.full(m + 1, np.inf)
    prev[1:] = cost(np.zeros(m, np.int64), j_all[1:])
    args = np.zeros((k, m + 1), np.int64)
    for layer in range(2, k + 1):
        cur = np.full(m + 1, np.inf)
        jhi = m - (k - layer)
        if layer == k:
            lo = hi = np.array([m])
        else:
            lo, hi = np.array([layer]), np.array([jhi])
        olo, ohi = np.array([layer - 1]), np.array([jhi - 1 if layer < k else m - 1])
        while lo.size:
            mid = (lo + hi) // 2
            end = np.minimum(ohi, mid - 1)
            counts = end - olo + 1
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            seg = np.repeat(np.arange(lo.size), counts)
            cand = olo[seg] + (np.arange(seg.size) - starts[seg])
            vals = prev[cand] + cost(cand, mid[seg])
            mins = np.minimum.reduceat(vals, starts)
            first = np.flatnonzero(vals == mins[seg])
            _, pos = np.unique(seg[first], return_index=True)
            bi = cand[first[pos]]
            cur[mid] = mins
            args[layer - 1, mid] = bi
            left = lo <= mid - 1
            right = mid + 1 <= hi
            lo, hi, olo, ohi = (np.concatenate([lo[left], mid[right] + 1]),
                                np.concatenate([mid[left] - 1, hi[right]]),
                                np.concatenate([olo[left], bi[right]]),
                                np.concatenate([bi[left], ohi[right]]))
        prev = cur
    total = prev[m]
    cents = np.empty(k)
    j = m
    for layer in range(k, 0, -1):
        i = 0 if layer == 1 else int(args[layer - 1, j])
        cents[layer - 1] = (p1[j] - p1[i]) / (p0[j] - p0[i])
        j = i
    return cents, float(total)


def optimal_codebook(w, s1, s2, n_clusters: int) -> tuple[np.ndarray, float]:
    """Optimal centroids (float64, ascending) and SSE for histogram moments in value order."""
    m = w.size
    if m == 0:
        raise ValueError("cannot fit k-means: no values with positive weight")
    lib = _native.lib()
    if lib is None:
        return _dp_numpy(w, s1, s2, n_clusters)
    k = min(n_clusters, m)
    out = np.empty(k, np.float64)
    w, s1, s2 = (np.ascontiguousarray(a, np.float64) for a in (w, s1, s2))
    total = lib.wc_kmeans_dp(_native.ptr(w), _native.ptr(s1), _native.ptr(s2), m, k, _native.ptr(out))
    if total < 0:
        raise MemoryError(f"k-means dynamic program could not allocate for {m} bins x {k} clusters")
    return out, float(total)


class Assigner:
    """Nearest-centroid assignment against one sorted codebook (reusable across tensors)."""

    def __init__(self, codebook):
        cb = np.ascontiguousarray(np.asarray(codebook, dtype=np.float32).reshape(-1))
        if cb.size == 0 or cb.size > 256:
            raise ValueError(f"codebook must have 1..256 entries, got {cb.size}")
        if np.any(np.diff(cb) < 0):
            raise ValueError("codebook must be sorted ascending")
        self.codebook = cb
        c64 = cb.astype(np.float64)
        self.bounds = np.ascontiguousarray(((c64[1:] + c64[:-1]) / 2).astype(np.float32))
        self._lut = None

    def __call__(self, values, sample_weight=None):
        """Returns (uint8 indices shaped like values, [weighted SSE, SSE, sum of squares])."""
        shape = tuple(values.shape) if hasattr(values, "shape") else None
        x = as_float32_array(values)
        w = None if sample_weight is None else as_float32_array(sample_weight)
        out = np.empty(x.size, np.uint8)
        sums = np.zeros(3, np.float64)
        lib = _native.lib()
        if lib is not None:
            if self._lut is None:
                self._lut = np.empty(N_KEYS, np.uint8)
                lib.wc_build_lut(_native.ptr(self.bounds), self.bounds.size, _native.ptr(self._lut))
            bad = lib.wc_assign(_native.ptr(x), _native.ptr(w), x.size, _native.ptr(self._lut),
                                _native.ptr(self.bounds), self.bounds.size, _native.ptr(self.codebook),
                                _native.ptr(out), _native.ptr(sums))
        else:
            bad = int((~np.isfinite(x)).sum())
            out[:] = np.searchsorted(self.bounds, x, side="left")
            e = x.astype(np.float64) - self.codebook[out].astype(np.float64)
            e2 = e * e
            sums[:] = [(e2 if w is None else w * e2).sum(), e2.sum(), (x.astype(np.float64) ** 2).sum()]
        if bad:
            raise ValueError(f"cannot assign non-finite weights: {bad} NaN/Inf value(s)")
        return out.reshape(shape) if shape is not None else out, sums


class KMeans1D:
    """Exact weighted 1-D k-means. ``fit`` returns self; fitted attributes end in ``_``."""

    def __init__(self, n_clusters: int, *, exact_limit: int = 65536):
        if not isinstance(n_clusters, (int, np.integer)) or isinstance(n_clusters, bool):
            raise TypeError(f"n_clusters must be an int, got {type(n_clusters).__name__}")
        if not 1 <= n_clusters <= 256:
            raise ValueError(f"n_clusters must be in 1..256 (indices are uint8), got {n_clusters}")
        self.n_clusters = int(n_clusters)
        self.exact_limit = exact_limit

    def fit_histogram(self, hist: Histogram) -> "KMeans1D":
        w, s1, s2 = hist.bins()
        if hist.count == 0:
            raise ValueError("cannot fit k-means on an empty input")
        cents, total = optimal_codebook(w, s1, s2, self.n_clusters)
        self.codebook_ = cents.astype(np.float32)
        self.histogram_inertia_ = total
        self.n_bins_ = int(w.size)
        self._assigner = Assigner(self.codebook_)
        return self

    def fit(self, values, sample_weight=None) -> "KMeans1D":
        hist = Histogram(self.exact_limit).add(values, sample_weight)
        self.fit_histogram(hist)
        _, sums = self._assigner(values, sample_weight)
        self.inertia_ = float(sums[0])
        return self

    def predict(self, values) -> np.ndarray:
        """uint8 index of the nearest centroid for every value (same shape)."""
        if not hasattr(self, "codebook_"):
            raise RuntimeError("KMeans1D is not fitted yet: call fit() first")
        return self._assigner(values)[0]

    def fit_predict(self, values, sample_weight=None) -> np.ndarray:
        return self.fit(values, sample_weight).predict(values)
