"""Where a model spends its time and memory (the paper's Figures 2 and 3), for any model.

- ``profile_model(model, batch=1, runs=3)`` -> plain dict: time per operator group (torch.profiler,
  several runs), parameter bytes by kind (clustered weights counted at their index width plus
  codebooks), activation bytes by operator group at the batch, and peak memory.
- ``trace_ops(model, inputs)`` -> one record per aten/wclust op of one forward pass (FLOPs, weight
  bytes, activation bytes, the module it ran in): what ``wclust.performance.platforms`` models time and energy on.
- ``plot_time(result, path)`` / ``plot_memory(result, path)``: bar charts (PNG).
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import statistics
import sys
import tempfile
import time

import torch
from torch import nn
from torch.utils import _pytree
from torch.utils._python_dispatch import TorchDispatchMode

from .. import figures
from ..clustering.gpt2_conv1d import linear_classes
from .op_groups import GROUPS, PARAM_KINDS, op_group


# -- attention implementation -----------------------------------------------------------------
@contextlib.contextmanager
def attention_implementation(model: nn.Module, impl: str | None):
    """Temporarily run a transformers model with ``impl`` attention ("eager" shows the attention
    products and softmax as separate ops, like the paper's profile); no-op for other models."""
    cfg = getattr(model, "config", None)
    old = getattr(cfg, "_attn_implementation", None)
    if impl in (None, "as-is") or old is None or old == impl or not hasattr(model, "set_attn_implementation"):
        yield old
        return
    model.set_attn_implementation(impl)
    try:
        yield impl
    finally:
        model.set_attn_implementation(old)


# -- parameters by kind -------------------------------------------------------------------------
def param_breakdown(model: nn.Module) -> dict:
    """Bytes of parameters (and clustered buffers) by kind; tied tensors counted once.

    Clustered weights count their indices at ``bits`` per index (the stored width) plus codebooks;
    ``resident_bytes`` is what the tensors occupy in memory now (indices one or two per byte).
    """
    from ..clustering.modules import ClusteredModule

    kinds = dict.fromkeys(PARAM_KINDS, 0)
    seen: set[int] = set()
    resident = index_bytes = codebook_bytes = 0
    norm_types = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, getattr(nn, "RMSNorm", nn.LayerNorm))
    for fqn, m in model.named_modules():
        is_matmul = isinstance(m, (*linear_classes(), nn.modules.conv._ConvNd)) or (
            isinstance(m, ClusteredModule) and m.kind != "embedding")
        is_emb = isinstance(m, nn.Embedding) or (isinstance(m, ClusteredModule) and m.kind == "embedding")
        if isinstance(m, ClusteredModule) and id(m.indices) not in seen:
            seen.update((id(m.indices), id(m.codebook)))
            ib = math.ceil(m.out_features * m.in_features * m.bits / 8)
            cb = m.codebook.numel() * m.codebook.element_size()
            extra = sum(t.numel() * t.element_size() for t in (m.scale, m.outlier_index, m.outlier_value)
                        if t is not None)
            kinds["embeddings" if is_emb else "matmul weights"] += ib + cb + extra
            index_bytes += ib
            codebook_bytes += cb
            resident += m.indices.numel() * m.indices.element_size() + cb + extra
        for name, p in list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False)):
            if p is None or id(p) in seen or not p.is_floating_point():
                continue
            seen.add(id(p))
            nbytes = p.numel() * p.element_size()
            resident += nbytes
            if isinstance(m, norm_types) or "norm" in type(m).__name__.lower():
                kind = "norms"
            elif name == "bias":
                kind = "biases"
            elif is_emb or "embed" in f"{fqn}.{name}".lower() or "cls_token" in name or "token" in name:
                kind = "embeddings"
            elif is_matmul and name == "weight":
                kind = "matmul weights"
            else:
                kind = "other"
            kinds[kind] += nbytes
    total = sum(kinds.values())
    return {"bytes": kinds, "percent": {k: 100.0 * v / total if total else 0.0 for k, v in kinds.items()},
            "total_bytes": total, "resident_bytes": resident, "index_bytes": index_bytes,
            "codebook_bytes": codebook_bytes}


# -- op trace (FLOPs and bytes per op) ----------------------------------------------------------
def _nbytes(t) -> int:
    return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0


def _flops(base: str, args, out) -> int:
    o = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(o, torch.Tensor):
        return 0
    if base in ("mm", "addmm", "bmm", "baddbmm", "_int_mm", "addmv", "mv"):
        a = args[1] if base in ("addmm", "baddbmm", "addmv") else args[0]
        return 2 * o.numel() * a.shape[-1]
    if base == "lut_linear":
        return 2 * o.numel() * int(args[4])
    if base in ("convolution", "_convolution", "mkldnn_convolution"):
        w = args[1]
        return 2 * o.numel() * (w.numel() // w.shape[0])
    if "scaled_dot_product" in base:
        q, k = args[0], args[1]
        return 4 * q.numel() * k.shape[-2]
    return o.numel() * {"layer norm": 8, "softmax/attention": 5, "activation": 8}.get(op_group(base), 1)


class _Tracer(TorchDispatchMode):
    def __init__(self, weights: dict[int, dict], stack: list[str]):
        super().__init__()
        self.weights, self.stack, self.records = weights, stack, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func._schema.name
        base = name.split("::")[-1]
        flat_in = [a for a in _pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        flat_out = [o for o in _pytree.tree_leaves(out) if isinstance(o, torch.Tensor)]
        in_ptrs = {t.untyped_storage().data_ptr() for t in flat_in if t.numel()}
        if flat_out and all(o.untyped_storage().data_ptr() in in_ptrs for o in flat_out if o.numel()):
            return out  # a view: no work, no traffic
        out_bytes = sum(_nbytes(o) for o in flat_out)
        rec = {"op": name, "group": op_group(name), "module": self.stack[-1] if self.stack else "",
               "flops": _flops(base, args, out), "act_bytes": out_bytes, "weight_bytes": 0,
               "weight_numel": 0, "weights": [], "out_numel": sum(o.numel() for o in flat_out),
               "out_bytes": out_bytes, "clusterable_numel": 0, "n_clusterable": 0}
        gather = base in ("embedding", "index", "index_select", "embedding_bag")
        for t in flat_in:
            w = (self.weights.get(t.data_ptr()) or self.weights.get(t.untyped_storage().data_ptr())) if t.numel() else None
            if w is None:
                rec["act_bytes"] += _nbytes(t)
                continue
            read = min(out_bytes, w["bytes"]) if gather else w["bytes"]
            rec["weight_bytes"] += read
            rec["weight_numel"] += w["numel"] * read // max(w["bytes"], 1)
            rec["weights"].append(w["name"])
            if w["clusterable"]:
                rec["clusterable_numel"] += w["numel"] * read // max(w["bytes"], 1)
                rec["n_clusterable"] += 1
            if "clustered" in w:
                rec["clustered"] = w["clustered"]
        self.records.append(rec)
        return out


def _weight_table(model: nn.Module) -> dict[int, dict]:
    """data pointer -> {name, bytes, numel, clusterable} for every parameter and buffer, and
    storage pointer -> the same where one tensor is all a storage holds (so that views of it,
    e.g. a transposed weight, are found too). Several tensors in one storage (clustered indices
    in their huge-page arena, wclust.clustering.arena) are found by their own data pointers."""
    from ..clustering.compress import find_targets
    from ..clustering.config import ClusterConfig
    from ..clustering.modules import ClusteredModule

    try:  # the weights ``wclust.compress`` would cluster with the default config
        clusterable = {id(t.module.weight) for t in find_targets(model, ClusterConfig())}
    except ValueError:  # e.g. non-float or meta weights: nothing counts as clusterable
        clusterable = set()
    table: dict[int, dict] = {}
    by_storage: dict[int, list[dict]] = {}
    for fqn, m in model.named_modules():
        for name, t in list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False)):
            if t is None or not t.numel():
                continue
            ptr = t.data_ptr()
            if ptr in table:
                continue
            info = {"name": f"{fqn}.{name}" if fqn else name, "bytes": _nbytes(t), "numel": t.numel(),
                    "clusterable": id(t) in clusterable}
            if isinstance(m, ClusteredModule) and name in ("indices", "codebook"):
                info["clustered"] = {"bits": m.bits, "n_clusters": int(m.codebook.shape[1])}
                info["numel"] = m.out_features * m.in_features if name == "indices" else 0
            table[ptr] = info
            by_storage.setdefault(t.untyped_storage().data_ptr(), []).append(info)
    for ptr, infos in by_storage.items():
        if len(infos) == 1 and ptr not in table:
            table[ptr] = infos[0]
    return table


def trace_ops(model: nn.Module, inputs: dict) -> list[dict]:
    """One record per non-view op of one forward pass: op, group, module, flops, weight_bytes
    (parameters read, as stored), weight_numel, weights (names), act_bytes (other tensors read and
    written), out_numel."""
    from ..sources.models import run

    weights = _weight_table(model)
    stack: list[str] = []
    handles = []

    def pop(mod, args, out):
        stack.pop()

    for fqn, m in model.named_modules():
        handles.append(m.register_forward_pre_hook(lambda mod, a, f=fqn: stack.append(f) and None))
        handles.append(m.register_forward_hook(pop))
    tracer = _Tracer(weights, stack)
    try:
        with torch.no_grad(), tracer:
            run(model, inputs)
    finally:
        for h in handles:
            h.remove()
    return tracer.records


# -- the profile --------------------------------------------------------------------------------
_CHATTER = re.compile(rb"^USDT:.*profiler_st(art|op)\s*$")


@contextlib.contextmanager
def _without_profiler_chatter():
    """torch's profiler (kineto) writes 'USDT: ... profiler_start/stop' lines straight to file
    descriptor 2 on every run. Capture fd 2 for the block and pass on everything else."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. captured by a test)
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            kept = [ln for ln in tmp.read().splitlines(keepends=True) if not _CHATTER.match(ln)]
            if kept:
                os.write(fd, b"".join(kept))


def _time_groups(model, inputs, runs: int) -> tuple[dict, list]:
    from torch.profiler import ProfilerActivity, profile

    from ..sources.models import run

    totals = dict.fromkeys(GROUPS, 0.0)
    peaks = []

    def visit(ev):
        g = op_group(ev.name)
        if g != "other" or not ev.cpu_children:
            totals[g] += ev.cpu_time_total
            return
        totals["other"] += ev.self_cpu_time_total
        for c in ev.cpu_children:
            visit(c)

    for _ in range(runs):
        with _without_profiler_chatter(), torch.no_grad(), \
                profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            run(model, inputs)
        roots = sorted((e for e in prof.events() if e.cpu_parent is None), key=lambda e: e.time_range.start)
        live = peak = 0  # activation memory: allocations inside top-level ops, frees between them
        for ev in roots:
            if ev.name == "[memory]":
                live += ev.cpu_memory_usage
                continue
            visit(ev)
            peak = max(peak, live + max(0, ev.cpu_memory_usage))
            live += ev.cpu_memory_usage
        peaks.append(peak)
    return {g: v / runs / 1e3 for g, v in totals.items()}, peaks


def time_forward(model, inputs, repeats: int = 5, clock: str = "wall", warmup: bool = True) -> float:
    """Median seconds of one forward pass. ``clock="cpu"``: this thread's CPU time (with one torch
    thread, a latency that other processes on a shared machine disturb much less)."""
    from ..sources.models import run

    now = time.thread_time if clock == "cpu" else time.perf_counter
    ts = []
    with torch.no_grad():
        if warmup:
            run(model, inputs)
        for _ in range(repeats):
            t0 = now()
            run(model, inputs)
            ts.append(now() - t0)
    return statistics.median(ts)


def profile_model(model: nn.Module, batch: int = 1, runs: int = 3, inputs: dict | None = None,
                  attention: str | None = "eager") -> dict:
    """Time per operator group, parameter and activation bytes by kind, peak memory (plain dict)."""
    from ..sources.models import example_inputs, run

    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    inputs = inputs if inputs is not None else example_inputs(model, batch)
    with attention_implementation(model, attention) as impl:
        with torch.no_grad():
            run(model, inputs)  # warm-up
        times_ms, peaks = _time_groups(model, inputs, runs)
        records = trace_ops(model, inputs)
        wall = time_forward(model, inputs, repeats=max(3, runs))
    total = sum(times_ms.values())
    act = dict.fromkeys(GROUPS, 0)      # bytes of the tensors each group produces
    traffic = dict.fromkeys(GROUPS, 0)  # bytes each group reads and writes (weights excluded)
    flops = dict.fromkeys(GROUPS, 0)
    for r in records:
        act[r["group"]] += r["out_bytes"]
        traffic[r["group"]] += r["act_bytes"]
        flops[r["group"]] += r["flops"]
    params = param_breakdown(model)
    act_total = sum(act.values())
    largest_t = max(times_ms, key=times_ms.get)
    largest_p = max(params["bytes"], key=params["bytes"].get)
    return {
        "model": type(model).__name__, "batch": batch, "runs": runs, "threads": torch.get_num_threads(),
        "attention": impl,
        "time": {"ms": times_ms, "percent": {g: 100.0 * v / total if total else 0.0 for g, v in times_ms.items()},
                 "total_ms": total, "forward_ms": 1e3 * wall, "largest": largest_t},
        "params": dict(params, largest=largest_p),
        "activations": {"bytes": act, "percent": {g: 100.0 * v / act_total if act_total else 0.0
                                                  for g, v in act.items()}, "total_bytes": act_total,
                        "traffic_bytes": traffic,
                        "note": "bytes: tensors produced by each op group in one forward pass at this batch; "
                                "traffic_bytes: activations read + written"},
        "flops": {"by_group": flops, "total": sum(flops.values())},
        "peak": {"activation_bytes": int(statistics.median(peaks)),
                 "total_bytes": int(statistics.median(peaks)) + params["resident_bytes"]},
        "clustered": params["index_bytes"] > 0,
    }


# -- plots ----------------------------------------------------------------------------------------
def _bars(ax, labels, values, title, ylabel):
    bars = ax.bar(range(len(labels)), values, color="tab:blue")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    top = max(values) if values else 0
    ax.set_ylim(0, top * 1.18 + 1e-9)
    for b, v in zip(bars, values):
        ax.text(b.get_x() + b.get_width() / 2, b.get_height(), f"{v:.1f}%", ha="center", va="bottom", fontsize=7)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_time(result: dict, path: str) -> str:
    """Figure-2-like bar chart: share of forward time per operator group (percent)."""
    plt = _plt()
    t = result["time"]
    fig, ax = plt.subplots(figsize=(7, 4))
    _bars(ax, GROUPS, [t["percent"][g] for g in GROUPS],
          f"{result['model']}{' (clustered)' if result.get('clustered') else ''}: time per operator group\n"
          f"batch {result['batch']}, {result['threads']} thread(s), {result['runs']} profiled runs, "
          f"{t['total_ms']:.0f} ms/run profiled", "share of forward time (%)")
    fig.tight_layout()
    return figures.save(fig, path, dpi=110)


def plot_memory(result: dict, path: str) -> str:
    """Figure-3-like bar charts: parameter bytes by kind and activation bytes by operator group."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    p, a = result["params"], result["activations"]
    _bars(a1, PARAM_KINDS, [p["percent"][k] for k in PARAM_KINDS],
          f"parameters: {p['total_bytes'] / 2**20:.1f} MiB"
          + (" (indices at stored width + codebooks)" if result.get("clustered") else ""),
          "share of parameter bytes (%)")
    _bars(a2, GROUPS, [a["percent"][g] for g in GROUPS],
          f"activations produced at batch {result['batch']}: {a['total_bytes'] / 2**20:.1f} MiB "
          f"(peak live {result['peak']['activation_bytes'] / 2**20:.1f} MiB)", "share of activation bytes (%)")
    tag = " (clustered)" if result.get("clustered") else ""
    fig.suptitle(f"{result['model']}{tag}: memory by kind", fontsize=10)
    fig.tight_layout()
    return figures.save(fig, path, dpi=110)
