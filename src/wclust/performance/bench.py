"""Measured speed: end-to-end latency and memory of a model, fp32 vs its cheaper versions.

``run_bench`` times, side by side in one run (interleaved, a shuffled order per round, medians):
- ``fp32``: the model as loaded (for a model loaded from a .wclust file: its dense twin, the
  dequantized weights in float32 modules, as fast as the fp32 model it came from);
- ``int8_dynamic``: ``torch.ao.quantization.quantize_dynamic`` on its Linear layers (the peer a
  CPU user would pick);
- ``clustered_fp32`` / ``clustered_bf16``: the model clustered with ``n_clusters``, or a .wclust
  file's model as stored (one object, the clustered Linear layers' compute_dtype switched between
  runs);
- with ``bf16_models`` (default): ``dense_bf16_model`` and ``clustered_bf16_model``, the dense
  and the clustered model cast to bf16 as a whole (activations, attention, norms in bf16 too).
Peak resident memory of each loaded model is measured in a fresh subprocess per variant (the
module saved with ``torch.save`` and loaded back; the import baseline is subtracted).
Speed-ups: ``speedup_vs_fp32`` is the ratio of the medians; ``speedup_paired`` the median of the
ratios within each round (every variant runs once per round, back to back); ``speedup_min`` the
ratio of the minima (each variant's least disturbed run); ``runs_ms`` keeps every timed run in the
order of the rounds.
``pressure=P`` adds P background processes streaming memory (as the paper did to model a
shared-memory SoC); the timing is then done without and with them.
"""
from __future__ import annotations

import copy
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import torch
from torch import nn

from ..clustering.gpt2_conv1d import is_conv1d
from ..errors import WclustError
from .pressure import STREAM_MB, Pressure

VARIANTS = ("fp32", "int8_dynamic", "clustered_fp32", "clustered_bf16", "clustered_int8")
BF16_MODEL_VARIANTS = ("dense_bf16_model", "clustered_bf16_model")


def linears_in_place_of_conv1d(model: nn.Module) -> nn.Module:
    """``model`` with each float transformers Conv1D replaced by the ``nn.Linear`` it is (weight
    transposed, the same parameters otherwise), for torch's dynamic int8 quantization, which knows
    only nn.Linear. Shared Conv1D weights are left alone."""
    from ..clustering.modules import replace_module

    counts: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        counts[id(p)] = counts.get(id(p), 0) + 1
    for fqn, m in list(model.named_modules()):
        if not is_conv1d(m) or counts.get(id(m.weight), 0) > 1:
            continue
        lin = nn.Linear(m.weight.shape[0], m.weight.shape[1], bias=m.bias is not None,
                        device=m.weight.device, dtype=m.weight.dtype)
        with torch.no_grad():
            lin.weight.copy_(m.weight.t())
            if m.bias is not None:
                lin.bias.copy_(m.bias)
        lin.train(m.training)
        replace_module(model, fqn, lin)
    return model


def int8_dynamic(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with torch's dynamic int8 quantization of every nn.Linear (and every
    transformers Conv1D, as the Linear it is)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(linears_in_place_of_conv1d(copy.deepcopy(model)), {nn.Linear}, dtype=torch.qint8)


def default_variants() -> tuple[list[str] | None, bool]:
    """(variants, bf16_models) timed by default: all, or without bf16 where this CPU lacks its
    instructions (torch emulates it there, many times slower: minutes that tell nothing new)."""
    from ..kernels import machine

    return (None, True) if machine.has_bf16() else (["int8_dynamic", "clustered_fp32", "clustered_int8"], False)


def build_variants(model: nn.Module, k: int = 64, scope: str = "layer", bf16_models: bool = False,
                   progress: bool = False) -> dict:
    """name -> (module, compute_dtype or None, input dtype or None).

    A ``model`` that is already clustered (a loaded .wclust file) is the clustered variant as it
    is (``k`` and ``scope`` unused); ``fp32`` is then its dense twin: the same architecture holding
    the dequantized weights in float32, which runs as fast as the fp32 model it came from.

    ``clustered_fp32``, ``clustered_bf16`` and ``clustered_int8`` share one module (compute_dtype
    of its clustered Linear layers switched; activations, attention and norms stay float32). With
    ``bf16_models``: ``dense_bf16_model`` (the fp32 model cast to bf16) and
    ``clustered_bf16_model`` (the clustered model cast to bf16: codebooks, norms, activations
    and attention in bf16, indices unchanged), both fed bf16 inputs.
    """
    from ..clustering.arena import consolidate
    from ..clustering.compress import compress
    from ..clustering.config import ClusterConfig
    from ..clustering.modules import clustered_modules, dense_view

    if clustered_modules(model):  # a loaded .wclust model runs as stored, against its dense twin
        clustered, model = model, dense_view(model).float()
    else:
        clustered = compress(copy.deepcopy(model), ClusterConfig(n_clusters=k, scope=scope), progress=progress)
    out = {"fp32": (model, None, None), "int8_dynamic": (int8_dynamic(model), None, None),
           "clustered_fp32": (clustered, torch.float32, None), "clustered_bf16": (clustered, torch.bfloat16, None),
           "clustered_int8": (clustered, torch.int8, None)}
    if bf16_models:
        bf = torch.bfloat16
        out["dense_bf16_model"] = (copy.deepcopy(model).to(bf), None, bf)
        out["clustered_bf16_model"] = (copy.deepcopy(clustered).to(bf), None, bf)
        consolidate(out["clustered_bf16_model"][0])  # a deep copy holds ordinary tensors
    return out


def stored_config(model: nn.Module) -> tuple:
    """(n_clusters, scope) a clustered model was made with, from its header (None where unknown)."""
    cfg = (getattr(model, "wclust_info", None) or {}).get("config") or {}
    return cfg.get("n_clusters"), cfg.get("scope")


def set_linear_compute_dtype(model: nn.Module, dtype) -> None:
    """``set_compute_dtype`` on ClusteredLinear modules only (the patch convolution stays in the
    input's dtype), the bf16 variants' setting; kept by this name for the scripts in benchmarks/."""
    from ..clustering.compute import set_compute_dtype
    from ..clustering.modules import ClusteredLinear

    set_compute_dtype(model, dtype, kinds=(ClusteredLinear,))


def _call(model, inputs):
    from ..sources.models import run

    return run(model, inputs)


def round_order(names: list, r: int, seed: int = 0) -> list:
    """The order of round ``r`` of interleaved timing: ``names`` shuffled (seeded, reproducible).
    Not a rotation: rotating keeps each candidate behind the same neighbour in almost every round,
    and a neighbour can leave the core slower for a while (e.g. after a burst of AMX work), which
    would bias one ratio."""
    order = list(names)
    random.Random(seed * 1_000_003 + r).shuffle(order)
    return order


def time_rounds(fns: dict, repeats: int = 20, warmup: int = 2, clock=time.perf_counter, before: dict | None = None,
                bar=None) -> dict:
    """Median/min latency (ms) of each callable in ``fns`` (name -> f), runs interleaved in a
    order shuffled anew each round (``round_order``); ``before[name]``, if given, runs untimed
    before each of its runs. With an
    ``fp32`` entry, speed-ups against it: the ratio of medians and the paired one.

    ``clock``: ``time.perf_counter`` (wall) or ``time.thread_time`` (CPU time of this thread: at
    one torch thread all the work runs here, and time other jobs take from the core is not counted).
    ``bar``: a progress bar (tqdm) advanced by one per run, warm-up runs included."""
    names = list(fns)
    times = {n: [] for n in names}
    before = before or {}

    def once(name):
        if name in before:
            before[name]()
        t = clock()
        fns[name]()
        t = (clock() - t) * 1e3
        if bar is not None:
            bar.update(1)
        return t

    with torch.inference_mode():
        for name in names:
            for _ in range(warmup):
                once(name)
        for r in range(repeats):
            for name in round_order(names, r):
                times[name].append(once(name))
    # runs_ms to 6 significant digits: ratios taken from them stay within ~1e-5 (tiny models too)
    out = {n: {"median_ms": statistics.median(ts), "min_ms": min(ts), "runs": len(ts),
               "runs_ms": [float(f"{t:.6g}") for t in ts]} for n, ts in times.items()}
    base = times.get("fp32")
    for n in out:
        out[n]["speedup_vs_fp32"] = (out["fp32"]["median_ms"] / out[n]["median_ms"]) if base else None
        # each round runs every variant once, back to back: the median of the per-round ratios
        # cancels load that drifts slowly between rounds (another tenant starting or stopping)
        out[n]["speedup_paired"] = statistics.median(b / t for b, t in zip(base, times[n])) if base else None
        # the least disturbed run of each: on a shared machine the closest to the uncontended speed
        out[n]["speedup_min"] = (out["fp32"]["min_ms"] / out[n]["min_ms"]) if base else None
    return out


def time_variants(variants: dict, inputs: dict, repeats: int = 20, warmup: int = 2, clock=time.perf_counter,
                  bar=None) -> dict:
    """``time_rounds`` of ``build_variants``' models on ``inputs`` (cast to each variant's input
    dtype; the clustered Linear layers' compute dtype set, untimed, before each run)."""
    cast_inputs = {idt: {key: v.to(idt) if idt is not None and torch.is_floating_point(v) else v
                         for key, v in inputs.items()} for _, _, idt in variants.values()}
    fns = {n: (lambda m=model, a=cast_inputs[idt]: _call(m, a)) for n, (model, _, idt) in variants.items()}
    before = {n: (lambda m=model, d=None if cdt == torch.float32 else cdt: set_linear_compute_dtype(m, d))
              for n, (model, cdt, _) in variants.items() if cdt is not None}
    return time_rounds(fns, repeats, warmup, clock, before, bar)


_MEM_SCRIPT = r"""
import json, resource, sys
import torch
for m in sys.argv[2:]:
    __import__(m)
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * __import__("os").sysconf("SC_PAGE_SIZE")
r0, p0 = rss(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
model = torch.load(sys.argv[1], weights_only=False)
r1, p1 = rss(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
peak = p1 - r0 if p1 > p0 else r1 - r0  # the import peak hides the load's when it is higher
print(json.dumps({"rss_mb": (r1 - r0) / 2**20, "peak_rss_mb": peak / 2**20, "baseline_rss_mb": r0 / 2**20}))
"""


def measure_memory(model: nn.Module, preload: tuple[str, ...] = ("wclust",)) -> dict:
    """Resident memory that loading ``model`` adds, in a fresh interpreter (weights part)."""
    mods = set(preload) | {type(model).__module__.split(".")[0]}
    mods |= {type(m).__module__ for m in model.modules() if type(m).__module__.startswith("transformers")}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.pt")
        torch.save(model, path)
        size = os.path.getsize(path)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        res = subprocess.run([sys.executable, "-c", _MEM_SCRIPT, path, *sorted(mods)], capture_output=True,
                             text=True, env=env, timeout=600)
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "failed"}
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["file_mb"] = size / 2**20
    return out


def param_bytes(model: nn.Module) -> int:
    """Bytes of parameters and buffers (packed int8 weights of quantized Linear layers included)."""
    total = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    for m in model.modules():
        packed = getattr(m, "_packed_params", None)
        if packed is not None and hasattr(packed, "_weight_bias"):
            w, b = packed._weight_bias()
            total += w.numel() * w.element_size() + (0 if b is None else b.numel() * b.element_size())
    return total


def run_bench(source, k: int = 64, threads: int = 1, pressure: int = 0, repeats: int | None = None,
              quick: bool = False, scope: str = "layer", memory: bool = True, inputs: dict | None = None,
              batch: int = 1, bf16_models: bool = True, clock: str = "auto", progress: bool = False,
              seq_len: int | None = None, variants: list[str] | None = None) -> dict:
    """Benchmark ``source`` (a source string or an nn.Module); a JSON-ready dict. ``progress``:
    bars on stderr for the clustering, the timed runs and the memory subprocesses. ``seq_len``:
    tokens per input of a text model (default 128; few tokens time the few-rows GEMV path).
    ``variants``: the variants to time (default all; fp32, the baseline, always).

    ``clock``: "wall", "thread" (CPU time of the calling thread; only meaningful at threads=1)
    or "auto" (thread at one thread, wall otherwise)."""
    from ..kernels import cpu, machine
    from ..sources.models import example_inputs, load_source

    model = load_source(source) if isinstance(source, str) else source
    model.eval()
    if inputs is None:
        inputs = example_inputs(model, batch=batch, **({} if seq_len is None else {"seq_len": seq_len}))
        if seq_len is not None and "input_ids" not in inputs:
            raise WclustError(f"--seq-len applies to text models; {type(model).__name__} takes {', '.join(inputs)}")
    ids = inputs.get("input_ids")
    repeats = repeats or (5 if quick else 20)
    if clock == "auto":
        clock = "thread" if threads == 1 else "wall"
    if clock not in ("wall", "thread"):
        raise ValueError(f"clock must be 'wall', 'thread' or 'auto', got {clock!r}")
    clk = time.thread_time if clock == "thread" else time.perf_counter
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    from ..clustering.arena import placed
    from ..clustering.modules import clustered_modules

    stored = bool(clustered_modules(model))
    if stored:
        k, scope = stored_config(model)
    try:
        from tqdm.auto import tqdm

        wanted = variants
        variants = build_variants(model, k, scope, bf16_models, progress)
        if wanted:
            unknown = set(wanted) - set(variants)
            if unknown:
                raise WclustError(f"unknown variant(s) {sorted(unknown)}; known: {', '.join(variants)}")
            variants = {n: v for n, v in variants.items() if n == "fp32" or n in wanted}
        warmup = 1 if quick else 2
        runs = len(variants) * (repeats + warmup) + (len(variants) * (repeats + 1) if pressure > 0 else 0)
        bar = tqdm(total=runs, desc="timing", unit="run", disable=not progress, leave=False)
        result = {
            "source": source if isinstance(source, str) else type(source).__name__,
            "n_clusters": k, "scope": scope, "stored": stored, "threads": threads, "repeats": repeats, "batch": batch,
            "seq_len": None if ids is None else int(ids.shape[-1]),
            "cpu": machine.describe(), "kernel_isa": cpu.isa(), "bf16_kernel": cpu.bf16_path(),
            "torch": torch.__version__, "clock": clock,
            "index_pages": "huge" if placed(next(m for n, (m, _, _) in variants.items() if n.startswith("clustered")
                                                 ) if len(variants) > 1 else model) else "ordinary",
            "latency": time_variants(variants, inputs, repeats, warmup=warmup, clock=clk, bar=bar),
        }
        if pressure > 0:
            bar.set_description(f"timing, {pressure} pressure workers")
            with Pressure(pressure):
                result["pressure"] = {"workers": pressure, "stream_mb": STREAM_MB,
                                      "latency": time_variants(variants, inputs, repeats, warmup=1, clock=clk, bar=bar)}
        bar.close()
        seen = {}
        result["memory"] = {}
        models = {id(m): m for m, _, _ in variants.values()}
        mbar = tqdm(total=len(models), desc="memory (a subprocess per model)", unit="model",
                    disable=not (progress and memory), leave=False)
        for name, (m, _, _) in variants.items():
            if id(m) not in seen:
                mem = {"param_mb": param_bytes(m) / 2**20}
                if memory:
                    mem.update(measure_memory(m))
                    mbar.update(1)
                seen[id(m)] = mem
            result["memory"][name] = seen[id(m)]
        mbar.close()
        base = result["memory"]["fp32"]
        for name, mem in result["memory"].items():
            for key in ("rss_mb", "param_mb"):
                if key in mem and base.get(key):
                    mem[f"{key.split('_')[0]}_vs_fp32"] = mem[key] / base[key]
    finally:
        torch.set_num_threads(old_threads)
    return result


def plot_bench(result: dict, path: str) -> str:
    """``run_bench``'s result as a figure: every timed run of each variant (dots, left to right in
    the order they ran, so drift in the machine's load shows), its median (bar) and speed-up vs
    fp32, the runs under memory pressure beside them where timed; and each variant's memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import figures

    lat, mem = result["latency"], result.get("memory", {})
    names = list(lat)
    ticks = [n.replace("_", "\n", 1) for n in names]
    sets = [("no pressure", lat, "tab:blue")]
    if "pressure" in result:
        w = result["pressure"]["workers"]
        sets.append((f"{w} memory-streaming worker{'s' * (w != 1)}", result["pressure"]["latency"], "tab:red"))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(10.0, 1.9 * len(names) + 4), 4.8),
                                   gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / len(sets)
    for s, (label, data, color) in enumerate(sets):
        for i, name in enumerate(names):
            d, x0 = data[name], i + (s - (len(sets) - 1) / 2) * width
            runs = d["runs_ms"]
            xs = [x0 + 0.8 * width * ((j + 0.5) / len(runs) - 0.5) for j in range(len(runs))]
            ax1.scatter(xs, runs, s=9, color=color, alpha=0.55, label=label if i == 0 else None)
            ax1.hlines(d["median_ms"], x0 - 0.45 * width, x0 + 0.45 * width, color="k", lw=1.5)
            ax1.annotate(f"{d['speedup_vs_fp32']:.2f}x\n({d['speedup_paired']:.2f}x)", (x0, 0),
                         textcoords="offset points", xytext=(0, 3), ha="center", va="bottom", fontsize=7)
    ax1.axhline(lat["fp32"]["median_ms"], color="gray", ls="--", lw=0.8, label="fp32 median")
    ax1.set_xticks(range(len(names)), ticks, fontsize=8)
    ax1.set_ylim(0, 1.05 * max(max(d[n]["runs_ms"]) for _, d, _ in sets for n in names))
    ax1.set_ylabel(f"latency per run, ms ({result.get('clock', 'wall')} clock)")
    ax1.set_title("every run (dots), median (bar); at the foot: speed-up vs fp32, of medians (paired)", fontsize=9)
    ax1.legend(fontsize=7, loc="best")
    bars = [("param_mb", "weights")]
    if all("rss_mb" in mem.get(n, {}) for n in names):  # measured (not --no-memory, no failed subprocess)
        bars.append(("rss_mb", "resident (loaded)"))
    for j, (key, label) in enumerate(bars):
        vals = [mem.get(n, {}).get(key, 0.0) for n in names]
        xs = [i + 0.4 * (j - (len(bars) - 1) / 2) for i in range(len(names))]
        ax2.bar(xs, vals, 0.4, label=label)
        base = mem.get("fp32", {}).get(key)
        for x, v in zip(xs, vals):
            if base:
                ax2.annotate(f"{v / base:.0%}", (x, v), textcoords="offset points", xytext=(0, 2), ha="center",
                             fontsize=7)
    ax2.set_xticks(range(len(names)), ticks, fontsize=8)
    ax2.set_ylabel("MiB")
    ax2.set_title("memory (labels: share of fp32)", fontsize=9)
    ax2.legend(fontsize=7)
    tokens = f", {result['seq_len']} tokens" if result.get("seq_len") else ""
    fig.suptitle(f"{result['source']}: k={result['n_clusters']} {result['scope']}, batch {result.get('batch', 1)}"
                 f"{tokens}, {result['threads']} thread(s), {result['repeats']} interleaved rounds, kernel "
                 f"{result.get('kernel_isa')}, bf16 {result.get('bf16_kernel')}"
                 + (f", indices in {result['index_pages']} pages" if result.get("index_pages") else ""), fontsize=10)
    fig.tight_layout()
    return figures.save(fig, path, dpi=110)
