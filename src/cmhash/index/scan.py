"""Exact Hamming top-k in pure numpy: XOR + popcount over word planes, histogram threshold.

Codes are stored as *word planes*: a (W, n) array whose row ``w`` holds word ``w`` of every code
(packed bytes viewed as uint64/32/16/8 words, the widest that divides the packed width). One
query's distances to a block are then ``sum_w popcount(plane_w ^ q_w)``: a few vectorised passes
with no per-code Python work and no padding, so memory stays at bits/8 bytes per code.

Top-k selection never sorts the distances. For each query chunk the first block's histogram
gives the k-th smallest distance there, a first threshold; later blocks only contribute codes
*strictly* below the current threshold (a code at the threshold distance comes later in
insertion order than the k candidates already held, so it cannot enter the top k). Candidates are
pruned back to k per query when they pile up, which tightens the threshold. The result is the
exact top-k ordered by (distance, position) -- the same order as faiss's IndexBinaryFlat.
"""

from __future__ import annotations

import numpy as np

#: elements (queries x codes) handled per vectorised step: big enough to amortise Python
#: overhead, small enough that the XOR buffer (8 bytes each) stays in cache.
STEP_ELEMENTS = 1 << 18
MAX_QUERY_CHUNK = 64
MAX_BLOCK = 1 << 16


def word_dtype(width: int) -> np.dtype:
    """Widest unsigned word (8, 4, 2 or 1 bytes) dividing the packed width."""
    for size in (8, 4, 2, 1):
        if width % size == 0:
            return np.dtype(f"<u{size}")
    raise AssertionError("unreachable")


def to_planes(packed: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Packed uint8 (n, width) -> word planes (W, n); always a copy (never a view of the caller's array)."""
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    return packed.view(dtype).T.copy(order="C")


def from_planes(planes: np.ndarray) -> np.ndarray:
    """Word planes (W, n) -> packed uint8 (n, width)."""
    return np.ascontiguousarray(planes.T).view(np.uint8)


def _distances(q: np.ndarray, block: np.ndarray, xbuf: np.ndarray, cbuf: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Hamming distances (nq, b) of query words (nq, W) to a plane block (W, b)."""
    nq, b = q.shape[0], block.shape[1]
    x = xbuf[: nq * b].reshape(nq, b)
    d = out[: nq * b].reshape(nq, b)
    c = d if d.dtype == np.uint8 else cbuf[: nq * b].reshape(nq, b)
    np.bitwise_xor(q[:, 0:1], block[0][None, :], out=x)
    np.bitwise_count(x, out=c)
    if c is not d:
        d[...] = c
    if block.shape[0] > 1:
        c = cbuf[: nq * b].reshape(nq, b)
        for w in range(1, block.shape[0]):
            np.bitwise_xor(q[:, w : w + 1], block[w][None, :], out=x)
            np.bitwise_count(x, out=c)
            np.add(d, c, out=d)
    return d


class _Selector:
    """Running exact top-k of one query chunk: candidates (query, distance, position) + thresholds."""

    def __init__(self, nq: int, k: int, bits: int, n_total: int):
        self.nq, self.k, self.bits = nq, k, bits
        self.thr = np.full(nq, bits + 1, dtype=np.int32)  # collect d < thr
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.held = 0
        self.budget = max(4 * nq * k, 1 << 15)
        self.started = False
        scale = max(n_total, 1)
        self._fits = nq * (bits + 2) * scale < (1 << 62)
        self._scale = scale
        self._maskbuf: np.ndarray | None = None

    def _mask(self, shape: tuple[int, int]) -> np.ndarray:
        size = shape[0] * shape[1]
        if self._maskbuf is None or self._maskbuf.size < size:
            self._maskbuf = np.empty(size, dtype=bool)
        return self._maskbuf[:size].reshape(shape)

    def first_threshold(self, d: np.ndarray) -> None:
        """Set each query's threshold to the k-th smallest distance of the first block (+1)."""
        nq, b = d.shape
        if b < self.k:
            return
        nb = self.bits + 1
        flat = (np.arange(nq, dtype=np.int64)[:, None] * nb + d).ravel()
        hist = np.bincount(flat, minlength=nq * nb).reshape(nq, nb)
        kth = np.argmax(np.cumsum(hist, axis=1) >= self.k, axis=1)
        self.thr = (kth + 1).astype(np.int32)

    def offer(self, d: np.ndarray, start: int) -> None:
        if not self.started:
            self.started = True
            self.first_threshold(d)
        thr = self.thr if self.bits + 1 > np.iinfo(d.dtype).max else self.thr.astype(d.dtype)
        flat = np.flatnonzero(np.less(d, thr[:, None], out=self._mask(d.shape)))
        if flat.size:
            rows, cols = np.divmod(flat, d.shape[1])
            self.parts.append((rows.astype(np.int32), d[rows, cols], cols.astype(np.int64) + start))
            self.held += rows.size
            if self.held > self.budget:
                self.prune()

    def prune(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keep the k best (distance, position) per query; tighten thresholds."""
        if not self.parts:
            z = np.zeros(0, dtype=np.int64)
            return z.astype(np.int32), z, z
        q = np.concatenate([p[0] for p in self.parts])
        d = np.concatenate([p[1] for p in self.parts]).astype(np.int64)
        pos = np.concatenate([p[2] for p in self.parts])
        if self._fits:
            order = np.argsort((q.astype(np.int64) * (self.bits + 2) + d) * self._scale + pos, kind="stable")
        else:  # pragma: no cover - astronomically large indexes
            order = np.lexsort((pos, d, q))
        q, d, pos = q[order], d[order], pos[order]
        starts = np.flatnonzero(np.r_[True, q[1:] != q[:-1]])
        counts = np.diff(np.r_[starts, len(q)])
        rank = np.arange(len(q)) - np.repeat(starts, counts)
        keep = rank < self.k
        full = counts >= self.k
        self.thr[q[starts[full]]] = d[starts[full] + self.k - 1]
        q, d, pos = q[keep], d[keep], pos[keep]
        self.parts = [(q, d, pos)]
        self.held = len(q)
        return q, d, pos

    def result(self, k_out: int) -> tuple[np.ndarray, np.ndarray]:
        q, d, pos = self.prune()
        if len(q) != self.nq * k_out:  # pragma: no cover - guarded by the caller's k <= n
            raise AssertionError("top-k selection lost candidates")
        return d.reshape(self.nq, k_out).astype(np.int32), pos.reshape(self.nq, k_out)


def topk(chunks: list[np.ndarray], queries: np.ndarray, k: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by (Hamming distance, position).

    ``chunks``: word-plane arrays (W, m_i) in insertion order; ``queries``: (nq, W) words of the
    same dtype; ``k`` <= total codes. Returns (distances int32, positions int64), each (nq, k).
    """
    n_total = sum(c.shape[1] for c in chunks)
    nq = queries.shape[0]
    if k > n_total:
        raise ValueError(f"k={k} exceeds the {n_total} codes")
    if nq == 0 or k == 0:
        return np.zeros((nq, k), np.int32), np.zeros((nq, k), np.int64)
    dist_dtype = np.uint8 if bits <= 255 else np.uint16
    qchunk = min(nq, MAX_QUERY_CHUNK)
    block = min(max(STEP_ELEMENTS // qchunk, 1024), MAX_BLOCK)
    xbuf = np.empty(qchunk * block, dtype=queries.dtype)
    cbuf = np.empty(qchunk * block, dtype=np.uint8)
    dbuf = np.empty(qchunk * block, dtype=dist_dtype)
    out_d = np.empty((nq, k), dtype=np.int32)
    out_p = np.empty((nq, k), dtype=np.int64)
    for q0 in range(0, nq, qchunk):
        q = queries[q0 : q0 + qchunk]
        sel = _Selector(len(q), k, bits, n_total)
        start = 0
        for chunk in chunks:
            m = chunk.shape[1]
            for b0 in range(0, m, block):
                blk = chunk[:, b0 : b0 + block]
                d = _distances(q, blk, xbuf, cbuf, dbuf)
                sel.offer(d, start + b0)
            start += m
        dd, pp = sel.result(k)
        out_d[q0 : q0 + len(q)] = dd
        out_p[q0 : q0 + len(q)] = pp
    return out_d, out_p
