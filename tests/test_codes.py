"""cmhash.codes: sign rule, 0/1 <-> +-1, packing order, popcount and Hamming distances."""

from __future__ import annotations

import numpy as np
import pytest

from cmhash import codes as C
from cmhash.errors import DataError


def brute_hamming(a01, b01):
    return np.array([[sum(int(x != y) for x, y in zip(r, s)) for s in b01] for r in a01])


def test_sign_maps_zero_to_plus_one():
    x = np.array([[-2.0, -0.0, 0.0, 1e-9, 3.0]])
    np.testing.assert_array_equal(C.sign(x), [[-1, 1, 1, 1, 1]])
    assert C.sign(x).dtype == np.int8


def test_sign_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    t = torch.tensor([[0.0, -1.5, 2.0]], requires_grad=True)
    np.testing.assert_array_equal(C.sign(t), [[1, -1, 1]])


def test_bit_mapping_plus_one_is_bit_one():
    pm1 = np.array([[1, -1, -1, 1]])
    np.testing.assert_array_equal(C.to_bits(pm1), [[1, 0, 0, 1]])
    np.testing.assert_array_equal(C.to_pm1([[1, 0, 0, 1]]), pm1)
    np.testing.assert_array_equal(C.to_pm1(np.array([[True, False]])), [[1, -1]])
    # all-ones rows mean +1 under both conventions, so they are never ambiguous
    np.testing.assert_array_equal(C.to_pm1(np.ones((2, 3))), np.ones((2, 3)))


@pytest.mark.parametrize(
    "codes, message",
    [
        (np.array([[1, -1], [1, 2]]), "row 1, bit 1 is 2"),
        (np.array([[1, -1], [0, 1]]), r"mixes -1 and 0 \(row 1, bit 0 is 0\)"),
        (np.array([[0.5, 1.0]]), "row 0, bit 0 is"),
        (np.array([[np.nan, 1.0]]), "row 0, bit 0 is"),
        (np.array([1, -1]), "expected a 2-D array"),
    ],
)
def test_to_bits_names_the_bad_entry(codes, message):
    with pytest.raises(DataError, match=message):
        C.to_bits(codes, "my codes")
    with pytest.raises(DataError, match="my codes"):
        C.to_bits(codes, "my codes")


def test_pack_is_numpy_packbits_order_and_round_trips():
    bits01 = np.array([[1, 0, 0, 0, 0, 0, 0, 0, 1, 1]], dtype=np.uint8)
    packed = C.pack(bits01)
    # first code dimension = most significant bit of byte 0; the tail is zero-padded
    np.testing.assert_array_equal(packed, [[0b10000000, 0b11000000]])
    assert C.packed_width(10) == 2 and C.packed_width(64) == 8
    rng = np.random.default_rng(0)
    for bits in (1, 7, 8, 13, 64, 100):
        codes = rng.integers(0, 2, (5, bits)).astype(np.uint8)
        np.testing.assert_array_equal(C.unpack(C.pack(codes), bits), codes)
        np.testing.assert_array_equal(C.pack(codes.astype(np.int8) * 2 - 1), C.pack(codes))


def test_as_packed_accepts_unpacked_or_packed():
    codes = np.array([[1, -1, 1, 1, -1, -1, 1, -1, 1]])
    packed = C.pack(codes)
    np.testing.assert_array_equal(C.as_packed(codes, 9), packed)
    np.testing.assert_array_equal(C.as_packed(packed, 9), packed)
    with pytest.raises(DataError, match="width 3 does not match 9-bit codes"):
        C.as_packed(np.zeros((1, 3), dtype=np.uint8), 9)


def test_popcount_matches_python_bin_count():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2**63, 200, dtype=np.uint64) | (rng.integers(0, 2, 200, dtype=np.uint64) << np.uint64(63))
    assert C.popcount(x).tolist() == [bin(int(v)).count("1") for v in x]


@pytest.mark.parametrize("bits", [1, 7, 8, 9, 63, 64, 65, 128, 130, 300])
def test_hamming_distance_against_brute_force(bits):
    rng = np.random.default_rng(bits)
    a = rng.integers(0, 2, (11, bits)).astype(np.uint8)
    b = rng.integers(0, 2, (23, bits)).astype(np.uint8)
    expected = brute_hamming(a, b)
    np.testing.assert_array_equal(C.hamming_distance(C.pack(a), C.pack(b)), expected)
    np.testing.assert_array_equal(C.hamming_from_pm1(C.to_pm1(a), C.to_pm1(b)), expected)
    small = C.hamming_from_words(C.as_words(C.pack(a)), C.as_words(C.pack(b)), dtype=C.distance_dtype(bits))
    assert small.dtype == (np.uint8 if bits <= 255 else np.uint16)
    np.testing.assert_array_equal(small, expected)
    out = np.full((11, 23), 99, dtype=np.uint16)
    assert C.hamming_distance(C.pack(a), C.pack(b), out=out) is out
    np.testing.assert_array_equal(out, expected)


def test_hamming_equals_inner_product_formula():
    rng = np.random.default_rng(2)
    a = np.where(rng.random((6, 32)) < 0.5, 1, -1)
    b = np.where(rng.random((9, 32)) < 0.5, 1, -1)
    np.testing.assert_array_equal(C.hamming_distance(C.pack(a), C.pack(b)), (32 - a @ b.T) // 2)


def test_hamming_distance_rejects_mismatched_widths():
    with pytest.raises(DataError, match="query codes have 2 bytes but database codes have 3"):
        C.hamming_distance(np.zeros((1, 2), np.uint8), np.zeros((1, 3), np.uint8))
