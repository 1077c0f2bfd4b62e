"""The Triton kernels compiled ahead of time for the H200 (sm_90), with no GPU: triton's passes,
LLVM and the ptxas shipped in the triton wheel. The interpreted tests check values; these check
what only a real build shows: that every launched variant builds, spills no registers, fits in
shared memory, keeps float32 exact (no tf32 tensor-core math) and puts bf16 / fp16 on the tensor
cores."""
import pytest

from wclust.kernels import triton_aot, triton_lut

pytestmark = pytest.mark.skipif(not triton_aot.available(), reason="triton's NVIDIA backend / ptxas not installed")

H100_SMEM = 227 * 1024  # shared memory one block may use on sm_90
DEFAULT = (32, 64, 64)  # lut_linear_triton's default blocks


def _check_builds(r):
    assert r["registers"] <= 255 and r["spill_bytes"] == 0, r
    assert 0 <= r["shared_bytes"] <= H100_SMEM, r


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("four", [False, True])
def test_gemv_builds_for_sm90(dtype, four):
    r = triton_aot.compile_variant("gemv", dtype, four, DEFAULT)
    _check_builds(r)
    assert r["arch"] == "sm_90" and r["mma"] == "none" and not r["tf32"], r


@pytest.mark.parametrize("four", [False, True])
def test_fp32_gemm_stays_exact_on_sm90(four):
    """float32 x: IEEE float32 products (FMA), never tf32 on the tensor cores."""
    r = triton_aot.compile_variant("gemm", "fp32", four, DEFAULT)
    _check_builds(r)
    assert r["mma"] == "none" and not r["tf32"], r


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("four", [False, True])
def test_low_precision_gemm_uses_tensor_cores(dtype, four):
    r = triton_aot.compile_variant("gemm", dtype, four, DEFAULT)
    _check_builds(r)
    assert r["mma"] in ("mma", "wgmma") and not r["tf32"], r
    # 64-row tiles: Hopper's warp-group MMA
    r = triton_aot.compile_variant("gemm", dtype, four, (64, 64, 64))
    _check_builds(r)
    assert r["mma"] == "wgmma", r


def test_four_bit_loads_each_index_byte_once():
    """4-bit tiles need about the registers and no more shared memory than 8-bit ones: each byte is
    loaded once and its two halves multiplied apart (with triton 3.9, loading it per feature took 168
    registers against 64, and interleaving the halves back into feature order went through 32 KB of
    shared memory; the margins allow for other triton versions: 3.6 gives 155 registers against 128,
    and 4 KB of shared memory against 2 KB for the GEMV's two reductions)."""
    for kernel, blocks in (("gemv", (1, 64, 64)), ("gemv", (1, 128, 64)), ("gemm", (32, 64, 64))):
        eight = triton_aot.compile_variant(kernel, "bf16", False, blocks)
        four = triton_aot.compile_variant(kernel, "bf16", True, blocks)
        assert four["spill_bytes"] == 0, four
        assert four["registers"] <= 1.25 * eight["registers"], (eight, four)
        assert four["shared_bytes"] <= eight["shared_bytes"] + 4096, (eight, four)  # a second reduction's scratch


def test_launch_options_are_the_compiled_ones():
    r = triton_aot.compile_variant("gemv", "fp32", False, DEFAULT, num_warps=8)
    assert r["num_warps"] == 8
    assert triton_aot.compile_variant("gemv", "fp32", False, DEFAULT)["num_warps"] == \
        triton_lut.LAUNCH_OPTIONS["num_warps"]
    with pytest.raises(ValueError, match="no such variant"):
        triton_aot.compile_variant("conv", "fp32")
