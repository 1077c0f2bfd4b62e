import numpy as np
import pytest

from wclust.clustering.packing import bits_for, pack, packed_nbytes, pack_rows_4bit, unpack, unpack_rows_4bit


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1001])
def test_round_trip(bits, n):
    idx = np.random.default_rng(bits * 100 + n).integers(0, 2 ** bits, n).astype(np.uint8)
    p = pack(idx, bits)
    assert p.dtype == np.uint8 and p.size == packed_nbytes(n, bits)
    np.testing.assert_array_equal(unpack(p, bits, n), idx)


def test_hand_packed_bytes():
    # 3-bit indices 1,2,3 -> bits little-endian: 001 010 011 -> 0b11_010_001 = 0xD1, then 0b0
    np.testing.assert_array_equal(pack(np.array([1, 2, 3], np.uint8), 3), [0xD1, 0x00])
    np.testing.assert_array_equal(pack(np.array([1, 0xA], np.uint8), 4), [0xA1])


def test_errors():
    with pytest.raises(ValueError, match="does not fit"):
        pack(np.array([4], np.uint8), 2)
    with pytest.raises(ValueError, match="need"):
        unpack(np.zeros(3, np.uint8), 6, 10)
    with pytest.raises(ValueError, match="1..8"):
        pack(np.zeros(3, np.uint8), 9)


def test_bits_for():
    assert [bits_for(k) for k in (2, 3, 4, 16, 17, 64, 256)] == [1, 2, 2, 4, 5, 6, 8]


def test_rows_4bit_round_trip_odd_columns():
    idx = np.random.default_rng(0).integers(0, 16, (5, 7)).astype(np.uint8)
    np.testing.assert_array_equal(unpack_rows_4bit(pack_rows_4bit(idx), 7), idx)


def _bit_stream_pack(idx, bits):
    """The format's definition: index i at bit i * bits of the stream, low bits first."""
    planes = np.unpackbits(idx[:, None], axis=1, count=bits, bitorder="little")
    return np.packbits(planes.reshape(-1), bitorder="little")


@pytest.mark.parametrize("chunk", [None, 3])
@pytest.mark.parametrize("bits", [1, 2, 3, 5, 6, 7])
def test_grouped_packing_is_the_bit_stream(bits, chunk, monkeypatch):
    """The grouped (64-bit word) pack and unpack write and read the same bytes as a plain bit
    stream, for every count modulo the group, across chunk boundaries."""
    from wclust.clustering import packing

    if chunk:
        monkeypatch.setattr(packing, "_CHUNK", chunk)
    rng = np.random.default_rng(bits)
    for n in list(range(0, 19)) + [1001, 4099]:
        idx = rng.integers(0, 2 ** bits, n).astype(np.uint8)
        want = _bit_stream_pack(idx, bits)
        np.testing.assert_array_equal(pack(idx, bits), want)
        np.testing.assert_array_equal(unpack(want, bits, n), idx)
