"""The ``numpy`` backend: exact search with no dependency beyond numpy (see :mod:`cmhash.index.scan`).

Codes live in word-plane chunks of at most ``chunk_size`` codes, so adding never copies the
whole index and memory stays at bits/8 bytes per code (plus the ids).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cmhash.errors import DataError
from cmhash.index import scan
from cmhash.index.base import LocalIndex, check_options
from cmhash.index.registry import INDEX_BACKENDS


@INDEX_BACKENDS.register("numpy")
class NumpyIndex(LocalIndex):
    """Exact Hamming search by XOR + popcount + histogram top-k; single-threaded, no extra dependency."""

    backend = "numpy"

    def __init__(self, bits: int, chunk_size: int = 1 << 16, **options: Any):
        check_options(self.backend, options, ["chunk_size"])
        super().__init__(bits)
        if int(chunk_size) < 1:
            raise DataError(f"numpy index: chunk_size must be positive, got {chunk_size}")
        self.chunk_size = int(chunk_size)
        self._dtype = scan.word_dtype(self.width)
        self._chunks: list[np.ndarray] = []  # word planes (W, m), insertion order

    def options(self) -> dict[str, Any]:
        return {"chunk_size": self.chunk_size}

    def memory_bytes(self) -> int:
        """Bytes held by the codes (the ids are extra)."""
        return sum(c.nbytes for c in self._chunks)

    def _append(self, packed: np.ndarray) -> None:
        # chunk by chunk, so that no full transposed copy of the new codes is ever held
        start = 0
        if self._chunks and self._chunks[-1].shape[1] < self.chunk_size:
            room = self.chunk_size - self._chunks[-1].shape[1]
            self._chunks[-1] = np.concatenate([self._chunks[-1], scan.to_planes(packed[:room], self._dtype)], axis=1)
            start = room
        for lo in range(start, len(packed), self.chunk_size):
            self._chunks.append(scan.to_planes(packed[lo : lo + self.chunk_size], self._dtype))

    def _delete(self, positions: np.ndarray) -> None:
        out, start = [], 0
        for chunk in self._chunks:
            m = chunk.shape[1]
            lo, hi = np.searchsorted(positions, [start, start + m])
            if hi > lo:
                chunk = np.delete(chunk, positions[lo:hi] - start, axis=1)
            if chunk.shape[1]:
                out.append(chunk)
            start += m
        self._chunks = out

    def _words(self, packed: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(packed).view(self._dtype)

    def _search_pos(self, packed_queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return scan.topk(self._chunks, self._words(packed_queries), k, self.bits)

    def _codes_at(self, positions: np.ndarray) -> np.ndarray:
        starts = np.cumsum([0] + [c.shape[1] for c in self._chunks])
        which = np.searchsorted(starts, positions, side="right") - 1
        out = np.empty((len(positions), self.width // self._dtype.itemsize), dtype=self._dtype)
        for c in np.unique(which).tolist():
            rows = np.flatnonzero(which == c)
            out[rows] = self._chunks[c][:, positions[rows] - starts[c]].T
        return out.view(np.uint8)

    def _backend_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        parts = [scan.from_planes(c) for c in self._chunks] or [np.zeros((0, self.width), np.uint8)]
        return {"layout": "packed-rows"}, {"codes": parts}

    def _restore(self, state: dict[str, Any], sections: dict[str, np.ndarray]) -> None:
        codes = sections["codes"]
        if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != self.width:
            raise DataError(f"index file: codes section has shape {codes.shape}, expected (n, {self.width})")
        if len(codes) != self.count:
            raise DataError(f"index file is inconsistent: {len(codes)} codes for {self.count} ids")
        self._append(codes)
