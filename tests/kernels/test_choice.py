"""The kernel-choice table (kernels/choice.py), as a table: hand-written cases and their kernels."""
import pytest

from wclust.kernels import choice, cpu
from wclust.kernels.choice import Case, choose

ZEN3 = Case(isa="avx2")                                   # AVX2, no AVX-512, no AMX
ZEN4 = Case(isa="avx512-vbmi", onednn_packed=True)         # AVX-512 VBMI, no AMX
SPR = Case(isa="avx512-vbmi", amx=True, onednn_packed=True)  # with AMX


def kernel(base: Case, compute: str, rows: int, bits: int = 8, k: int = 64, device: str = "cpu") -> str:
    return choose(Case(device, base.isa, compute, rows, bits, k, base.amx, base.onednn_packed))


@pytest.mark.parametrize("base,compute,rows,k,want", [
    (ZEN3, "fp32", 1, 64, "gemv"), (ZEN3, "fp32", 12, 64, "gemv"), (ZEN3, "fp32", 13, 64, "dequantize+matmul"),
    (ZEN4, "fp32", 8, 64, "gemv"), (ZEN4, "fp32", 9, 64, "fused-gemm"), (SPR, "fp32", 197, 256, "fused-gemm"),
    (ZEN3, "bf16", 197, 64, "dequantize+matmul"), (ZEN4, "bf16", 197, 64, "onednn-packed"),
    (SPR, "bf16", 3, 64, "gemv-bf16"), (SPR, "bf16", 4, 64, "amx-bf16"), (SPR, "bf16", 2, 256, "amx-bf16"),
    (SPR, "bf16", 384, 64, "amx-bf16"), (SPR, "bf16", 385, 64, "onednn-packed"), (ZEN4, "bf16", 12, 64, "gemv-bf16"),
    (ZEN3, "int8", 1, 64, "int8-gemv"), (ZEN3, "int8", 8, 256, "int8-gemv"), (ZEN3, "int8", 9, 16, "int8-gemm"),
    (SPR, "int8", 197, 64, "int8-gemm"), (Case(isa="portable-c"), "int8", 197, 64, "int8-gemm"),
    (Case(isa="reference"), "fp32", 1, 64, "reference"), (Case(isa="reference"), "int8", 1, 64, "reference-int8"),
])
def test_cases(base, compute, rows, k, want):
    assert kernel(base, compute, rows, k=k) == want


def test_cuda_rows():
    assert kernel(ZEN3, "fp32", 8, device="cuda") == "triton-gemv"
    assert kernel(ZEN3, "bf16", 9, device="cuda") == "triton-gemm"
    assert kernel(ZEN3, "int8", 1, device="cuda") == "reference-int8"


def test_every_kernel_is_described_and_the_table_covers_each_case():
    rows = choice.table(SPR)
    assert {r["kernel"] for r in rows} <= set(choice.KERNELS)
    assert len(rows) == 3 * 3 * 5
    assert all(choose(Case("cpu", SPR.isa, r["compute"], r["rows"], r["index_bits"], r["k"], True, True)) == r["kernel"]
               for r in rows)


def test_this_machine_agrees_with_what_runs():
    """the case filled from the running state names the ISA the C library reports"""
    c = cpu.case(197, 8, 64, "bf16")
    assert c.isa == cpu.isa() and c.amx == cpu.amx_available()
    assert cpu.bf16_path() == choose(c)


def test_the_int8_entry_follows_the_table():
    """kernels/int8 picks its C entry by the table's int8 rule without building a Case per call"""
    from wclust.kernels import int8

    if cpu.native() is None:
        pytest.skip("the C library is not built here")
    lib = cpu.native()
    for m in (1, choice.INT8_GEMV_MAX_ROWS, choice.INT8_GEMV_MAX_ROWS + 1, 197):
        gemv = choose(cpu.case(m, 8, 64, "int8")) == "int8-gemv"
        assert int8._entry(m) is (lib.wc_lut_plan_gemv_i8 if gemv else lib.wc_lut_plan_gemm_i8)
