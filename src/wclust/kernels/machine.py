"""What this machine is, for the kernel choice and beside every measured figure: the CPU model and
the features the kernels care about (from /proc/cpuinfo on Linux, the platform module elsewhere)."""
from __future__ import annotations

import os
import platform
from functools import lru_cache

# the features that decide which kernel runs (x86 and ARM names as /proc/cpuinfo spells them)
FEATURES = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vbmi", "avx512_vnni", "avx512_bf16",
            "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "asimddp", "i8mm", "sve", "bf16")


@lru_cache(maxsize=None)
def cpu() -> dict:
    """{"model": ..., "arch": ..., "cores": n, "features": [the FEATURES this CPU has]}"""
    model, flags, family = platform.processor() or "?", set(), {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model name") and model in ("?", "", platform.machine()):
                    model = val.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(val.split())
                elif key in ("cpu family", "model") and key not in family:
                    family[key] = val.strip()
                elif key == "CPU part" and model in ("?", "", platform.machine()):
                    model = f"ARM part {val.strip()}"
    except OSError:
        pass
    if family.get("cpu family") and family.get("model"):  # a hypervisor may hide the name: these tell the core
        model = f"{model}, family {family['cpu family']} model {family['model']}"
    return {"model": model, "arch": platform.machine(), "cores": os.cpu_count(),
            "features": [f for f in FEATURES if f in flags]}


def describe() -> str:
    """One line: the CPU model and its kernel-relevant features."""
    c = cpu()
    return f"{c['model']} ({c['arch']}, {c['cores']} cores; {' '.join(c['features']) or 'no SIMD features listed'})"


def has_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16, AMX-BF16, ARM BF16): elsewhere
    torch emulates it, many times slower than float32."""
    return bool({"avx512_bf16", "amx_bf16", "bf16"} & set(cpu()["features"]))
