"""ctypes binding of the package's plain-C library (built by setup.py as ``wclust._libwclust``).

``lib()`` returns the loaded library or ``None`` when it was not built (no C compiler) or is
disabled with ``WCLUST_NO_NATIVE=1``; every caller has a NumPy/PyTorch fallback. The library's
C API is ``csrc/wclust.h`` (``header_functions`` reads it): a library that lacks one of its
functions is a stale build, and ``lib()`` says so once, naming what is missing.
"""
from __future__ import annotations

import ctypes
import glob
import os
import re
import warnings
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


HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc", "wclust.h")


@lru_cache(maxsize=None)
def header_functions(path: str = HEADER) -> dict[str, tuple[str, list[str]]]:
    """Every function wclust.h exports: name -> (return type, [argument types]), types as written
    in C without parameter names (``const float *``, ``int64_t``, ...)."""
    with open(path) as f:
        text = re.sub(r"/\*.*?\*/", " ", f.read(), flags=re.S)
    out = {}
    for ret, name, args in re.findall(r"WC_API\s+([\w\s]+?\**)\s*(\w+)\s*\(([^)]*)\)\s*;", text):
        types = []
        for a in args.split(","):
            a = " ".join(a.split())
            if a in ("", "void"):
                continue
            m = re.match(r"(.*?)(\w+)$", a)  # drop the parameter's name
            types.append(" ".join(m.group(1).replace("*", " * ").split()))
        out[name] = (" ".join(ret.replace("*", " * ").split()), types)
    return out


def _warn(msg: str) -> None:
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


@lru_cache(maxsize=None)
def lib() -> ctypes.CDLL | None:
    """The C library, or None (not built, not loadable, a stale build, or WCLUST_NO_NATIVE=1); the
    reasons other than WCLUST_NO_NATIVE are said once in a warning: the fallbacks are 20-30x slower."""
    if os.environ.get("WCLUST_NO_NATIVE", "") not in ("", "0"):
        return None
    here = os.path.dirname(os.path.abspath(__file__))
    paths = sorted(glob.glob(os.path.join(here, "_libwclust*.so")) + glob.glob(os.path.join(here, "_libwclust*.pyd")))
    for path in paths:
        try:
            cdll = ctypes.CDLL(path)
        except OSError as e:
            _warn(f"wclust: cannot load its C library {os.path.basename(path)} ({e}); running the slow reference "
                  "kernels (20-30x slower): rebuild with `pip install -e .` or `python setup.py build_ext --inplace`")
            continue
        missing = [n for n in header_functions() if getattr(cdll, n, None) is None]
        if missing:
            _warn(f"wclust: its C library {os.path.basename(path)} is a stale build without {', '.join(missing)}; "
                  "running the slow reference kernels (20-30x slower): rebuild with `pip install -e .` or "
                  "`python setup.py build_ext --inplace`")
            return None
        declare(cdll, _SIGNATURES)
        return cdll
    if not paths:
        _warn("wclust: its C library was not built (no C compiler at install?); running the slow reference "
              "kernels (20-30x slower)")
    return None


def ptr(a: np.ndarray | None, ctype=None):
    """ctypes pointer to a contiguous NumPy array's data (None stays a NULL pointer)."""
    if a is None:
        return None
    assert a.flags["C_CONTIGUOUS"], "native kernels need contiguous arrays"
    if ctype is None:
        ctype = {np.float32: c_f32p, np.float64: c_f64p, np.uint8: c_u8p}[a.dtype.type]
    return a.ctypes.data_as(ctype)


_SCALARS = {"int": ctypes.c_int, "int64_t": ctypes.c_int64, "double": ctypes.c_double, "float": ctypes.c_float,
            "void": None}
_POINTEES = {ctypes.c_float: "float", ctypes.c_double: "double", ctypes.c_uint8: "uint8_t",
             ctypes.c_int64: "int64_t", ctypes.c_uint16: "uint16_t", ctypes.c_int8: "int8_t",
             ctypes.c_int32: "int32_t"}


def _mismatch(c_type: str, py_type) -> str | None:
    """Why a ctypes type cannot stand for a C type (None where it can)."""
    if "*" not in c_type:
        want = _SCALARS.get(c_type)
        return None if py_type is want and c_type in _SCALARS else f"{c_type} given as {py_type}"
    if py_type is ctypes.c_void_p:
        return None
    if py_type is ctypes.c_char_p:
        return None if c_type.replace("const ", "") == "char *" else f"{c_type} given as c_char_p"
    pointee = getattr(py_type, "_type_", None)
    if isinstance(py_type, type) and issubclass(py_type, ctypes._Pointer) and pointee in _POINTEES:
        base = c_type.replace("const ", "").replace("*", "").strip()
        return None if _POINTEES[pointee] == base and c_type.count("*") == 1 else f"{c_type} given as {py_type.__name__}"
    return f"{c_type} given as {py_type}"


def signature_mismatches(tables: dict, header: dict | None = None) -> list[str]:
    """Differences between ctypes signature tables (name -> (restype, [argtypes])) and wclust.h:
    names the header lacks, argument counts, and types that cannot stand for the C ones."""
    header = header_functions() if header is None else header
    out = []
    for name, (res, args) in tables.items():
        if name not in header:
            out.append(f"{name}: not in wclust.h")
            continue
        c_res, c_args = header[name]
        why = _mismatch(c_res, res)
        if why:
            out.append(f"{name}: returns {why}")
        if len(c_args) != len(args):
            out.append(f"{name}: {len(args)} arguments, wclust.h has {len(c_args)}")
            continue
        for i, (c, py) in enumerate(zip(c_args, args)):
            why = _mismatch(c, py)
            if why:
                out.append(f"{name}: argument {i + 1}: {why}")
    return out
