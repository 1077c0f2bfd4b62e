"""Walk a model, fit codebooks per scope, swap in clustered modules (in place)."""
from __future__ import annotations

import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import arena
from ..sysmem import release_free_memory
from .config import ClusterConfig
from .gpt2_conv1d import as_out_in, linear_classes, matmul_weight
from .error_feedback import assign
from .kmeans import Assigner, Histogram, KMeans1D
from .modules import ClusteredModule, ClusteredParts, clustered_modules, swap_in

_KINDS = {"conv": (nn.Conv1d, nn.Conv2d, nn.Conv3d), "embedding": (nn.Embedding,)}


def kind_classes(kind: str) -> tuple[type, ...]:
    """Module classes of a ``ClusterConfig.types`` kind ("linear" takes in transformers' Conv1D)."""
    return linear_classes() if kind == "linear" else _KINDS[kind]


@dataclass
class Target:
    """One weight to cluster: the first module that owns it, plus any modules tied to it."""

    fqn: str
    module: nn.Module
    tied: list[str]

    @property
    def weight(self) -> torch.Tensor:
        """(out, in, ...): a Conv1D's weight transposed."""
        return matmul_weight(self.module)


def find_targets(model: nn.Module, config: ClusterConfig, filter_fn=None) -> list[Target]:
    kinds = tuple(t for k in config.types for t in kind_classes(k))
    by_param: dict[int, Target] = {}
    out = []
    for fqn, m in model.named_modules():
        if isinstance(m, ClusteredModule) or not isinstance(m, kinds):
            continue
        w = getattr(m, "weight", None)
        if not isinstance(w, torch.Tensor) or not config.selects(fqn):
            continue
        if filter_fn is not None and not filter_fn(m, fqn):
            continue
        if id(w) in by_param:
            by_param[id(w)].tied.append(fqn)
            continue
        if w.numel() < config.min_size:
            continue
        if w.is_meta:
            raise ValueError(f"{fqn}: weight is a meta tensor (no data); load real weights before compressing")
        if not w.is_floating_point():
            raise ValueError(f"{fqn}: weight has dtype {w.dtype}; only floating-point weights can be clustered")
        t = Target(fqn, m, [])
        by_param[id(w)] = t
        out.append(t)
    return out


def _check_finite(t: Target) -> None:
    w = t.weight.detach()
    if not torch.isfinite(w).all():
        bad = int((~torch.isfinite(w)).sum())
        raise ValueError(f"{t.fqn}: weight has {bad} NaN/Inf value(s); cannot cluster it")


class _Prepared:
    """A weight viewed as 2-D float32 rows, with its scale and outlier mask applied."""

    def __init__(self, t: Target, config: ClusterConfig, sample_weight: torch.Tensor | None):
        w = t.weight.detach().to(torch.float32).reshape(t.weight.shape[0], -1).contiguous()
        self.rows, self.cols = w.shape
        self.scale = None
        if config.channel_scale:
            s = w.to(torch.float64).pow(2).mean(dim=1).sqrt().to(torch.float32)   # same bits at any thread count
            s = torch.where(s > 0, s, torch.ones_like(s))
            self.scale = s
            w = w / s[:, None]
        self.values = w
        self.sse = self.sumsq = 0.0  # filled by the assignment (exact when no scale / outliers)
        self.keep = None
        self.outlier_index = None
        n_out = int(round(config.outliers * w.numel()))
        if n_out:
            flat = w.reshape(-1).abs()      # largest relative to their channel when scaled
            # stable order: ties (e.g. w and -w) resolved by position, the same at any thread count
            top = torch.argsort(flat, descending=True, stable=True)[:n_out].sort().values
            self.outlier_index = top
            keep = torch.ones(w.numel(), dtype=torch.bool)
            keep[top] = False
            self.keep = keep.reshape(w.shape)
        self.sample_weight = None
        if sample_weight is not None:
            if tuple(sample_weight.shape) != tuple(t.module.weight.shape):
                raise ValueError(f"{t.fqn}: sample weight shape {tuple(sample_weight.shape)} != weight shape "
                                 f"{tuple(t.module.weight.shape)}")
            self.sample_weight = as_out_in(t.module, sample_weight.detach()).to(torch.float32).reshape(self.rows,
                                                                                                   self.cols)

    def add_to(self, hist: Histogram, rows: slice = slice(None)) -> None:
        v = self.values[rows]
        sw = None if self.sample_weight is None else self.sample_weight[rows]
        if self.keep is not None:
            k = self.keep[rows]
            v = v[k]
            sw = None if sw is None else sw[k]
        hist.add(v, sw)


class _Stopped(Exception):
    """Raised in a worker once compress is being interrupted."""


def _groups(rows: int, config: ClusterConfig) -> list[slice]:
    if config.scope != "group":
        return [slice(0, rows)]
    return [slice(r, min(r + config.group_size, rows)) for r in range(0, rows, config.group_size)]


def _fit_codebook(hist: Histogram, k: int) -> np.ndarray:
    km = KMeans1D(k).fit_histogram(hist)
    cb = np.zeros(k, np.float32)
    cb[: km.codebook_.size] = km.codebook_
    cb[km.codebook_.size:] = km.codebook_[-1]   # fewer distinct values than k: repeat the last
    return cb


def _build_parts(t: Target, prep: _Prepared, codebooks: list[np.ndarray], config: ClusterConfig,
                 group_rows: list[slice], hessian: torch.Tensor | None = None) -> ClusteredParts:
    dtype = t.weight.dtype
    codebook = torch.from_numpy(np.stack(codebooks)).to(dtype)
    compensated = None
    if hessian is not None:   # error feedback over input columns (a Linear with calibration inputs)
        row_group = torch.zeros(prep.rows, dtype=torch.int64)
        for g, rows in enumerate(group_rows):
            row_group[rows] = g
        idx, compensated = assign(prep.values, hessian, codebook.to(torch.float32), row_group, prep.keep)
    else:
        idx = np.empty((prep.rows, prep.cols), np.uint8)
        for cb, rows in zip(codebooks, group_rows):
            # assign against the codebook as stored (rounded to the weight's dtype)
            stored = torch.from_numpy(cb).to(dtype).to(torch.float32).numpy()
            idx[rows], sums = Assigner(stored)(prep.values[rows])
            prep.sse += float(sums[1])
            prep.sumsq += float(sums[2])
    parts = ClusteredParts(tuple(t.weight.shape), idx, codebook,
                           config.group_size if config.scope == "group" else prep.rows, config.bits)
    if prep.scale is not None:
        parts.scale = prep.scale.to(dtype)
    if prep.outlier_index is not None:
        parts.outlier_index = prep.outlier_index.to(torch.int64)
        if compensated is None:
            parts.outlier_value = t.weight.detach().reshape(-1)[prep.outlier_index].clone()
        else:   # error feedback moved them too: store the compensated values (their error is then zero)
            if prep.scale is not None:
                compensated = compensated.to(torch.float64) * prep.scale.to(torch.float64)[:, None]
            parts.outlier_value = compensated.reshape(-1)[prep.outlier_index].to(dtype)
    # squared error and energy of the original weights, straight from the assignment pass
    exact = prep.scale is None and prep.outlier_index is None and compensated is None
    parts.error_sums = (prep.sse, prep.sumsq) if exact else None
    return parts


def compress(model: nn.Module, config: ClusterConfig | None = None, *, sample_weights: dict | None = None,
             hessians: dict | None = None, filter_fn=None, progress: bool = True) -> nn.Module:
    """Cluster the weights ``config`` selects, in place; returns the model (a float one: an already
    clustered model, even partly, is refused).

    ``sample_weights`` maps module names to per-weight importances (the shape of the weight) for
    ``weighting="fisher"`` (e.g. ``wclust.accuracy.fisher.fisher_weights``) or ``"activation"``
    (``wclust.accuracy.fisher.activation_weights``). ``hessians`` maps Linear names to X^T X of their
    calibration inputs for ``error_feedback=True`` (``wclust.accuracy.fisher.input_hessians``); other
    modules, and Linears without one, get plain nearest assignment. A summary lands in
    ``model.wclust_info``.

    The stages: ``plan`` (which weights) -> ``fit`` (their codebooks and indices) -> ``swap`` (the
    clustered modules in place of the float ones) -> ``summarize`` (``model.wclust_info``).
    """
    config = config or ClusterConfig()
    _check_request(model, config, sample_weights, hessians)
    start = time.perf_counter()
    targets = plan(model, config, filter_fn)
    if not targets:
        warnings.warn("wclust.compress: no layer matched the config (types, include/exclude, min_size); "
                      "the model is unchanged", stacklevel=2)
        return model
    parts = fit(targets, config, sample_weights, hessians, progress)
    fit_seconds = time.perf_counter() - start
    sums = swap(model, targets, parts)
    model.wclust_info = summarize(config, targets, sums, time.perf_counter() - start, fit_seconds)
    arena.consolidate(model)  # the indices in huge pages: the one-token kernels stream them faster
    release_free_memory()  # the float weights replaced above
    return model


def _check_request(model: nn.Module, config: ClusterConfig, sample_weights, hessians) -> None:
    if config.weighting != "uniform" and not sample_weights:
        fn = {"fisher": "fisher_weights", "activation": "activation_weights"}[config.weighting]
        raise ValueError(f'weighting="{config.weighting}" needs sample_weights (see wclust.accuracy.fisher.{fn})')
    if config.error_feedback and not hessians:
        raise ValueError("error_feedback=True needs hessians (see wclust.accuracy.fisher.input_hessians)")
    done = [n or type(m).__name__ for n, m in clustered_modules(model).items()]
    if done:   # clustering again would mix two configs in one model (and one file header)
        raise ValueError(f"the model is already clustered ({len(done)} clustered layer(s), e.g. {done[0]}); "
                         "cluster its float source instead")


def plan(model: nn.Module, config: ClusterConfig, filter_fn=None) -> list[Target]:
    """The weights to cluster (``find_targets``), each checked to be finite."""
    targets = find_targets(model, config, filter_fn)
    for t in targets:
        _check_finite(t)
    return targets


def fit(targets: list[Target], config: ClusterConfig, sample_weights: dict | None = None,
        hessians: dict | None = None, progress: bool = True) -> list[ClusteredParts]:
    """The ClusteredParts of every target, on ``config.threads`` threads; the first error (or Ctrl-C)
    stops every worker at its next codebook and is raised."""
    # progress in weights (a big embedding is most of a text model's), advanced per codebook fitted
    bar = tqdm(total=sum(t.weight.numel() for t in targets), desc=f"clustering k={config.n_clusters} {config.scope}",
               unit="weight", unit_scale=True, disable=not progress, leave=False)
    stop = threading.Event()  # set on Ctrl-C / an error: running tensors stop at their next group
    work = _worker(targets, config, sample_weights or {}, hessians if config.error_feedback else {}, bar, stop)
    try:
        return _run_all(work, len(targets), config.threads or max(1, torch.get_num_threads()), stop)
    finally:
        bar.close()


def _worker(targets: list[Target], config: ClusterConfig, sw: dict, hs: dict, bar, stop: threading.Event):
    """``work(i)``: the ClusteredParts of ``targets[i]`` (raises _Stopped once ``stop`` is set)."""
    k = config.n_clusters

    def hessian(t: Target):
        return hs.get(t.fqn) if isinstance(t.module, linear_classes()) else None

    if config.scope == "model":   # one codebook, fitted on every weight before any worker starts
        preps, hist = [], Histogram()
        for t in targets:
            preps.append(_Prepared(t, config, sw.get(t.fqn)))
            preps[-1].add_to(hist)
        shared = _fit_codebook(hist, k)

        def work(i):
            if stop.is_set():
                raise _Stopped
            p = _build_parts(targets[i], preps[i], [shared], config, [slice(0, preps[i].rows)], hessian(targets[i]))
            bar.update(targets[i].weight.numel())
            return p
        return work

    def work(i):
        t = targets[i]
        prep = _Prepared(t, config, sw.get(t.fqn))
        groups = _groups(prep.rows, config)
        cbs = []
        for rows in groups:
            if stop.is_set():
                raise _Stopped
            h = Histogram()
            prep.add_to(h, rows)
            cbs.append(_fit_codebook(h, k))
            bar.update((rows.stop - rows.start) * prep.cols)
        return _build_parts(t, prep, cbs, config, groups, hessian(t))
    return work


def _run_all(work, n: int, threads: int, stop: threading.Event) -> list:
    """``[work(0), ..., work(n - 1)]`` on a pool of ``threads``; the first failure sets ``stop`` and is raised."""
    failed: list[BaseException] = []

    def guarded(i):
        try:
            return work(i)
        except BaseException as e:  # the first failure stops the other workers too
            if not isinstance(e, _Stopped):
                failed.append(e)
            stop.set()
            raise

    out: list = [None] * n
    pool = ThreadPoolExecutor(max_workers=threads)
    try:
        for i, p in enumerate(pool.map(guarded, range(n))):
            out[i] = p
    except BaseException as e:  # Ctrl-C here or a worker's error: running tensors stop at their next codebook
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        if isinstance(e, _Stopped) and failed:
            raise failed[0] from None
        raise
    finally:
        pool.shutdown(wait=True)
    return out


def swap(model: nn.Module, targets: list[Target], parts: list[ClusteredParts]) -> tuple[float, float, int]:
    """Clustered modules in place of the targets (and their tied twins); returns (sum of the original
    weights squared, sum of the clustering's squared errors, number of weights clustered)."""
    sq = err = 0.0
    n_clustered = 0
    for t, p in zip(targets, parts):
        orig = t.weight.detach()
        new = swap_in(model, t.fqn, p, t.tied)
        if getattr(p, "error_sums", None) is not None:
            err += p.error_sums[0]
            sq += p.error_sums[1]
        else:  # scales / outliers: measure on the dequantized weight
            o = orig.to(torch.float32)
            sq += float(o.pow(2).sum(dtype=torch.float64))
            err += float((o - new.dequantize(torch.float32)).pow(2).sum(dtype=torch.float64))
        n_clustered += orig.numel()
    return sq, err, n_clustered


def summarize(config: ClusterConfig, targets: list[Target], sums: tuple[float, float, int], seconds: float,
              fit_seconds: float) -> dict:
    """``model.wclust_info``: the config and the stats (SQNR in dB over every clustered weight)."""
    sq, err, n_clustered = sums
    sqnr = float("inf") if err == 0 else 10 * np.log10(sq / err) if sq > 0 else float("-inf")
    return {
        "config": config.to_dict(),
        "stats": {"params_clustered": n_clustered, "n_tensors": len(targets),
                  "n_tied": sum(len(t.tied) for t in targets), "sqnr_db": sqnr,
                  "seconds": seconds, "fit_seconds": fit_seconds},
    }
