"""The C library's API: csrc/wclust.h against the ctypes tables that call it, and the symbols the
built library exports (hidden visibility: the header's functions and nothing else)."""
import ctypes
import shutil
import subprocess

import pytest

from wclust import _native
from wclust.kernels import cpu


def tables() -> dict:
    """Every ctypes signature table of the package, merged (each name declared once)."""
    merged = {}
    for t in (_native._SIGNATURES, cpu._SIGNATURES):
        assert not set(merged) & set(t), "a C function declared in two tables"
        merged.update(t)
    return merged


def test_every_table_matches_the_header():
    assert _native.signature_mismatches(tables()) == []


def test_every_header_function_has_a_signature():
    assert sorted(set(_native.header_functions()) - set(tables())) == []


def test_the_check_catches_an_altered_signature():
    t = dict(tables())
    res, args = t["wc_lut_gemv_f32"]
    t["wc_lut_gemv_f32"] = (res, [args[0], ctypes.c_int] + args[2:])  # in_features as int, not int64_t
    res2, args2 = t["wc_assign"]
    t["wc_assign"] = (res2, args2[:-1])  # an argument dropped
    t["wc_hist_compact"] = (ctypes.c_int64, [ctypes.POINTER(ctypes.c_float)] * 3)  # double* given as float*
    t["wc_no_such"] = (None, [])
    found = _native.signature_mismatches(t)
    assert any(m.startswith("wc_lut_gemv_f32: argument 2: int64_t") for m in found)
    assert any(m.startswith("wc_assign: 8 arguments") for m in found)
    assert any(m.startswith("wc_hist_compact: argument 1: double *") for m in found)
    assert "wc_no_such: not in wclust.h" in found


def test_header_parse_of_a_hand_written_prototype(tmp_path):
    h = tmp_path / "h.h"
    h.write_text("/* WC_API int commented(void); */\nWC_API const float *wc_x(const uint8_t *idx, int64_t n,\n"
                 "    double *out /* a comment */);\nWC_API void wc_y(void);\nint wc_private(int);\n")
    assert _native.header_functions(str(h)) == {
        "wc_x": ("const float *", ["const uint8_t *", "int64_t", "double *"]), "wc_y": ("void", [])}


def test_library_exports_exactly_the_header():
    lib = _native.lib()
    if lib is None:
        pytest.skip("the C library is not built here")
    if shutil.which("nm") is None:
        pytest.skip("no nm (binutils) to list the library's symbols")
    out = subprocess.run(["nm", "-D", "--defined-only", lib._name], capture_output=True, text=True, check=True)
    exported = {line.split()[-1] for line in out.stdout.splitlines() if line.split()[1:2] == ["T"]}
    assert exported == set(_native.header_functions())
