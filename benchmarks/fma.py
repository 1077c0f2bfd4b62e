"""The core's float32 FMA ceiling, for benchmarks that time a GEMM beside it (gemm.py).

``peak(flops)`` runs at least ``flops`` float32 operations as independent FMA chains with no
memory traffic (csrc/fma_peak.c, built here on first use with the system C compiler into
``build/bench``; it is a benchmark probe, not part of the shipped library) and returns how many ran.
``python benchmarks/fma.py`` checks that it runs the work asked, at every vector width.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
from functools import lru_cache

HERE = os.path.dirname(os.path.abspath(__file__))


@lru_cache(maxsize=None)
def _lib() -> ctypes.CDLL | None:
    out_dir = os.path.join(HERE, "..", "build", "bench")
    os.makedirs(out_dir, exist_ok=True)
    src, so = os.path.join(HERE, "csrc", "fma_peak.c"), os.path.join(out_dir, "libfma_peak.so")
    if not os.path.exists(so) or os.path.getmtime(so) < os.path.getmtime(src):
        cc = os.environ.get("CC", "cc")
        try:
            subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", so + ".tmp", src], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            return None
        os.replace(so + ".tmp", so)
    lib = ctypes.CDLL(so)
    lib.wc_fma_peak.restype, lib.wc_fma_peak.argtypes = ctypes.c_int64, [ctypes.c_int64, ctypes.c_int]
    return lib


def peak(flops: int, lanes: int = 0) -> int | None:
    """Run >= flops float32 operations as FMA chains (lanes: 16, 8, 1, or 0 = the widest here);
    how many ran, or None without a C compiler."""
    lib = _lib()
    return None if lib is None else int(lib.wc_fma_peak(int(flops), int(lanes)))


if __name__ == "__main__":
    for lanes in (1, 8, 16):
        per_iter = 2 * 24 * lanes
        ran = [peak(f, lanes) for f in (0, 1, per_iter, 10 * per_iter + 1, 123_457)]
        print(lanes, ran)
