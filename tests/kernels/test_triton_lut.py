"""The Triton LUT kernels against the reference, on CPU tensors under TRITON_INTERPRET=1.

Triton reads TRITON_INTERPRET when it is imported, so the checks run in a subprocess.
"""
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

SCRIPT = textwrap.dedent(r"""
    import itertools, sys
    import torch
    from wclust.kernels import reference, triton_lut
    from wclust.clustering.packing import pack_rows_4bit

    assert triton_lut.AVAILABLE
    torch.manual_seed(0)
    cases = [  # (M, out, in, k, bits, n_groups, dtype, bias)
        (1, 37, 45, 16, 4, 1, torch.float32, True),
        (3, 70, 130, 256, 8, 3, torch.float32, False),
        (1, 5, 1, 2, 1, 1, torch.float32, True),
        (2, 33, 67, 5, 3, 2, torch.float32, True),
        (20, 37, 45, 16, 4, 2, torch.float32, True),
        (20, 70, 130, 200, 8, 3, torch.bfloat16, True),
        (17, 40, 64, 64, 6, 1, torch.float32, False),
        (2, 70, 130, 100, 7, 1, torch.bfloat16, False),
        (18, 19, 33, 32, 5, 4, torch.float16, True),
    ]
    for m, out, inn, k, bits, ng, dt, has_bias in cases:
        idx = torch.randint(0, k, (out, inn), dtype=torch.uint8)
        ib = 4 if bits <= 4 else 8
        if ib == 4:
            idx = torch.from_numpy(pack_rows_4bit(idx.numpy()))
        gs = -(-out // ng)
        cb = torch.randn(ng, k)
        x = torch.randn(m, inn).to(dt)
        bias = torch.randn(out) if has_bias else None
        y = triton_lut.lut_linear_triton(x, idx, cb, bias, inn, gs, ib, block_m=16, block_n=32, block_k=32)
        ref = reference.lut_linear(x.double(), idx, cb.to(dt).double(),
                                   None if bias is None else bias.to(dt).double(), inn, gs, ib)
        assert y.dtype == dt and y.shape == ref.shape, (y.dtype, y.shape)
        tol = (1e-5 if dt == torch.float32 else 2e-2) * (ref.abs().max().item() + 1)
        err = (y.double() - ref).abs().max().item()
        assert err <= tol, (m, out, inn, k, bits, dt, err, tol)
    # leading dimensions, and the fallback for a layout the kernel does not take
    x = torch.randn(2, 3, 45)
    idx = torch.randint(0, 16, (37, 45), dtype=torch.uint8)
    cb = torch.randn(1, 16)
    y = triton_lut.lut_linear_triton(x, idx, cb, None, 45, 37, 8, block_m=16, block_n=32, block_k=32)
    assert y.shape == (2, 3, 37)
    assert torch.allclose(y, reference.lut_linear(x, idx, cb, None, 45, 37, 8), atol=1e-5)
    # either path on any number of rows
    for m, path in ((20, "gemv"), (1, "gemm"), (5, "gemm")):
        x = torch.randn(m, 45)
        bm, bn = (8, 8) if path == "gemv" else (16, 32)  # the GEMV takes no block_m, and any block_n
        y = triton_lut.lut_linear_triton(x, idx, cb, None, 45, 37, 8, block_m=bm, block_n=bn, block_k=32, path=path)
        assert torch.allclose(y, reference.lut_linear(x, idx, cb, None, 45, 37, 8), atol=1e-5), path
    xd = torch.randn(2, 45, dtype=torch.float64)
    yd = triton_lut.lut_linear_triton(xd, idx, cb.double(), None, 45, 37, 8)
    assert torch.allclose(yd, reference.lut_linear(xd, idx, cb.double(), None, 45, 37, 8))
    print("ok")
""")


def test_triton_interpreted_matches_reference():
    env = dict(os.environ, TRITON_INTERPRET="1")
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().endswith("ok")


def test_module_imports_and_registers_without_gpu():
    from wclust.kernels import triton_lut

    assert triton_lut.AVAILABLE
    assert callable(triton_lut.lut_linear_triton)


@pytest.mark.parametrize("rows, blocks, bits, path, match", [
    (1, (32, 64, 48), 8, None, "block_k=48"), (20, (8, 64, 64), 8, None, "block_m=8"),
    (20, (32, 64, 16), 4, None, "block_k=16.*4-bit"), (1, (32, 0, 64), 8, None, "block_n=0"),
    (20, (32, 8, 64), 8, None, "block_n=8"),
    (1, (8, 64, 64), 8, "gemm", "block_m=8"), (1, (32, 64, 64), 8, "dot", "path='dot'")])
def test_block_sizes_the_kernels_cannot_take_are_refused(rows, blocks, bits, path, match):
    import torch

    from wclust.kernels import triton_lut

    idx = torch.zeros(4, 32 if bits == 8 else 16, dtype=torch.uint8)
    with pytest.raises(ValueError, match=match):
        triton_lut.lut_linear_triton(torch.zeros(rows, 32), idx, torch.zeros(1, 16), None, 32, 4, bits,
                                     block_m=blocks[0], block_n=blocks[1], block_k=blocks[2], path=path)
