"""Modelled time and energy of a (clustered) model on a platform: the paper's Figure 9, for any model.

A ``PlatformSpec`` holds datasheet-derived numbers, each with a source string in ``sources``:
peak fp32 rate, DRAM bandwidth, DRAM energy per byte, energy per FLOP, codebook (SRAM) access
energy, static power. ``host`` is calibrated on the running machine (a large copy, ``torch.mm``,
a small op, a codebook gather) and cached. Nothing here is fitted to the paper's results.

The model walks one forward pass (``wclust.performance.profile.trace_ops``: every matmul, convolution,
embedding, attention product and elementwise op with its FLOPs and bytes) and, per op::

    time   = overhead + max(FLOPs / rate + lookups / lookup_rate, bytes / (bandwidth * (1 - contention)))
    bytes  = weights (clusterable ones at the index width + codebooks)
             + activation_dram * activations read/written (1 = no activation stays in a cache)
    energy = DRAM J/byte * bytes + J/FLOP * FLOPs + SRAM J/access(table bytes) * lookups + static W * time

``ideal``: compute unbounded, every op memory-bound (Amdahl on the memory share): the speed-up is
the ratio of bytes moved. Public API: ``get(name)``, ``names()``, ``calibrate_host()``,
``predict(records, spec, ...)``, ``estimate(model, ...)``, ``plot_estimate(result, path)``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform as _platform
import time
from dataclasses import dataclass, field

import torch

from .. import figures
from ..atomic import atomic_write_json
from ..paths import cache_dir

DEFAULT_KS = (16, 32, 64, 128, 256)
PAPER = ("desktop-2080ti", "jetson-tx2", "jetson-xavier")

_HOROWITZ = ("Horowitz, 'Computing's energy problem', ISSCC 2014: 45 nm fp32 mult 3.7 pJ + add 0.9 pJ "
             "= 4.6 pJ per FMA (2 FLOPs) = 2.3 pJ/FLOP, scaled linearly with feature size to {nm} nm")
_SRAM = ("CACTI-style scaling of Horowitz ISSCC 2014 (8 KiB SRAM, 64-bit read, 45 nm: 10 pJ): "
         "E = 10 pJ * sqrt(table bytes / 8192) * ({nm}/45); 256 B table at {nm} nm: {e:.2f} pJ")
_STATIC = "assumption: 10% of the rated power ({w} W) is static (leakage + always-on) while running"


def _pj_flop(nm: float) -> float:
    return 2.3e-12 * nm / 45.0


@dataclass(frozen=True)
class PlatformSpec:
    name: str
    description: str
    flops_rate: float          # FLOP/s, fp32
    bandwidth: float           # DRAM bytes/s
    dram_j_per_byte: float
    j_per_flop: float
    process_nm: float          # scales the SRAM access energy
    static_w: float
    lookup_rate: float         # codebook lookups/s
    lookup_tile: int | None    # rows (tokens) that share one lookup of a weight; None = once per op
    op_overhead_s: float = 0.0
    sources: dict = field(default_factory=dict)
    # lookup rates by codebook: ((max k, index bits in memory (4 or 8), lookups/s), ...), the first
    # that fits; () = lookup_rate for every k (CPU kernels pick their lookup by k and width)
    lookup_rates: tuple = ()

    def lookup_rate_for(self, n_clusters: int | None, bits: int | None = None) -> float:
        """Lookups/s of a codebook of ``n_clusters`` stored at ``bits`` (None: ceil(log2 k))."""
        if n_clusters is None or not self.lookup_rates:
            return self.lookup_rate
        from ..clustering.packing import bits_for

        width = 4 if (bits or bits_for(n_clusters)) <= 4 else 8
        for kmax, w, rate in self.lookup_rates:
            if n_clusters <= kmax and width <= w:
                return rate
        return self.lookup_rate

    def sram_j_per_access(self, table_bytes: float) -> float:
        """Energy of one read of a ``table_bytes`` codebook (64..1024 B typical), CACTI-style sqrt scaling."""
        return 10e-12 * math.sqrt(max(table_bytes, 1.0) / 8192.0) * self.process_nm / 45.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _gpu(name, desc, cores, clock_hz, bw, bw_src, dram_pj_bit, dram_src, nm, rated_w, rated_src, extra=""):
    rate = 2.0 * cores * clock_hz
    return PlatformSpec(
        name=name, description=desc, flops_rate=rate, bandwidth=bw, dram_j_per_byte=8 * dram_pj_bit * 1e-12,
        j_per_flop=_pj_flop(nm), process_nm=nm, static_w=0.1 * rated_w, lookup_rate=cores * clock_hz,
        lookup_tile=64,
        sources={
            "flops_rate": f"{cores} CUDA cores x 2 FLOP/cycle (FMA) x {clock_hz / 1e9:.3f} GHz = "
                          f"{rate / 1e12:.2f} TFLOP/s fp32 (datasheet){extra}",
            "bandwidth": bw_src, "dram_j_per_byte": dram_src, "j_per_flop": _HOROWITZ.format(nm=nm),
            "sram": _SRAM.format(nm=nm, e=10 * math.sqrt(256 / 8192) * nm / 45),
            "static_w": _STATIC.format(w=rated_w) + f"; rated power: {rated_src}",
            "lookup_rate": "one shared-memory codebook read per CUDA core per cycle",
            "lookup_tile": "assumption: a tiled GEMM kernel loads (looks up) each weight once per 64-row tile",
            "op_overhead_s": "assumption: kernel launches are asynchronous and overlap (0 s)",
        })


# The boards' CPUs running wclust's ARM64 NEON kernels (fp32 compute), from llvm-mca on the kernels'
# inner loops (benchmarks/arm_mca.py, LLVM 16; benchmarks/results/arm_mca.json): cycles per 16 weights
# and one token. Dense fp32 sets the FLOP rate (4 fmla per 16 weights); a clustered weight costs the
# same FMAs plus its lookup, the cycles beyond dense. Lookups are counted once per weight and op
# (lookup_tile None): a GEMV for one token looks each weight up once, many rows dequantize once.
ARM_MCA_CYCLES = {
    "cortex-a57": {"f32_dense": 8.03, "f32_4bit": 24.78, "f32_8bit_k16": 22.05, "f32_8bit_k32": 26.08,
                   "f32_8bit_k64": 41.07, "f32_8bit_k256_gather": 36.04},
    "neoverse-n2": {"f32_dense": 4.02, "f32_4bit": 9.02, "f32_8bit_k16": 8.03, "f32_8bit_k32": 8.04,
                    "f32_8bit_k64": 14.04, "f32_8bit_k256_gather": 28.03},
}
_LUT_PATHS = ((16, 4, "f32_4bit"), (16, 8, "f32_8bit_k16"), (32, 8, "f32_8bit_k32"), (64, 8, "f32_8bit_k64"),
              (256, 8, "f32_8bit_k256_gather"))


def _arm_cpu(name, desc, cores, clock_hz, clock_src, model, model_note, board):
    cyc = ARM_MCA_CYCLES[model]
    hz = cores * clock_hz
    rates = tuple((kmax, w, 16 * hz / max(cyc[path] - cyc["f32_dense"], 1e-9)) for kmax, w, path in _LUT_PATHS)
    rate = 32 * hz / cyc["f32_dense"]
    g = _REGISTRY[board]
    return PlatformSpec(
        name=name, description=desc, flops_rate=rate, bandwidth=g.bandwidth, dram_j_per_byte=g.dram_j_per_byte,
        j_per_flop=g.j_per_flop, process_nm=g.process_nm, static_w=g.static_w, lookup_rate=rates[-1][2],
        lookup_tile=None, lookup_rates=rates,
        sources={
            "flops_rate": f"{cores} cores x {clock_hz / 1e9:.3f} GHz ({clock_src}) x 32 FLOP per "
                          f"{cyc['f32_dense']} cycles (llvm-mca, {model} model{model_note}: dense fp32 NEON "
                          f"loop, 16 weights) = {rate / 1e9:.1f} GFLOP/s",
            "lookup_rate": "per k and index width: 16 lookups per (NEON LUT loop - dense loop) cycles, "
                           + ", ".join(f"{p} {cyc[p]}" for _, _, p in _LUT_PATHS)
                           + " cycles per 16 weights (llvm-mca, benchmarks/arm_mca.py)",
            "bandwidth": g.sources["bandwidth"] + " (shared with the GPU)",
            "dram_j_per_byte": g.sources["dram_j_per_byte"], "j_per_flop": g.sources["j_per_flop"],
            "static_w": g.sources["static_w"], "sram": g.sources["sram"],
        })


_REGISTRY = {
    "desktop-2080ti": _gpu(
        "desktop-2080ti", "Conf-1: desktop GeForce RTX 2080 Ti (TU102, 12 nm), 11 GB GDDR6", 4352, 1.545e9,
        616e9, "352-bit GDDR6 at 14 Gbit/s = 616 GB/s (NVIDIA RTX 2080 Ti specification)", 7.5,
        "GDDR6 ~7.5 pJ/bit average device energy (Rambus/vendor GDDR6 vs HBM2E comparison tables)",
        12, 250, "250 W board power (NVIDIA reference specification)", " (reference boost clock)"),
    "jetson-tx2": _gpu(
        "jetson-tx2", "Conf-2: NVIDIA Jetson TX2 (256-core Pascal GPU, 16 nm), 8 GB LPDDR4", 256, 1.30e9,
        59.7e9, "128-bit LPDDR4 at 1866 MHz = 59.7 GB/s (Jetson TX2 module datasheet)", 5.0,
        "assumption: LPDDR4 ~5 pJ/bit (device + I/O; mobile DRAM is ~4-6 pJ/bit in public DRAM power models)",
        16, 15, "15 W max power mode (Jetson TX2 datasheet)", " (max GPU clock 1.30 GHz)"),
    "jetson-xavier": _gpu(
        "jetson-xavier", "Conf-3: NVIDIA Jetson AGX Xavier (512-core Volta GPU, 12 nm), 16 GB LPDDR4x", 512,
        1.377e9, 136.5e9, "256-bit LPDDR4x at 2133 MHz = 136.5 GB/s (Jetson AGX Xavier datasheet)", 4.0,
        "assumption: LPDDR4x ~4 pJ/bit (LPDDR4 with 0.6 V I/O; public DRAM power models)",
        12, 30, "30 W max power mode (Jetson AGX Xavier datasheet)", " (max GPU clock 1.377 GHz)"),
}


_REGISTRY["jetson-tx2-cpu"] = _arm_cpu(
    "jetson-tx2-cpu", "Jetson TX2's CPU: 4x Cortex-A57 (the 2 Denver2 cores not counted), NEON kernels, fp32",
    4, 2.0e9, "Jetson TX2 module datasheet, max CPU clock", "cortex-a57", "", "jetson-tx2")
_REGISTRY["jetson-xavier-cpu"] = _arm_cpu(
    "jetson-xavier-cpu", "Jetson AGX Xavier's CPU: 8x Carmel (ARMv8.2), NEON kernels, fp32", 8, 2.265e9,
    "Jetson AGX Xavier datasheet, max CPU clock", "neoverse-n2",
    ", the nearest LLVM has: none for Carmel", "jetson-xavier")
# a board's CPU, estimated beside its GPU when the board is named
CPU_OF = {"jetson-tx2": "jetson-tx2-cpu", "jetson-xavier": "jetson-xavier-cpu"}


def names() -> list[str]:
    return list(_REGISTRY) + ["host"]


def get(name: str) -> PlatformSpec:
    if name == "host":
        return calibrate_host()
    if name not in _REGISTRY:
        raise ValueError(f"unknown platform {name!r}; known: {', '.join(names())}")
    return _REGISTRY[name]


# -- host calibration ---------------------------------------------------------------------------
def _best_time(fn, repeats: int = 5) -> float:
    """The least disturbed of ``repeats`` timed calls (after one untimed): what the machine can do,
    which a busy neighbour only hides. One torch thread: this thread's CPU time (robust to other
    processes on a shared machine); more: wall time (a stall of one thread holds up the team)."""
    now = time.thread_time if torch.get_num_threads() == 1 else time.perf_counter
    fn()
    ts = []
    for _ in range(repeats):
        t0 = now()
        fn()
        ts.append(now() - t0)
    return min(ts)


def measure_host(threads: int | None = None) -> dict:
    """Short measurements (~2 s): copy bandwidth, torch.mm rate, small-op time, codebook gather rate."""
    from ..kernels import reference

    try:  # the dequantize the clustered model's many-row matmuls use: the C kernel when built
        from ..kernels import cpu as _cpu
        dequantize = _cpu.dequantize_into if _cpu.native() is not None else reference.dequantize
        kernel = "C dequantize (wclust.kernels.cpu)" if _cpu.native() is not None else "reference"
    except ImportError:
        dequantize, kernel = reference.dequantize, "reference"
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        n = 32 * 2**20  # 128 MiB of fp32: far larger than any cache
        src, dst = torch.ones(n), torch.empty(n)
        bw = 2 * n * 4 / _best_time(lambda: dst.copy_(src))
        del src, dst
        # 16 distinct 4 MiB weights, as in a forward pass: each one is read cold (not from a core's cache)
        x, ws = torch.randn(256, 1024), [torch.randn(1024, 1024) for _ in range(16)]
        rate = 16 * 2 * 256 * 1024 * 1024 / _best_time(lambda: [torch.mm(x, w) for w in ws], 5)
        del ws
        x = torch.randn(64)
        overhead = _best_time(lambda: [x.add(x) for _ in range(100)], 5) / 100
        idx = torch.randint(0, 64, (768, 3072), dtype=torch.uint8)
        cb = torch.randn(1, 64)
        lookups = idx.numel() / _best_time(lambda: dequantize(idx, cb, 3072, 768, 8), 5)
        return {"bandwidth": bw, "flops_rate": rate, "op_overhead_s": overhead, "lookup_rate": lookups,
                "threads": torch.get_num_threads(), "lookup_kernel": kernel,
                "clock": "thread CPU time" if torch.get_num_threads() == 1 else "wall"}
    finally:
        torch.set_num_threads(old)


def _cache_path() -> str:
    return cache_dir("host_calibration.json")


_HOST: dict = {}
HOST_MEASUREMENTS = 3  # a new process measures again (keeping the best) until the cache holds this many


def calibrate_host(threads: int | None = None, force: bool = False) -> PlatformSpec:
    """The running machine, calibrated by ``measure_host`` once per (cpu, threads, torch) and cached."""
    threads = threads or torch.get_num_threads()
    try:
        from ..kernels import cpu as _cpu
        native = _cpu.native() is not None
    except ImportError:
        native = False
    key = (f"{_platform.machine()}|{_platform.processor() or os.uname().nodename}|{threads}|{torch.__version__}"
           f"|native={native}|v4")
    if not force and key in _HOST:
        return _HOST[key]
    path, cache = _cache_path(), {}
    try:
        with open(path) as f:
            cache = json.load(f)
    except (OSError, ValueError):
        cache = {}
    keys = ("bandwidth", "flops_rate", "op_overhead_s", "lookup_rate")
    m = cache.get(key)
    valid = isinstance(m, dict) and all(isinstance(m.get(k), (int, float)) for k in keys)
    if force or not valid or m.get("n_measurements", 1) < HOST_MEASUREMENTS:
        new = measure_host(threads)
        if valid:  # the machine's capability: the best seen (a busy shared machine only slows a measurement)
            new.update({k: max(m[k], new[k]) for k in ("bandwidth", "flops_rate", "lookup_rate")},
                       op_overhead_s=min(m["op_overhead_s"], new["op_overhead_s"]))
        new["n_measurements"] = (m.get("n_measurements", 1) if valid else 0) + 1
        cache[key] = m = new
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic_write_json(path, cache)
        except OSError:
            pass
    spec = host_spec(m, threads, f"{path} (best of {m.get('n_measurements', 1)} measurement(s))")
    _HOST[key] = spec
    return spec


def host_spec(m: dict, threads: int, origin: str = "measured now") -> PlatformSpec:
    """A ``host`` PlatformSpec from ``measure_host``'s numbers."""
    nm = 14
    return PlatformSpec(
        name="host", description=f"this machine ({_platform.machine()}, {threads} thread(s)), calibrated",
        flops_rate=m["flops_rate"], bandwidth=m["bandwidth"], dram_j_per_byte=8 * 15e-12,
        j_per_flop=_pj_flop(nm), process_nm=nm, static_w=2.0 * threads, lookup_rate=m["lookup_rate"],
        lookup_tile=None, op_overhead_s=m["op_overhead_s"],
        sources={
            "flops_rate": "measured: fastest of 5 torch.mm (256x1024)@(1024x1024) fp32 over 16 distinct weights",
            "bandwidth": "measured: fastest of 5 copies of 128 MiB fp32 (read + write bytes)",
            "op_overhead_s": "measured: fastest of 5 x 100 64-element torch adds (dispatch cost per op)",
            "lookup_rate": f"measured: fastest of 5 dequantizes of a 768x3072 uint8 weight, k=64 ({m.get('lookup_kernel')})",
            "lookup_tile": "the CPU kernel dequantizes each weight once per call when x has > 8 rows "
                           "(its few-row GEMV path is not modelled separately)",
            "dram_j_per_byte": "assumption: DDR4/DDR5 ~15 pJ/bit (device + I/O); not measured",
            "j_per_flop": _HOROWITZ.format(nm=nm) + " (assumed process)",
            "sram": _SRAM.format(nm=nm, e=10 * math.sqrt(256 / 8192) * nm / 45),
            "static_w": "assumption: 2 W static per busy core; not measured",
            "calibration": origin,
        })


# -- the model ----------------------------------------------------------------------------------
def op_costs(rec: dict, n_clusters: int | None = None, bits: int | None = None) -> dict:
    """FLOPs, DRAM bytes, codebook lookups and table bytes of one traced op, with its clusterable
    weights as fp32 (``n_clusters=None``) or as ``bits``-wide indices + one fp32 codebook per tensor."""
    flops = rec["flops"]
    wbytes = rec["weight_bytes"]
    lookups = table = 0
    cn = rec.get("clusterable_numel", 0)
    if n_clusters is not None and cn:
        from ..clustering.packing import bits_for

        b = bits or bits_for(n_clusters)
        table = 4 * n_clusters
        wbytes = wbytes - 4 * cn + math.ceil(cn * b / 8) + table * rec.get("n_clusterable", 1)
        lookups = cn
    reuse = flops / (2 * cn) if cn and rec["group"] in ("matmul", "convolution") else 1.0
    return {"flops": flops, "weight_bytes": wbytes, "act_bytes": rec["act_bytes"], "lookups": lookups,
            "table_bytes": table, "reuse": max(1.0, reuse)}


def predict(records: list[dict], spec: PlatformSpec, n_clusters: int | None = None, bits: int | None = None,
            contention: float = 0.0, activation_dram: float = 1.0) -> dict:
    """Modelled time (s), energy (J) with its components, bytes and memory-bound share of one forward.
    ``activation_dram``: share of activation bytes that go to DRAM (1: none stay in on-chip caches)."""
    if not 0.0 <= contention < 1.0:
        raise ValueError(f"contention must be in [0, 1), got {contention}")
    if not 0.0 <= activation_dram <= 1.0:
        raise ValueError(f"activation_dram must be in [0, 1], got {activation_dram}")
    bw = spec.bandwidth * (1.0 - contention)
    lookup_rate = spec.lookup_rate_for(n_clusters, bits)
    t = e_dram = e_flop = e_sram = ideal = t_mem_bound = 0.0
    n_bytes = flops = lookups = 0
    for r in records:
        c = op_costs(r, n_clusters, bits)
        b = c["weight_bytes"] + activation_dram * c["act_bytes"]
        lk = c["lookups"] * (math.ceil(c["reuse"] / spec.lookup_tile) if spec.lookup_tile else 1)
        compute = c["flops"] / spec.flops_rate + lk / lookup_rate
        memory = b / bw
        op_t = spec.op_overhead_s + max(compute, memory)
        t += op_t
        if memory >= compute:
            t_mem_bound += op_t
        ideal += memory
        n_bytes += b
        flops += c["flops"]
        lookups += lk
        e_dram += spec.dram_j_per_byte * b
        e_flop += spec.j_per_flop * c["flops"]
        e_sram += spec.sram_j_per_access(c["table_bytes"]) * lk
    e_static = spec.static_w * t
    energy = {"dram": e_dram, "compute": e_flop, "codebook_sram": e_sram, "static": e_static}
    return {"time_s": t, "energy_j": sum(energy.values()), "energy": energy, "bytes": n_bytes, "flops": flops,
            "lookups": lookups, "ideal_time_s": ideal, "memory_bound_share": t_mem_bound / t if t else 0.0}


def estimate(model, platforms=PAPER, ks=DEFAULT_KS, contention: float = 0.0, bits: int | None = None,
             activation_dram: float = 1.0,
             batch: int = 1, inputs: dict | None = None, records: list[dict] | None = None) -> dict:
    """Speed-up and energy of clustered versions of ``model`` (k in ``ks``) vs its fp32 baseline,
    per platform, plus the ideal case. A clustered model is estimated from its dequantized copy."""
    from ..clustering.modules import clustered_modules, dense_view
    from ..sources.models import example_inputs
    from .profile import trace_ops

    if records is None:
        if clustered_modules(model):
            model = dense_view(model, torch.float32)
        inputs = inputs if inputs is not None else example_inputs(model, batch)
        records = trace_ops(model, inputs)
    plats = [p if isinstance(p, PlatformSpec) else get(p) for p in platforms]
    ks = [int(k) for k in ks]
    out = {"model": type(model).__name__, "batch": batch, "bits": bits, "contention": contention, "ks": ks,
           "activation_dram": activation_dram,
           "totals": {"n_ops": len(records), "flops": sum(r["flops"] for r in records),
                      "weight_bytes_fp32": sum(r["weight_bytes"] for r in records),
                      "clusterable_weights": sum(r.get("clusterable_numel", 0) for r in records),
                      "activation_bytes": sum(r["act_bytes"] for r in records)},
           "platforms": {}}
    for spec in plats:
        base = predict(records, spec, None, bits, contention, activation_dram)
        per_k = {}
        for k in ks:
            p = predict(records, spec, k, bits, contention, activation_dram)
            p["speedup"] = base["time_s"] / p["time_s"]
            p["speedup_ideal"] = base["ideal_time_s"] / p["ideal_time_s"]
            p["energy_rel"] = p["energy_j"] / base["energy_j"]
            p["energy_saving_pct"] = 100.0 * (1.0 - p["energy_rel"])
            p["energy_change_pct"] = -p["energy_saving_pct"]
            p["time_saving_pct"] = 100.0 * (1.0 - p["time_s"] / base["time_s"])
            per_k[str(k)] = p
        out["platforms"][spec.name] = {"spec": spec.to_dict(), "fp32": base, "k": per_k}
    return out


def plot_estimate(result: dict, path: str) -> str:
    """Figure-9-like bars: speed-up (modelled and ideal) and normalized energy per platform and k."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plats = list(result["platforms"])
    ks = [str(k) for k in result["ks"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(8, 2.2 * len(plats) + 4), 4.2))
    width = 0.8 / max(1, len(ks))
    for i, k in enumerate(ks):
        xs = [j + (i - (len(ks) - 1) / 2) * width for j in range(len(plats))]
        sp = [result["platforms"][p]["k"][k]["speedup"] for p in plats]
        ideal = [result["platforms"][p]["k"][k]["speedup_ideal"] for p in plats]
        en = [result["platforms"][p]["k"][k]["energy_rel"] for p in plats]
        bars = ax1.bar(xs, sp, width, label=f"k={k}")
        ax1.scatter(xs, ideal, marker="_", s=200, color="k",
                    label="ideal (compute unbounded)" if i == 0 else None)
        ax2.bar(xs, en, width, label=f"k={k}")
    for ax, title, ylabel in ((ax1, "Speed-up vs fp32", "speed-up (x, fp32 = 1)"),
                              (ax2, "Energy vs fp32", "energy (fraction of fp32)")):
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(range(len(plats)), plats, rotation=15)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7, ncol=3, loc="upper center")
    ax1.set_ylim(0, 1.4 * max([1.0] + [v["speedup_ideal"] for d in result["platforms"].values()
                                        for v in d["k"].values()]))
    ax2.set_ylim(0, 1.4 * max([1.0] + [v["energy_rel"] for d in result["platforms"].values()
                                        for v in d["k"].values()]))
    bits = result.get("bits") or "ceil(log2 k)"
    fig.suptitle(f"{result['model']}, batch {result['batch']}: modelled, index bits {bits}, "
                 f"contention {result['contention']:.0%}, activations to DRAM "
                 f"{result.get('activation_dram', 1.0):.0%}", fontsize=10)
    fig.tight_layout()
    return figures.save(fig, path, dpi=110)
