"""bf16 compute through oneDNN's packed weight layout (kernels/onednn.py, wc_lut_dequant_packed)."""
import threading

import pytest
import torch
import torch.nn.functional as F

from wclust.kernels import cpu, onednn, reference

from .test_kernels_cpu import LEVELS, check, make_layer, ref64

pytestmark = pytest.mark.skipif(cpu.native() is None, reason="C library not built")

# (out, in, rows of x, codebook length, index bits, codebook groups): ViT-B shapes, padding of
# both dimensions, group codebooks, the one-row layout (blocks of 64 rows); then the AVX-512
# kernel's paths: 16-row units alone (a unit left over, groups of 16 rows, the one-row layout's
# odd unit pairs) and in pairs, each with transposed 64-byte runs, gathers and a scalar tail
SHAPES = [(2304, 768, 197, 64, 8, 1), (768, 768, 197, 16, 4, 1), (100, 50, 197, 256, 8, 1), (100, 50, 197, 16, 4, 1),
          (96, 66, 8, 64, 8, 3), (130, 40, 1, 9, 4, 5), (48, 20, 197, 256, 8, 2), (17, 9, 13, 3, 8, 1),
          (64, 30, 197, 7, 4, 1), (48, 203, 197, 256, 8, 1), (48, 300, 197, 16, 4, 1), (64, 130, 197, 100, 8, 4),
          (96, 261, 1, 12, 4, 2)]


def _layout_or_skip(n_out, n_in, rows):
    lay = onednn.layout(n_out, n_in, rows)
    if lay is None:
        pytest.skip("this torch / CPU packs bf16 weights in another layout (the plain path serves)")
    return lay


def _dequant_packed(idx, cb, n_out, n_in, gs, bits, lay, buf_ptr, threads=1):
    cbf = cb.to(torch.bfloat16).float().contiguous()  # kept alive across the C call
    rc = cpu.native().wc_lut_dequant_packed(idx.data_ptr(), n_out, n_in, bits, cbf.data_ptr(), cbf.shape[0],
                                            cbf.shape[1], gs, buf_ptr, lay[0], lay[1], threads)
    assert rc == 0


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("n_out,n_in,rows,k,bits,groups", SHAPES)
def test_packed_dequant_equals_onednns_own_packing_bit_for_bit(level, n_out, n_in, rows, k, bits, groups):
    lay = _layout_or_skip(n_out, n_in, rows)
    idx, cb, gs, ib = make_layer(n_out, n_in, k, bits, groups, seed=n_out + n_in)
    w = reference.dequantize(idx, cb.to(torch.bfloat16), n_in, gs, ib).reshape(n_out, n_in)
    want = onednn._raw(torch.ops.mkldnn._reorder_linear_weight(w.to(torch.bfloat16).contiguous(), rows))
    packed = torch.ops.mkldnn._reorder_linear_weight(torch.zeros(n_out, n_in, dtype=torch.bfloat16), rows)
    with cpu.force_isa(level):
        _dequant_packed(idx, cb, n_out, n_in, gs, ib, lay, int(torch.ops.mkldnn.data_ptr(packed)))
    assert torch.equal(onednn._raw(packed), want)      # every value in place, the padding still zero


@pytest.mark.parametrize("n_out,n_in,rows,k,bits,groups", [(2304, 768, 197, 64, 8, 1), (1000, 256, 1, 16, 4, 3)])
def test_packed_dequant_split_over_threads_is_the_same(n_out, n_in, rows, k, bits, groups):
    lay = _layout_or_skip(n_out, n_in, rows)
    idx, cb, gs, ib = make_layer(n_out, n_in, k, bits, groups, seed=5)
    out = []
    for threads in (1, 2, 3):
        packed = torch.ops.mkldnn._reorder_linear_weight(torch.zeros(n_out, n_in, dtype=torch.bfloat16), rows)
        _dequant_packed(idx, cb, n_out, n_in, gs, ib, lay, int(torch.ops.mkldnn.data_ptr(packed)), threads)
        out.append(onednn._raw(packed))
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])


@pytest.mark.parametrize("n_out,n_in,rows,k,bits,groups", SHAPES[:6])
def test_bf16_linear_packed_matches_plain_path_and_float64(n_out, n_in, rows, k, bits, groups):
    _layout_or_skip(n_out, n_in, rows)
    idx, cb, gs, ib = make_layer(n_out, n_in, k, bits, groups, seed=1)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(rows, n_in, generator=g).to(torch.bfloat16)
    bias = torch.randn(n_out, generator=g)
    cbb = cb.to(torch.bfloat16)
    packed = onednn.linear(cpu.native(), x, idx, cbb, bias.to(torch.bfloat16), n_in, gs, ib)
    assert packed is not None and packed.dtype == torch.bfloat16
    w = reference.dequantize(idx, cbb, n_in, gs, ib).reshape(n_out, n_in)
    plain = F.linear(x, w, bias.to(torch.bfloat16))
    torch.testing.assert_close(packed.float(), plain.float(), rtol=1e-2, atol=1e-2)
    check(packed, ref64(x, idx, cb, bias, n_in, gs, ib, torch.bfloat16), n_in, torch.bfloat16)
    # the op takes this path for bf16 compute beyond the GEMV's rows where there is no AMX kernel
    # (tests/test_amx.py: where there is one)
    if rows > cpu.gemv_rows(k, torch.bfloat16) and not cpu.amx_available():
        y = cpu.lut_linear_cpu(x, idx, cbb, bias.to(torch.bfloat16), n_in, gs, ib)
        assert torch.equal(y, packed)


def test_unknown_layout_falls_back_to_the_plain_path(monkeypatch):
    idx, cb, gs, ib = make_layer(96, 64, 64, 8, seed=3)
    x = torch.randn(40, 64).to(torch.bfloat16)
    cbb = cb.to(torch.bfloat16)
    monkeypatch.setattr(onednn, "_layouts", {})
    monkeypatch.setattr(onednn, "_raw", lambda packed: torch.zeros(7, dtype=torch.int16))  # nothing matches
    assert onednn.layout(96, 64, 40) is None
    assert onednn.linear(cpu.native(), x, idx, cbb, None, 64, gs, ib) is None
    y = cpu.lut_linear_cpu(x, idx, cbb, None, 64, gs, ib)
    check(y, ref64(x, idx, cb, None, 64, gs, ib, torch.bfloat16), 64, torch.bfloat16)


def test_switched_off_by_flag(monkeypatch):
    monkeypatch.setattr(onednn, "ENABLED", False)
    idx, cb, gs, ib = make_layer(32, 32, 16, 8, seed=4)
    assert onednn.linear(cpu.native(), torch.randn(20, 32).to(torch.bfloat16), idx, cb.to(torch.bfloat16), None,
                         32, gs, ib) is None


def test_scratch_is_per_thread_and_bounded(monkeypatch):
    """The scratch budget holds what it is given, measured in the packed sizes this torch / CPU
    makes (oneDNN blocks a weight's rows by 32 on one CPU, 64 on another: never assumed)."""
    onednn.release_scratch()
    monkeypatch.setattr(onednn, "IDLE_CALLS", 5)
    layers = {}

    def call(n_out, n_in=64):
        if onednn.layout(n_out, n_in, 40) is None:
            pytest.skip("another packed layout here")
        idx, cb, gs, ib = layers.setdefault(n_out, make_layer(n_out, n_in, 16, 8, seed=n_out))
        x = torch.randn(40, n_in).to(torch.bfloat16)
        y = onednn.linear(cpu.native(), x, idx, cb.to(torch.bfloat16), None, n_in, gs, ib)
        if y is not None:
            check(y, ref64(x, idx, cb, None, n_in, gs, ib, torch.bfloat16), n_in, torch.bfloat16)
        return y is not None

    def packed_bytes(n_out):
        onednn.release_scratch()
        assert call(n_out)
        return sum(v[2] for v in onednn._local.packed.values())

    sizes = {n: packed_bytes(n) for n in (32, 96, 128, 512)}
    onednn.release_scratch()
    # the budget holds the 96- and 128-row weights together, not a third beside them, and a 32-row
    # one in place of the 96-row one; the 512-row one alone exceeds it
    budget = sizes[96] + sizes[128]
    assert sizes[32] <= sizes[96] and sizes[512] > budget
    monkeypatch.setattr(onednn, "SCRATCH_BYTES", budget)
    cached = lambda: sorted(k[0] for k in onednn._local.packed)  # noqa: E731
    # a model cycling through 96- and 128-row weights keeps both
    assert all(call(n) for n in (96, 128) * 3) and cached() == [96, 128]
    # a third shape does not fit while those stay in use: the plain path, nothing re-made
    for _ in range(3):
        assert not call(32) and call(96) and call(128)
    assert cached() == [96, 128]
    # once they sit idle (another model runs), they make room
    assert not any(call(32) for _ in range(3)) and call(32) and cached() == [32, 128]
    assert sum(v[2] for v in onednn._local.packed.values()) <= budget
    # a weight bigger than the budget alone takes the plain path
    idx, cb, gs, ib = make_layer(512, 64, 16, 8, seed=9)
    x = torch.randn(40, 64).to(torch.bfloat16)
    assert onednn.linear(cpu.native(), x, idx, cb.to(torch.bfloat16), None, 64, gs, ib) is None
    check(cpu.lut_linear_cpu(x, idx, cb.to(torch.bfloat16), None, 64, gs, ib),
          ref64(x, idx, cb, None, 64, gs, ib, torch.bfloat16), 64, torch.bfloat16)
    errors, results = [], {}

    def work(seed):
        try:
            idx, cb, gs, ib = make_layer(64, 64, 16, 8, seed=seed)
            x = torch.randn(40, 64, generator=torch.Generator().manual_seed(seed)).to(torch.bfloat16)
            for _ in range(20):
                y = onednn.linear(cpu.native(), x, idx, cb.to(torch.bfloat16), None, 64, gs, ib)
                check(y, ref64(x, idx, cb, None, 64, gs, ib, torch.bfloat16), 64, torch.bfloat16)
            results[seed] = True
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in (10, 11)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 2
    onednn.release_scratch()
    assert len(onednn._local.packed) == 0
