"""Binary codes: sign to +-1, 0/1 <-> +-1, packing to bytes, Hamming distance by popcount.

Conventions used everywhere in cmhash:

* **sign rule**: ``sign(x)`` is +1 for ``x >= 0`` and -1 for ``x < 0``. Zero maps to +1, so every
  code is a true +-1 vector (``torch.sign(0) = 0`` in the original DJSRH code gave 0 entries).
* **bit mapping**: +1 <-> bit 1, -1 <-> bit 0.
* **packing**: ``numpy.packbits`` order (first code dimension = most significant bit of byte 0);
  a code of ``bits`` dimensions packs to ``ceil(bits / 8)`` bytes, zero-padded.
* Hamming distance between +-1 codes equals ``(bits - <a, b>) / 2``.
"""

from __future__ import annotations

import numpy as np

from cmhash.errors import DataError

_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
_HAS_BITWISE_COUNT = hasattr(np, "bitwise_count")


def sign(x) -> np.ndarray:
    """+1 where ``x >= 0``, -1 elsewhere, as int8 (zero maps to +1; see module docstring)."""
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    return np.where(x >= 0, 1, -1).astype(np.int8)


def to_bits(codes, what: str = "codes") -> np.ndarray:
    """Validate codes given as +-1 or 0/1 (or bool) and return uint8 0/1 of the same shape.

    Raises a DataError naming the first offending entry for any other value.
    """
    if hasattr(codes, "detach"):
        codes = codes.detach().cpu().numpy()
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise DataError(f"{what}: expected a 2-D array (items x bits), got shape {codes.shape}")
    if codes.dtype == bool:
        return codes.astype(np.uint8)
    if codes.size == 0:
        return codes.astype(np.uint8)
    lo, hi = codes.min(), codes.max()
    if lo >= 0 and hi <= 1 and np.isin(codes, (0, 1)).all():
        return codes.astype(np.uint8)
    if np.isin(codes, (-1, 1)).all():
        return (codes > 0).astype(np.uint8)
    bad = np.argwhere(~np.isin(codes, (-1, 0, 1)))
    if len(bad):
        r, c = bad[0]
        raise DataError(f"{what}: row {r}, bit {c} is {codes[r, c].item()!r}; codes must be +-1 or 0/1")
    r, c = np.argwhere(codes == 0)[0]
    raise DataError(f"{what}: mixes -1 and 0 (row {r}, bit {c} is 0); codes must be either +-1 or 0/1, not both")


def to_pm1(codes, what: str = "codes") -> np.ndarray:
    """Codes given as +-1 or 0/1 -> int8 +-1."""
    return (to_bits(codes, what).astype(np.int8) * 2 - 1).astype(np.int8)


def pack(codes, what: str = "codes") -> np.ndarray:
    """+-1 or 0/1 codes of shape (n, bits) -> packed uint8 of shape (n, ceil(bits/8))."""
    return np.packbits(to_bits(codes, what), axis=1)


def unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    """Packed uint8 (n, ceil(bits/8)) -> 0/1 uint8 (n, bits)."""
    packed = np.asarray(packed, dtype=np.uint8)
    return np.unpackbits(packed, axis=1, count=bits)


def packed_width(bits: int) -> int:
    return (int(bits) + 7) // 8


def as_packed(codes, bits: int, what: str = "codes") -> np.ndarray:
    """Accept (n, bits) +-1/0-1 codes or already packed (n, bits/8) uint8; return packed uint8.

    A uint8 array whose width equals ``ceil(bits/8)`` (and differs from ``bits``) is taken as packed.
    """
    arr = codes.detach().cpu().numpy() if hasattr(codes, "detach") else np.asarray(codes)
    if arr.ndim != 2:
        raise DataError(f"{what}: expected a 2-D array, got shape {arr.shape}")
    width = packed_width(bits)
    if arr.shape[1] == bits:
        return pack(arr, what)
    if arr.dtype == np.uint8 and arr.shape[1] == width:
        return np.ascontiguousarray(arr)
    raise DataError(
        f"{what}: width {arr.shape[1]} does not match {bits}-bit codes "
        f"(expected {bits} columns of +-1/0-1 values or {width} packed uint8 bytes)"
    )


def _as_words(packed: np.ndarray) -> np.ndarray:
    """View packed bytes as uint64 words (zero-padding to a multiple of 8 bytes) for fast popcount."""
    n, w = packed.shape
    pad = (-w) % 8
    if pad:
        packed = np.concatenate([packed, np.zeros((n, pad), dtype=np.uint8)], axis=1)
    return np.ascontiguousarray(packed).view(np.uint64)


def popcount(x: np.ndarray) -> np.ndarray:
    """Number of set bits of each element of an unsigned integer array."""
    if _HAS_BITWISE_COUNT:
        return np.bitwise_count(x)
    as_bytes = x.view(np.uint8).reshape(*x.shape, x.dtype.itemsize)
    return _POPCOUNT8[as_bytes].sum(axis=-1, dtype=np.uint16)


def hamming_distance(query_packed: np.ndarray, db_packed: np.ndarray) -> np.ndarray:
    """All-pairs Hamming distances between packed codes: (nq, w) x (nd, w) -> (nq, nd) uint16.

    Memory is nq * nd * 2 bytes; callers chunk the queries for large databases.
    """
    q = _as_words(np.asarray(query_packed, dtype=np.uint8))
    d = _as_words(np.asarray(db_packed, dtype=np.uint8))
    if q.shape[1] != d.shape[1]:
        raise DataError(f"query codes have {query_packed.shape[1]} bytes but database codes have {db_packed.shape[1]}")
    out = np.zeros((q.shape[0], d.shape[0]), dtype=np.uint16)
    for k in range(q.shape[1]):
        out += popcount(q[:, k : k + 1] ^ d[None, :, k]).astype(np.uint16)
    return out


def hamming_from_pm1(query_pm1: np.ndarray, db_pm1: np.ndarray) -> np.ndarray:
    """Hamming distances from +-1 codes via an inner product (BLAS): (bits - q.d) / 2, as int32."""
    q = np.asarray(query_pm1, dtype=np.float32)
    d = np.asarray(db_pm1, dtype=np.float32)
    bits = q.shape[1]
    return np.rint((bits - q @ d.T) * 0.5).astype(np.int32)
