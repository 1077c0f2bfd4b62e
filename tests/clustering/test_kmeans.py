import itertools

import numpy as np
import pytest
import torch

from wclust import _native
from wclust.clustering.kmeans import Histogram, KMeans1D, _dp_numpy, optimal_codebook


def brute_force_sse(x, k):
    """Optimal 1-D k-means SSE by trying every split of the sorted values into k runs."""
    s = np.sort(np.asarray(x, np.float64))
    n, best = len(s), np.inf
    for cuts in itertools.combinations(range(1, n), k - 1):
        b = [0, *cuts, n]
        best = min(best, sum(((s[b[i]:b[i + 1]] - s[b[i]:b[i + 1]].mean()) ** 2).sum() for i in range(k)))
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_equals_brute_force(seed, k):
    x = np.random.default_rng(seed).standard_normal(10).astype(np.float32)
    km = KMeans1D(k).fit(x)
    assert km.inertia_ == pytest.approx(brute_force_sse(x, k), rel=1e-9, abs=1e-12)


def test_weighted_equals_repeated_values():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(8).astype(np.float32)
    w = rng.integers(1, 4, 8)
    a = KMeans1D(3).fit(x, sample_weight=w.astype(np.float32))
    b = KMeans1D(3).fit(np.repeat(x, w))
    np.testing.assert_allclose(a.codebook_, b.codebook_, rtol=1e-6)
    assert a.inertia_ == pytest.approx(b.inertia_, rel=1e-9)


def test_hand_computed():
    # {0, 1} and {10, 11, 12}: centroids 0.5 and 11; SSE 0.25*2 + 1 + 0 + 1 = 2.5
    km = KMeans1D(2).fit(np.array([0, 1, 10, 11, 12], np.float32))
    np.testing.assert_array_equal(km.codebook_, np.array([0.5, 11], np.float32))
    assert km.inertia_ == pytest.approx(2.5)
    np.testing.assert_array_equal(km.predict(np.array([0.7, 5.7, 5.8, 100], np.float32)), [0, 0, 1, 1])


def test_fewer_distinct_values_than_clusters_is_exact():
    x = np.array([3, 3, 1, 1, 2], np.float32)
    km = KMeans1D(16).fit(x)
    np.testing.assert_array_equal(km.codebook_, [1, 2, 3])
    assert km.inertia_ == 0
    np.testing.assert_array_equal(km.codebook_[km.predict(x)], x)


def test_constant_input():
    km = KMeans1D(4).fit(torch.full((7, 3), 0.25))
    assert km.codebook_.tolist() == [0.25] and km.inertia_ == 0


def test_empty_and_nonfinite_inputs_raise():
    with pytest.raises(ValueError, match="empty"):
        KMeans1D(4).fit(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="NaN/Inf"):
        KMeans1D(4).fit(np.array([1, np.nan, 2], np.float32))
    with pytest.raises(ValueError, match="1..256"):
        KMeans1D(300)
    with pytest.raises(RuntimeError, match="not fitted"):
        KMeans1D(3).predict(np.ones(3))


@pytest.mark.parametrize("k", [2, 16, 64, 256])
def test_large_input_binned_invariants(k):
    """Above exact_limit values are binned: the optimum over bins is still found (C == NumPy)."""
    rng = np.random.default_rng(k)
    x = (rng.standard_t(4, 200_000) * 0.02).astype(np.float32)
    km = KMeans1D(k).fit(x)
    idx = km.predict(x)
    assert idx.dtype == np.uint8 and int(idx.max()) < k
    assert km.codebook_.size == k and np.all(np.diff(km.codebook_) >= 0)
    assert len(np.unique(km.codebook_[idx])) <= k
    # the reported inertia is the SSE of the original values against the float32 codebook
    sse = ((x.astype(np.float64) - km.codebook_[idx].astype(np.float64)) ** 2).sum()
    assert km.inertia_ == pytest.approx(sse, rel=1e-9)
    # nearest assignment is never worse than the DP's partition
    assert km.inertia_ <= km.histogram_inertia_ * (1 + 1e-9)
    h = Histogram().add(x)
    cents, total = _dp_numpy(*h.bins(), k)
    assert total == pytest.approx(km.histogram_inertia_, rel=1e-9)
    np.testing.assert_allclose(cents, km.codebook_, rtol=1e-5, atol=1e-7)


@pytest.mark.skipif(_native.lib() is None, reason="C library not built")
def test_native_dp_matches_numpy_on_random_histograms():
    rng = np.random.default_rng(5)
    for m, k in [(1, 1), (5, 5), (50, 7), (300, 40), (2000, 256)]:
        w = rng.uniform(0.1, 3, m)
        x = np.sort(rng.standard_normal(m))
        a, ta = optimal_codebook(w, w * x, w * x * x, k)
        b, tb = _dp_numpy(w, w * x, w * x * x, k)
        assert ta == pytest.approx(tb, rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(a, b, rtol=1e-9)


def test_better_than_lloyd():
    """Exact DP is at least as good as scikit-learn-style Lloyd iterations from quantile starts."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.02, 5000), rng.normal(0.1, 0.005, 300)]).astype(np.float32)
    km = KMeans1D(8).fit(x)
    c = np.quantile(x, np.linspace(0.05, 0.95, 8))
    for _ in range(100):
        a = np.abs(x[:, None] - c[None]).argmin(1)
        c = np.array([x[a == j].mean() if (a == j).any() else c[j] for j in range(8)])
    lloyd = ((x - c[np.abs(x[:, None] - c[None]).argmin(1)]) ** 2).sum()
    assert km.inertia_ <= lloyd * (1 + 1e-6)
