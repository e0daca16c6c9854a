"""The ``faiss`` backend (the embedded default): IndexBinaryFlat, or IVF / HNSW for speed over recall.

* ``kind="flat"`` (default): exact, multi-threaded brute force; positions are faiss's own ids, and
  faiss breaks distance ties by id, i.e. by insertion order, exactly as the numpy backend does.
* ``kind="ivf"``: IndexBinaryIVF, trained on the first ``add`` (or :meth:`FaissIndex.train`);
  ``nlist`` lists (default ``4 * sqrt(n)``), ``nprobe`` searched per query. Internal ids are
  insertion sequence numbers so removal needs no renumbering.
* ``kind="hnsw"``: IndexBinaryHNSW graph (``M``, ``ef_construction``, ``ef_search``). faiss cannot
  remove from an HNSW graph, so :meth:`remove` rebuilds it from the remaining codes.

Approximate kinds may miss true neighbours (their recall is measured by
``benchmarks/search_bench.py``); they never return fewer than ``min(k, count)`` results: a query
the approximation leaves short is re-run exhaustively. ``threads`` sets faiss's OpenMP threads
(a process-wide setting) before each call.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cmhash.errors import DataError, require
from cmhash.index.base import LocalIndex, check_options
from cmhash.index.registry import INDEX_BACKENDS

KINDS = ("flat", "ivf", "hnsw")


def _faiss():
    return require("faiss", "the faiss index backend", extra="index", package="faiss-cpu")


def _sort_rows(dist: np.ndarray, pos: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Order each row by (distance, position)."""
    order = np.argsort(dist.astype(np.int64) * (n + 1) + pos, axis=1, kind="stable")
    return np.take_along_axis(dist, order, 1), np.take_along_axis(pos, order, 1)


@INDEX_BACKENDS.register("faiss")
class FaissIndex(LocalIndex):
    """Hamming search with faiss binary indexes; see the module docstring."""

    backend = "faiss"

    def __init__(
        self,
        bits: int,
        kind: str = "flat",
        nlist: int | None = None,
        nprobe: int = 16,
        M: int = 16,
        ef_construction: int = 64,
        ef_search: int = 128,
        threads: int | None = None,
        **options: Any,
    ):
        check_options(self.backend, options, ["kind", "nlist", "nprobe", "M", "ef_construction", "ef_search", "threads"])
        super().__init__(bits)
        if kind not in KINDS:
            raise DataError(f"faiss index: kind must be one of {', '.join(KINDS)}, got {kind!r}")
        for name, value in (("nprobe", nprobe), ("M", M), ("ef_construction", ef_construction), ("ef_search", ef_search)):
            if int(value) < 1:
                raise DataError(f"faiss index: {name} must be positive, got {value}")
        if nlist is not None and int(nlist) < 1:
            raise DataError(f"faiss index: nlist must be positive, got {nlist}")
        if threads is not None and int(threads) < 1:
            raise DataError(f"faiss index: threads must be positive, got {threads}")
        self.kind = kind
        self.nlist = None if nlist is None else int(nlist)
        self.nprobe = int(nprobe)
        self.M, self.ef_construction, self.ef_search = int(M), int(ef_construction), int(ef_search)
        self.threads = None if threads is None else int(threads)
        self._faiss = _faiss()
        self._dims = self.width * 8  # faiss wants a multiple of 8; padding bits are zero on both sides
        self._seq = np.zeros(0, dtype=np.int64)  # ivf: internal id of each position
        self._next_seq = 0
        self._index = self._new_index() if kind != "ivf" else None

    # ----------------------------------------------------------- construction
    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"kind": self.kind, "threads": self.threads}
        if self.kind == "ivf":
            opts.update(nlist=self.nlist, nprobe=self.nprobe)
        if self.kind == "hnsw":
            opts.update(M=self.M, ef_construction=self.ef_construction, ef_search=self.ef_search)
        return opts

    @property
    def exact(self) -> bool:
        return self.kind == "flat"

    def _new_index(self):
        f = self._faiss
        if self.kind == "flat":
            return f.IndexBinaryFlat(self._dims)
        if self.kind == "hnsw":
            index = f.IndexBinaryHNSW(self._dims, self.M)
            index.hnsw.efConstruction = self.ef_construction
            index.hnsw.efSearch = self.ef_search
            return index
        quantizer = f.IndexBinaryFlat(self._dims)
        index = f.IndexBinaryIVF(quantizer, self._dims, self.nlist)
        index.own_fields = True
        quantizer.this.disown()
        return index

    def _set_threads(self) -> None:
        if self.threads is not None:
            self._faiss.omp_set_num_threads(self.threads)

    @property
    def is_trained(self) -> bool:
        return self._index is not None and self._index.is_trained

    def train(self, codes) -> None:
        """Train the IVF coarse quantizer on representative codes (done by the first add otherwise)."""
        if self.kind != "ivf":
            return
        packed = self._packed(codes, "training codes")
        if self.is_trained:
            raise DataError("faiss ivf index is already trained; create a new index to retrain")
        n = len(packed)
        if self.nlist is None:
            self.nlist = max(1, min(int(4 * math.sqrt(n)), n // 39 or 1))
        if n < self.nlist:
            raise DataError(
                f"faiss ivf index: {n} training codes for nlist={self.nlist} lists; train on at least nlist "
                "codes (add the bulk of the collection first, or lower nlist)"
            )
        self._index = self._new_index()
        self._set_threads()
        self._index.train(packed)

    # ----------------------------------------------------------- primitives
    def _append(self, packed: np.ndarray) -> None:
        self._set_threads()
        if self.kind == "ivf":
            if not self.is_trained:
                self.train(packed)
            seq = np.arange(self._next_seq, self._next_seq + len(packed), dtype=np.int64)
            self._index.add_with_ids(packed, seq)
            self._seq = np.concatenate([self._seq, seq])
            self._next_seq += len(packed)
        else:
            self._index.add(packed)

    def _delete(self, positions: np.ndarray) -> None:
        f = self._faiss
        if self.kind == "flat":
            self._index.remove_ids(f.IDSelectorBatch(positions.astype(np.int64)))
        elif self.kind == "ivf":
            self._index.remove_ids(f.IDSelectorBatch(self._seq[positions]))
            self._seq = np.delete(self._seq, positions)
        else:  # hnsw: faiss cannot delete from the graph; rebuild it from the remaining codes
            keep = np.delete(self._all_codes(), positions, axis=0)
            self._index = self._new_index()
            if len(keep):
                self._set_threads()
                self._index.add(keep)

    def _all_codes(self) -> np.ndarray:
        """Packed codes in position order (a view for flat/hnsw storage)."""
        f = self._faiss
        store = self._index if self.kind == "flat" else f.downcast_IndexBinary(self._index.storage)
        n = store.ntotal
        if n == 0:
            return np.zeros((0, self.width), np.uint8)
        return f.rev_swig_ptr(store.xb.data(), n * self.width).reshape(n, self.width)

    def _search_pos(self, packed_queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._set_threads()
        q = np.ascontiguousarray(packed_queries)
        if self.kind == "flat":
            return self._index.search(q, k)
        if self.kind == "hnsw":
            self._index.hnsw.efSearch = max(self.ef_search, k)
            dist, pos = self._index.search(q, k)
            short = (pos < 0).any(axis=1)
            if short.any():  # the graph walk found fewer than k: answer those queries exactly
                exact = self._faiss.downcast_IndexBinary(self._index.storage)
                dist[short], pos[short] = exact.search(q[short], k)
            return _sort_rows(dist, pos, self.count)
        self._index.nprobe = min(self.nprobe, self.nlist)
        dist, seq = self._index.search(q, k)
        short = (seq < 0).any(axis=1)
        if short.any():  # the probed lists held fewer than k codes: probe every list
            self._index.nprobe = self.nlist
            dist[short], seq[short] = self._index.search(q[short], k)
        return _sort_rows(dist, np.searchsorted(self._seq, seq), self.count)

    def _codes_at(self, positions: np.ndarray) -> np.ndarray:
        if self.kind != "ivf":
            return self._all_codes()[positions].copy()
        f = self._faiss
        if self._index.direct_map.type != f.DirectMap.Hashtable:
            self._index.set_direct_map_type(f.DirectMap.Hashtable)
        out = np.empty((len(positions), self.width), np.uint8)
        for j, s in enumerate(self._seq[positions].tolist()):
            out[j] = self._index.reconstruct(s)
        return out

    # ----------------------------------------------------------- state
    def _backend_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if self.kind == "flat":  # plain packed rows: also readable by the numpy backend
            return {"layout": "packed-rows"}, {"codes": self._all_codes()}
        state: dict[str, Any] = {"layout": f"faiss-{self.kind}", "next_seq": self._next_seq}
        sections: dict[str, np.ndarray] = {}
        if self._index is not None:
            sections["faiss"] = self._faiss.serialize_index_binary(self._index)
        if self.kind == "ivf":
            sections["seq"] = self._seq
        return state, sections

    def _restore(self, state: dict[str, Any], sections: dict[str, np.ndarray]) -> None:
        layout = state.get("layout")
        if layout == "packed-rows":
            codes = sections["codes"]
            if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != self.width or len(codes) != self.count:
                raise DataError(f"index file: codes section has shape {codes.shape}, expected ({self.count}, {self.width})")
            if self.kind == "ivf":
                self._index = None
            else:
                self._index = self._new_index()
            if len(codes):
                self._append(codes)
            return
        if layout != f"faiss-{self.kind}":
            raise DataError(f"index file holds a {layout} index, not faiss {self.kind}")
        if "faiss" in sections:
            try:
                self._index = self._faiss.deserialize_index_binary(np.ascontiguousarray(sections["faiss"]))
            except Exception as exc:  # faiss raises RuntimeError on a malformed blob
                raise DataError(f"index file: the faiss section cannot be read ({exc})") from None
        if self.kind == "ivf":
            self._seq = np.asarray(sections["seq"], dtype=np.int64)
            self._next_seq = int(state.get("next_seq", len(self._seq)))
            if self._index is not None:
                self.nlist = int(self._index.nlist)
        n = 0 if self._index is None else self._index.ntotal
        if n != self.count or (self.kind == "ivf" and len(self._seq) != n):
            raise DataError(f"index file is inconsistent: the faiss index holds {n} codes for {self.count} ids")
