"""ctypes binding of the package's plain-C library (built by setup.py as ``wclust._libwclust``).

``lib()`` returns the loaded library or ``None`` when it was not built (no C compiler) or is
disabled with ``WCLUST_NO_NATIVE=1``; every caller has a NumPy/PyTorch fallback.
"""
from __future__ import annotations

import ctypes
import glob
import os
from functools import lru_cache

import numpy as np

c_f32p = ctypes.POINTER(ctypes.c_float)
c_f64p = ctypes.POINTER(ctypes.c_double)
c_u8p = ctypes.POINTER(ctypes.c_uint8)
c_i64 = ctypes.c_int64

_SIGNATURES = {
    "wc_key_shift": (ctypes.c_int, []),
    "wc_nkeys": (c_i64, []),
    "wc_hist_accumulate": (c_i64, [c_f32p, c_f32p, c_i64, c_f64p, c_f64p, c_f64p]),
    "wc_hist_compact": (c_i64, [c_f64p, c_f64p, c_f64p]),
    "wc_kmeans_dp": (ctypes.c_double, [c_f64p, c_f64p, c_f64p, c_i64, ctypes.c_int, c_f64p]),
    "wc_build_lut": (None, [c_f32p, ctypes.c_int, c_u8p]),
    "wc_assign": (c_i64, [c_f32p, c_f32p, c_i64, c_u8p, c_f32p, ctypes.c_int, c_f32p, c_u8p, c_f64p]),
}


def declare(cdll: ctypes.CDLL, signatures: dict) -> None:
    """Set restype/argtypes for each name present in the library."""
    for name, (res, args) in signatures.items():
        fn = getattr(cdll, name, None)
        if fn is not None:
            fn.restype = res
            fn.argtypes = args


@lru_cache(maxsize=None)
def lib() -> ctypes.CDLL | None:
    if os.environ.get("WCLUST_NO_NATIVE", "") not in ("", "0"):
        return None
    here = os.path.dirname(os.path.abspath(__file__))
    for path in sorted(glob.glob(os.path.join(here, "_libwclust*.so")) + glob.glob(os.path.join(here, "_libwclust*.pyd"))):
        try:
            cdll = ctypes.CDLL(path)
        except OSError:
            continue
        declare(cdll, _SIGNATURES)
        return cdll
    return None


def ptr(a: np.ndarray | None, ctype=None):
    """ctypes pointer to a contiguous NumPy array's data (None stays a NULL pointer)."""
    if a is None:
        return None
    assert a.flags["C_CONTIGUOUS"], "native kernels need contiguous arrays"
    if ctype is None:
        ctype = {np.float32: c_f32p, np.float64: c_f64p, np.uint8: c_u8p}[a.dtype.type]
    return a.ctypes.data_as(ctype)
