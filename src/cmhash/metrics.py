"""The one evaluation module: Hamming-ranking metrics with explicit, recorded protocol options.

Published cross-modal hashing numbers differ in small choices that change the figures: which
queries the mean runs over, what AP@K is normalised by, and, above all at 16-32 bits, how items
at the same Hamming distance are ordered (tens of thousands of database items can share a
distance, so the tie order decides the top 50). Every function here takes those choices as
named options and returns them with the result, so a result file always says how it was made.

Options (defaults reproduce DJSRH's ``calculate_top_map`` except for the tie order):

* ``topk``: rank cut-off K, or ``None`` for the full ranking.
* ``denominator``: ``"all_queries"`` (DJSRH/JDSH: a query without a relevant item in the top K
  counts 0), ``"queries_with_relevant"`` (mean over queries with >= 1 relevant item in the
  database, as UCCH), ``"queries_with_hits"`` (mean over queries with >= 1 relevant item in the
  top K).
* ``normalize``: ``"hits_in_topk"`` (DJSRH: AP divides by the relevant items inside the top K) or
  ``"min_k_relevant"`` (divides by min(K, relevant items in the database)).
* ``tie_break``: ``"stable_index"`` (default: equal distances in database-index order, so results
  are deterministic) or ``"legacy_unstable"`` (the exact order of DJSRH's per-query
  ``np.argsort`` with numpy's default kind on its float32 Hamming vector
  ``0.5 * (bits - q.dot(db.T))``; platform dependent, kept to reproduce old numbers).
* Relevance: a query and a database item are relevant when they share at least one label
  (multi-hot rows; a 1-D array is taken as class ids), or, for pair-identity data (Flickr8k),
  when they have the same group id.

Speed: Hamming distances are small integers, so they are computed by XOR + popcount on packed
uint64 words (``cmhash.codes.hamming_from_words``), and the top K with the stable tie-break is
selected without sorting the database: a sampled estimate bounds the candidates, a histogram of
the candidates gives the cut-off distance, and the first items by index at that distance fill the
top K (exact; see ``_stable_topk``). Queries run in chunks sized to a memory budget.

Public API (other code and scripts rely on these names):

* ``mean_average_precision(query_codes, db_codes, query_labels, db_labels, topk=50) -> float``
* ``map_at_k``, ``precision_at_top_r``, ``pr_curve``, ``precision_within_radius``, ``recall_at_k``:
  result dicts with ``protocol``
* ``evaluate``: several metrics of one retrieval direction from one pass over the distances
* ``cross_modal_report``: i2t/t2i (and i2i/t2t) metrics; the one producer of ``metrics.json``
* ``top_k``: exact Hamming top-K indices and distances under a tie rule
* ``map_at_k_dense``, ``recall_at_k_dense``: the same definitions over cosine rankings of real vectors
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from cmhash import codes as C
from cmhash.errors import DataError
from cmhash.eval_protocol import (  # noqa: F401  (re-exported: the option names live there)
    ALIASES as _ALIASES,
    DEFAULT_MEMORY_MB,
    DEFAULT_R_VALUES,
    DEFAULT_RECALL_KS,
    DENOMINATORS,
    EMPTY_PRECISION,
    NORMALIZATIONS,
    TASKS,
    TIE_BREAKS,
)

METRICS = ("map", "map_all", "precision_radius", "pr_curve", "precision_top_r", "recall")

_MAP_DEFINITIONS = {
    "hits_in_topk": "AP@K = (1/R_K) * sum over the R_K relevant items in the top K of (relevant items up to its rank / its rank); "
    "AP = 0 when R_K = 0 (DJSRH calculate_top_map); mAP = mean of AP over the queries chosen by `denominator`",
    "min_k_relevant": "AP@K = (1/min(K, R)) * sum over the relevant items in the top K of (relevant items up to its rank / its rank), "
    "R = relevant items in the database; AP = 0 when R = 0; mAP = mean of AP over the queries chosen by `denominator`",
}


# --------------------------------------------------------------------------- options
def _option(name: str, value: str, allowed: Sequence[str]) -> str:
    value = _ALIASES.get(value, value)
    if value not in allowed:
        raise DataError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _topk(topk) -> int | None:
    if topk is None:
        return None
    if isinstance(topk, str) and topk.lower() in ("all", "none"):
        return None
    try:
        k = int(topk)
    except (TypeError, ValueError):
        raise DataError(f"topk must be a positive integer or None (full ranking); got {topk!r}") from None
    if k <= 0 or k != topk:
        raise DataError(f"topk must be a positive integer or None (full ranking); got {topk!r}")
    return k


def _positive_ints(name: str, values: Iterable) -> tuple[int, ...]:
    out = tuple(int(v) for v in values)
    if not out or any(v <= 0 for v in out):
        raise DataError(f"{name} must be a non-empty list of positive integers; got {list(values)!r}")
    return out


def _map_key(topk: int | None) -> str:
    return "map@all" if topk is None else f"map@{topk}"


# --------------------------------------------------------------------------- inputs
class _Codes:
    """Codes (+-1 or 0/1) validated once and packed into uint64 words for popcount."""

    def __init__(self, codes, what: str):
        bits01 = C.to_bits(codes, what)
        self.what = what
        self.n, self.bits = bits01.shape
        self.words = C.as_words(np.packbits(bits01, axis=1))
        self._bits01 = bits01
        self._f32 = None

    def pm1_float32(self) -> np.ndarray:
        """+-1 float32, the dtype of DJSRH's codes (torch float tensors), for the legacy ranking."""
        if self._f32 is None:
            self._f32 = self._bits01.astype(np.float32) * 2 - 1
        return self._f32


def _pair_codes(query_codes, db_codes, names=("query_codes", "db_codes")) -> tuple[_Codes, _Codes]:
    q, d = _Codes(query_codes, names[0]), _Codes(db_codes, names[1])
    if q.bits != d.bits:
        raise DataError(f"{names[0]} have {q.bits} bits but {names[1]} have {d.bits}; both sides must use the same code length")
    if q.n == 0:
        raise DataError(f"{names[0]} is empty: nothing to evaluate")
    if d.n == 0:
        raise DataError(f"{names[1]} is empty: nothing to retrieve from")
    return q, d


def _as_label_matrix(labels, what: str) -> np.ndarray:
    arr = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
    if arr.ndim != 2:
        raise DataError(f"{what}: expected a 2-D multi-hot matrix (items x labels), got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.size and not np.isin(arr, (0, 1)).all():
        r, c = np.argwhere(~np.isin(arr, (0, 1)))[0]
        raise DataError(f"{what}: row {r}, column {c} is {arr[r, c].item()!r}; labels must be 0/1 multi-hot (or a 1-D array of class ids)")
    return arr != 0


class _LabelRelevance:
    """Relevant = shares at least one label. Labels are packed into uint64 words (bit AND)."""

    kind = "share_at_least_one_label"

    def __init__(self, query_labels, db_labels, nq: int, nd: int, names=("query_labels", "db_labels")):
        ql = np.asarray(query_labels.detach().cpu().numpy() if hasattr(query_labels, "detach") else query_labels)
        dl = np.asarray(db_labels.detach().cpu().numpy() if hasattr(db_labels, "detach") else db_labels)
        if ql.ndim == 1 and dl.ndim == 1:  # class ids -> one-hot over the union of classes
            if ql.dtype.kind != dl.dtype.kind:
                ql, dl = ql.astype(str), dl.astype(str)
            classes, inv = np.unique(np.concatenate([ql, dl]), return_inverse=True)
            onehot = np.zeros((len(inv), len(classes)), dtype=bool)
            onehot[np.arange(len(inv)), inv] = True
            ql, dl = onehot[: len(ql)], onehot[len(ql) :]
        elif ql.ndim != dl.ndim:
            raise DataError(f"{names[0]} is {ql.ndim}-D but {names[1]} is {dl.ndim}-D; give both as multi-hot matrices or both as class ids")
        ql, dl = _as_label_matrix(ql, names[0]), _as_label_matrix(dl, names[1])
        if ql.shape[0] != nq:
            raise DataError(f"{names[0]} has {ql.shape[0]} rows but there are {nq} query codes")
        if dl.shape[0] != nd:
            raise DataError(f"{names[1]} has {dl.shape[0]} rows but there are {nd} database codes")
        if ql.shape[1] != dl.shape[1]:
            raise DataError(f"{names[0]} has {ql.shape[1]} label columns but {names[1]} has {dl.shape[1]}")
        self.q = C.as_words(np.packbits(ql, axis=1))
        self.d = C.as_words(np.packbits(dl, axis=1))
        self._d_cols = [np.ascontiguousarray(self.d[:, w]) for w in range(self.d.shape[1])]
        # Relevant-item counts per query need only the distinct label sets of the database.
        if self.d.shape[1] == 1:
            pats, self._pattern_counts = np.unique(self.d[:, 0], return_counts=True)
            self._patterns = pats[:, None]
        else:
            self._patterns, self._pattern_counts = np.unique(self.d, axis=0, return_counts=True)
        self.pair_bytes = 8 * self.d.shape[1] + 1  # gathered label words + result, per (query, item)

    def pairs(self, rows: slice, idx: np.ndarray) -> np.ndarray:
        """Relevance of the database items ``idx`` (Q, k) for the queries ``rows``: (Q, k) bool."""
        q = self.q[rows]
        out = np.zeros(idx.shape, dtype=bool)
        for w in range(q.shape[1]):
            out |= (self._d_cols[w][idx] & q[:, w, None]) != 0
        return out

    def pairs_flat(self, q_idx: np.ndarray, d_idx: np.ndarray) -> np.ndarray:
        """Relevance of the pairs (q_idx[i], d_idx[i]): 1-D bool."""
        out = np.zeros(len(q_idx), dtype=bool)
        for w in range(self.q.shape[1]):
            out |= (self._d_cols[w][d_idx] & self.q[q_idx, w]) != 0
        return out

    def block(self, rows: slice) -> np.ndarray:
        """Relevance of every database item for the queries ``rows``: (Q, N) bool."""
        q = self.q[rows]
        nq, nd = q.shape[0], self.d.shape[0]
        out = np.zeros((nq, nd), dtype=bool)
        step = C._ROW_BLOCK
        buf = np.empty((min(step, nq), nd), dtype=np.uint64)
        for s in range(0, nq, step):
            e = min(s + step, nq)
            for w in range(q.shape[1]):
                b = buf[: e - s]
                np.bitwise_and(q[s:e, w, None], self._d_cols[w][None, :], out=b)
                out[s:e] |= b != 0
        return out

    def counts(self, rows: slice) -> np.ndarray:
        """Number of relevant database items per query, from the distinct database label sets."""
        q = self.q[rows]
        total = np.zeros(q.shape[0], dtype=np.int64)
        step = 4096  # label sets per block: bounds the (queries x label sets) scratch
        for s in range(0, len(self._patterns), step):
            pats = self._patterns[s : s + step]
            hit = np.zeros((q.shape[0], len(pats)), dtype=bool)
            for w in range(q.shape[1]):
                hit |= (q[:, w, None] & pats[None, :, w]) != 0
            total += hit.astype(np.int64) @ self._pattern_counts[s : s + step]
        return total


class _GroupRelevance:
    """Relevant = same group id (pair identity: an image and its captions)."""

    kind = "same_group"

    def __init__(self, query_groups, db_groups, nq: int, nd: int, names=("query_groups", "db_groups")):
        qg = np.asarray(query_groups)
        dg = np.asarray(db_groups)
        for arr, what, n, side in ((qg, names[0], nq, "query"), (dg, names[1], nd, "database")):
            if arr.ndim != 1:
                raise DataError(f"{what}: expected a 1-D array of group ids, got shape {arr.shape}")
            if len(arr) != n:
                raise DataError(f"{what} has {len(arr)} entries but there are {n} {side} codes")
        if qg.dtype.kind != dg.dtype.kind:
            qg, dg = qg.astype(str), dg.astype(str)
        _, inv = np.unique(np.concatenate([qg, dg]), return_inverse=True)
        self.q = inv[:nq].astype(np.int64)
        self.d = inv[nq:].astype(np.int64)
        self._counts = np.bincount(self.d, minlength=int(inv.max()) + 1 if len(inv) else 0)
        self.pair_bytes = 9

    def pairs(self, rows: slice, idx: np.ndarray) -> np.ndarray:
        return self.d[idx] == self.q[rows, None]

    def pairs_flat(self, q_idx: np.ndarray, d_idx: np.ndarray) -> np.ndarray:
        return self.d[d_idx] == self.q[q_idx]

    def block(self, rows: slice) -> np.ndarray:
        return self.d[None, :] == self.q[rows, None]

    def counts(self, rows: slice) -> np.ndarray:
        return self._counts[self.q[rows]]


# --------------------------------------------------------------------------- ranking
def _select_candidates(r: np.ndarray, c: np.ndarray, dd: np.ndarray, n_rows: int, k: int, nb: int) -> np.ndarray:
    """First k candidates per row by (distance, index): (n_rows, k) database indices.

    ``r, c, dd`` list, in row-major order (row, then index ascending), every item of each row
    whose distance is <= some threshold; each row has at least k of them. A histogram of the
    candidates gives the cut-off distance d*: all candidates closer than d* are in, plus the
    first (by index) candidates at exactly d*. Only the k chosen ones are sorted.
    """
    hist = np.bincount(r * nb + dd, minlength=n_rows * nb).reshape(n_rows, nb)
    ar = np.arange(n_rows)
    cum = np.cumsum(hist, axis=1)
    cut = np.argmax(cum >= k, axis=1)
    need = k - (cum[ar, cut] - hist[ar, cut])  # how many to take at the cut-off distance
    cut_r = cut[r]
    at_cut = dd == cut_r
    cs = np.cumsum(at_cut)
    starts = np.concatenate([[0], np.cumsum(cum[:, -1])[:-1]])
    before = cs[starts] - at_cut[starts]  # at-cut entries before each row's first entry
    keep = (dd < cut_r) | (at_cut & ((cs - before[r] - 1) < need[r]))
    r, c, dd = r[keep], c[keep], dd[keep]
    order = np.argsort(r * nb + dd, kind="stable")  # entries are already in index order
    return c[order].reshape(n_rows, k)


def _topk_below(dist: np.ndarray, thr: np.ndarray, k: int, nb: int, out: np.ndarray, rows_per_batch: int) -> np.ndarray:
    """Top k of each row among the items with distance <= thr[row]; returns the rows with fewer than k.

    Rows are processed ``rows_per_batch`` at a time so that even the worst case (every item a
    candidate) stays within the memory budget.
    """
    nq, nd = dist.shape
    short_rows = []
    for s in range(0, nq, rows_per_batch):
        e = min(s + rows_per_batch, nq)
        sub = dist[s:e]
        flat = np.flatnonzero(sub <= thr[s:e, None].astype(dist.dtype))
        r, c = np.divmod(flat, nd)
        dd = sub.ravel()[flat]
        counts = np.bincount(r, minlength=e - s)
        ok = counts >= k
        if not ok.all():
            short_rows.extend((np.flatnonzero(~ok) + s).tolist())
            keep = ok[r]
            r = (np.cumsum(ok) - 1)[r[keep]]
            c, dd = c[keep], dd[keep]
        if ok.any():
            out[s + np.flatnonzero(ok)] = _select_candidates(r, c, dd, int(ok.sum()), k, nb)
    return np.asarray(short_rows, dtype=np.int64)


def _stable_topk(dist: np.ndarray, k: int, nb: int, budget_bytes: float, hist: np.ndarray | None = None) -> np.ndarray:
    """First k items per row ordered by (distance, database index), without sorting the database.

    A strided sample of about 4,096 columns estimates, per row, a distance t below which
    comfortably more than k items lie; the items with distance <= t are the candidates. Rows where
    the estimate falls short get their exact cut-off from a full histogram of distances. Either way
    the result is exact; the sample only decides how much work the candidates take.
    """
    nq, nd = dist.shape
    out = np.empty((nq, k), dtype=np.int64)
    rows_per_batch = int(max(1, budget_bytes // (nd * 48)))
    if hist is None:
        step = max(1, nd // 4096)
        sample = dist[:, ::step]
        m = sample.shape[1]
        want = int(np.ceil(2.0 * k * m / nd)) + 4
        offsets = (np.arange(nq, dtype=np.int64) * nb)[:, None]
        cum = np.cumsum(np.bincount((sample + offsets).ravel(), minlength=nq * nb).reshape(nq, nb), axis=1)
        thr = np.where(cum[:, -1] >= want, np.argmax(cum >= want, axis=1), nb - 1)
        short = _topk_below(dist, thr, k, nb, out, rows_per_batch)
    else:
        short = np.arange(nq)
    if len(short):
        h = hist[short] if hist is not None else np.stack([np.bincount(dist[i], minlength=nb) for i in short])
        exact = np.argmax(np.cumsum(h, axis=1) >= k, axis=1)
        sub_out = np.empty((len(short), k), dtype=np.int64)
        left = _topk_below(dist[short], exact, k, nb, sub_out, rows_per_batch)
        assert len(left) == 0  # the exact cut-off always leaves at least k candidates
        out[short] = sub_out
    return out


class _Context:
    """Everything one retrieval direction needs: codes, tie rule, memory budget."""

    def __init__(self, q: _Codes, d: _Codes, tie_break: str, memory_mb: float):
        self.q, self.d = q, d
        self.bits = q.bits
        self.nb = q.bits + 1
        self.tie_break = tie_break
        self.budget = max(float(memory_mb), 1.0) * 2**20
        self.dist_dtype = C.distance_dtype(q.bits)
        self.kmax = 0  # longest ranking prefix any metric of this pass needs (set by _run)


class _Chunk:
    """One block of query rows; distances, histograms, rankings and relevance computed lazily."""

    def __init__(self, ctx: _Context, start: int, stop: int):
        self.ctx = ctx
        self.rows = slice(start, stop)
        self.n = stop - start
        self._dist = None
        self._hist = None
        self._order = None
        self._rel: dict[int, np.ndarray] = {}

    @property
    def dist(self) -> np.ndarray:
        if self._dist is None:
            self._dist = C.hamming_from_words(self.ctx.q.words[self.rows], self.ctx.d.words, dtype=self.ctx.dist_dtype)
        return self._dist

    @property
    def hist(self) -> np.ndarray:
        """Counts of database items per distance 0..bits, per query row: (Q, bits+1)."""
        if self._hist is None:
            nb = self.ctx.nb
            self._hist = np.stack([np.bincount(row, minlength=nb) for row in self.dist])
        return self._hist

    def order(self, k: int) -> np.ndarray:
        """Database indices of the first k items of each query's ranking: (Q, k)."""
        if self._order is not None and self._order.shape[1] >= k:
            return self._order[:, :k]
        nd = self.ctx.d.n
        k_all = max(k, self.ctx.kmax)
        if self.ctx.tie_break == "legacy_unstable":
            # DJSRH: hamm = 0.5 * (bits - q.dot(db.T)) on float32 codes, then np.argsort(hamm).
            qf = self.ctx.q.pm1_float32()[self.rows]
            hamm = qf @ self.ctx.d.pm1_float32().T  # float32, exact (integers)
            np.subtract(self.ctx.bits, hamm, out=hamm)
            hamm *= 0.5
            order = np.empty((self.n, nd), dtype=np.int64)
            for i in range(self.n):
                order[i] = np.argsort(hamm[i])
            self._order = order
        elif 4 * k_all >= nd:
            self._order = np.argsort(self.dist, axis=1, kind="stable")[:, :k_all]  # radix sort on uint8/16
        else:
            self._order = _stable_topk(self.dist, k_all, self.ctx.nb, self.ctx.budget / 2, self._hist)
        return self._order[:, :k]

    def relevance(self, rel) -> np.ndarray:
        key = id(rel)
        if key not in self._rel:
            self._rel[key] = rel.block(self.rows)
        return self._rel[key]

    def hits(self, rel, k: int) -> np.ndarray:
        """Relevance of the first k ranked items of each query: (Q, k) bool."""
        if 4 * k >= self.ctx.d.n:  # long rankings: gather 1-byte flags, not label words
            return np.take_along_axis(self.relevance(rel), self.order(k), axis=1)
        return rel.pairs(self.rows, self.order(k))


def _chunk_rows(ctx: _Context, accs: Sequence["_Acc"], chunk_size: int | None) -> int:
    if chunk_size is not None:
        if int(chunk_size) <= 0:
            raise DataError(f"chunk_size must be a positive integer; got {chunk_size!r}")
        return int(chunk_size)
    nd = ctx.d.n
    # Half the budget for the arrays kept per chunk; the selection sub-batches use the other half.
    per_pair = 2 * (ctx.dist_dtype.itemsize + 1.0)  # distances + the selection mask
    if ctx.tie_break == "legacy_unstable":
        per_pair += 2 * (8 + 4)  # full argsort + float32 Hamming vector
    kmax = max([a.k for a in accs if a.k] or [0])
    if ctx.tie_break == "stable_index" and 4 * kmax >= nd:
        per_pair += 2 * 8  # full radix argsort
    per_pair += 2 * sum(a.bytes_per_pair(nd) for a in accs)
    return int(max(1, min(ctx.q.n, ctx.budget // (nd * per_pair))))


def _run(ctx: _Context, accs: Sequence["_Acc"], chunk_size: int | None, progress: bool) -> None:
    ctx.kmax = max([a.k for a in accs if a.k] or [0])
    rows = _chunk_rows(ctx, accs, chunk_size)
    starts = range(0, ctx.q.n, rows)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, total=len(starts), desc="evaluating", unit="chunk", leave=False)
    for s in starts:
        chunk = _Chunk(ctx, s, min(s + rows, ctx.q.n))
        for acc in accs:
            acc.update(chunk)


# --------------------------------------------------------------------------- accumulators
class _Acc:
    k: int | None = None

    def bytes_per_pair(self, nd: int) -> float:
        return 0.0


class _MapAcc(_Acc):
    def __init__(self, ctx: _Context, rel, topk: int | None, denominator: str, normalize: str):
        self.ctx, self.rel = ctx, rel
        self.topk, self.denominator, self.normalize = topk, denominator, normalize
        self.k = ctx.d.n if topk is None else min(topk, ctx.d.n)
        nq = ctx.q.n
        self.ap = np.zeros(nq)
        self.hits = np.zeros(nq, dtype=np.int64)
        self.n_rel = np.zeros(nq, dtype=np.int64)

    def bytes_per_pair(self, nd: int) -> float:
        if 4 * self.k >= nd:  # relevance block + gathered flags (the ranking is counted by _chunk_rows)
            return 2.0
        return (8 + self.rel.pair_bytes + 32) * self.k / nd  # ranking, relevance gather, per-hit terms

    def update(self, ch: _Chunk) -> None:
        hits = ch.hits(self.rel, self.k)
        nh = hits.sum(axis=1)
        if self.k <= 4096:
            r, pos = np.nonzero(hits)
            first = np.concatenate([[0], np.cumsum(nh)[:-1]])
            nth_hit = np.arange(len(r)) - first[r] + 1  # 1-based count of hits so far
            prec_sum = np.bincount(r, weights=nth_hit / (pos + 1.0), minlength=ch.n)
        else:  # row by row keeps the per-hit scratch to one row
            prec_sum = np.zeros(ch.n)
            for i in range(ch.n):
                pos = np.flatnonzero(hits[i]) + 1.0
                prec_sum[i] = (np.arange(1, len(pos) + 1) / pos).sum()
        n_rel = self.rel.counts(ch.rows)
        if self.normalize == "hits_in_topk":
            norm = nh
        else:
            norm = np.minimum(self.k, n_rel)
        self.ap[ch.rows] = np.where(norm > 0, prec_sum / np.maximum(norm, 1), 0.0)
        self.hits[ch.rows] = nh
        self.n_rel[ch.rows] = n_rel

    def result(self, protocol: dict) -> dict[str, Any]:
        counted = {
            "all_queries": np.ones(len(self.ap), dtype=bool),
            "queries_with_relevant": self.n_rel > 0,
            "queries_with_hits": self.hits > 0,
        }[self.denominator]
        n = int(counted.sum())
        value = float(self.ap[counted].sum() / n) if n else 0.0
        return {
            "metric": _map_key(self.topk),
            "value": value,
            "n_queries": len(self.ap),
            "n_database": self.ctx.d.n,
            "n_counted": n,
            "n_queries_with_relevant": int((self.n_rel > 0).sum()),
            "n_queries_with_hits": int((self.hits > 0).sum()),
            "per_query": self.ap,
            "protocol": dict(
                protocol,
                topk=self.topk,
                effective_topk=self.k,
                denominator=self.denominator,
                normalize=self.normalize,
                definition=_MAP_DEFINITIONS[self.normalize],
            ),
        }


class _PrecisionTopRAcc(_Acc):
    def __init__(self, ctx: _Context, rel, r_values: Sequence[int], denominator: str):
        self.ctx, self.rel = ctx, rel
        self.r_values = tuple(r_values)
        self.r_eff = np.minimum(np.asarray(self.r_values), ctx.d.n)
        self.k = int(self.r_eff.max())
        self.denominator = denominator
        self.prec = np.zeros((ctx.q.n, len(self.r_values)))
        self.n_rel = np.zeros(ctx.q.n, dtype=np.int64)

    def bytes_per_pair(self, nd: int) -> float:
        return (8 + self.rel.pair_bytes + 8) * self.k / nd

    def update(self, ch: _Chunk) -> None:
        hits = ch.hits(self.rel, self.k)
        cum = np.cumsum(hits, axis=1, dtype=np.int64)
        self.prec[ch.rows] = cum[:, self.r_eff - 1] / self.r_eff
        self.n_rel[ch.rows] = self.rel.counts(ch.rows)

    def result(self, protocol: dict) -> dict[str, Any]:
        counted = self.n_rel > 0 if self.denominator == "queries_with_relevant" else np.ones(len(self.n_rel), dtype=bool)
        n = int(counted.sum())
        precision = self.prec[counted].mean(axis=0) if n else np.zeros(len(self.r_values))
        return {
            "metric": "precision@top_r",
            "r": list(self.r_values),
            "effective_r": self.r_eff.tolist(),
            "precision": precision.tolist(),
            "n_queries": len(self.n_rel),
            "n_counted": n,
            "protocol": dict(
                protocol,
                denominator=self.denominator,
                definition="P@R = relevant items among the first min(R, database size) / min(R, database size)",
            ),
        }


class _RadiusAcc(_Acc):
    """Counts per Hamming radius of retrieved and relevant-retrieved items (PR curve, P@radius).

    With ``full=False`` only one radius is needed: the items within it are found sparsely
    (no histograms, no full relevance matrix), in row batches bounded by the memory budget.
    """

    def __init__(self, ctx: _Context, rel, denominator: str, empty_precision: str, radius: int, full: bool):
        self.ctx, self.rel = ctx, rel
        self.denominator, self.empty_precision = denominator, empty_precision
        self.radius, self.full = radius, full
        nb = ctx.nb
        self.p_sum = np.zeros(nb)
        self.r_sum = np.zeros(nb)
        self.n_nonempty = np.zeros(nb, dtype=np.int64)
        self.n_empty = np.zeros(nb, dtype=np.int64)
        self.n_counted = 0
        self.n_queries = 0

    def bytes_per_pair(self, nd: int) -> float:
        return 1.0 if self.full else 0.0

    def _counts_full(self, ch: _Chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nb = self.ctx.nb
        rel = ch.relevance(self.rel)
        dist = ch.dist
        ret = np.cumsum(ch.hist, axis=1)
        good = np.cumsum(np.stack([np.bincount(dist[i][rel[i]], minlength=nb) for i in range(ch.n)]), axis=1)
        return ret, good, good[:, -1]

    def _counts_one(self, ch: _Chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nb, r = self.ctx.nb, min(self.radius, self.ctx.bits)
        dist, nd = ch.dist, self.ctx.d.n
        ret = np.zeros((ch.n, nb), dtype=np.int64)
        good = np.zeros((ch.n, nb), dtype=np.int64)
        step = int(max(1, self.ctx.budget / 2 // (nd * 32)))
        for s in range(0, ch.n, step):
            e = min(s + step, ch.n)
            rows, cols = np.divmod(np.flatnonzero(dist[s:e] <= r), nd)
            ret[s:e, r] = np.bincount(rows, minlength=e - s)
            hit = self.rel.pairs_flat(rows + ch.rows.start + s, cols)
            good[s:e, r] = np.bincount(rows[hit], minlength=e - s)
        return ret, good, self.rel.counts(ch.rows)

    def update(self, ch: _Chunk) -> None:
        ret, good, n_rel = self._counts_full(ch) if self.full else self._counts_one(ch)
        counted = n_rel > 0 if self.denominator == "queries_with_relevant" else np.ones(ch.n, dtype=bool)
        ret, good, n_rel = ret[counted], good[counted], n_rel[counted]
        nonempty = ret > 0
        self.p_sum += np.where(nonempty, good / np.maximum(ret, 1), 0.0).sum(axis=0)
        self.r_sum += np.where(n_rel[:, None] > 0, good / np.maximum(n_rel, 1)[:, None], 0.0).sum(axis=0)
        self.n_nonempty += nonempty.sum(axis=0)
        self.n_empty += (~nonempty).sum(axis=0)
        self.n_counted += int(counted.sum())
        self.n_queries += ch.n

    def _curves(self) -> tuple[np.ndarray, np.ndarray]:
        n = max(self.n_counted, 1)
        if self.empty_precision == "zero":
            precision = self.p_sum / n
        else:
            precision = np.where(self.n_nonempty > 0, self.p_sum / np.maximum(self.n_nonempty, 1), 0.0)
        return precision, self.r_sum / n

    def protocol(self, protocol: dict) -> dict:
        return dict(
            protocol,
            denominator=self.denominator,
            empty_precision=self.empty_precision,
            definition="retrieved(r) = items within Hamming distance <= r; P = relevant retrieved / retrieved; "
            "R = relevant retrieved / relevant",
        )

    def pr_result(self, protocol: dict) -> dict[str, Any]:
        precision, recall = self._curves()
        return {
            "metric": "pr_curve",
            "radius": list(range(self.ctx.nb)),
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "queries_with_empty_retrieval": self.n_empty.tolist(),
            "n_queries": self.n_queries,
            "n_counted": self.n_counted,
            "protocol": self.protocol(protocol),
        }

    def radius_result(self, radius: int, protocol: dict) -> dict[str, Any]:
        precision, recall = self._curves()
        r = min(radius, self.ctx.bits)
        return {
            "metric": f"precision@radius{radius}",
            "value": float(precision[r]),
            "recall": float(recall[r]),
            "radius": radius,
            "queries_with_empty_retrieval": int(self.n_empty[r]),
            "n_queries": self.n_queries,
            "n_counted": self.n_counted,
            "protocol": dict(self.protocol(protocol), radius=radius),
        }


class _RecallAcc(_Acc):
    def __init__(self, ctx: _Context, rel, ks: Sequence[int]):
        self.ctx, self.rel = ctx, rel
        self.ks = tuple(ks)
        self.k_eff = np.minimum(np.asarray(self.ks), ctx.d.n)
        self.k = int(self.k_eff.max())
        self.found = np.zeros((ctx.q.n, len(self.ks)), dtype=bool)
        self.n_rel = np.zeros(ctx.q.n, dtype=np.int64)

    def bytes_per_pair(self, nd: int) -> float:
        return (8 + self.rel.pair_bytes) * self.k / nd

    def update(self, ch: _Chunk) -> None:
        hits = ch.hits(self.rel, self.k)
        first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1), self.k)
        self.found[ch.rows] = first_hit[:, None] < self.k_eff[None, :]
        self.n_rel[ch.rows] = self.rel.counts(ch.rows)

    def result(self, protocol: dict) -> dict[str, Any]:
        return {
            "metric": "recall@k",
            "k": list(self.ks),
            "recall": self.found.mean(axis=0).tolist(),
            "n_queries": len(self.found),
            "n_queries_with_relevant": int((self.n_rel > 0).sum()),
            "per_query_found": self.found,
            "protocol": dict(
                protocol,
                definition="Recall@K = fraction of queries with at least one relevant item (same group) in the top K",
            ),
        }


# --------------------------------------------------------------------------- public API
def evaluate(
    query_codes,
    db_codes,
    query_labels=None,
    db_labels=None,
    *,
    query_groups=None,
    db_groups=None,
    metrics: Sequence[str] = ("map",),
    topk: int | None = 50,
    denominator: str = "all_queries",
    normalize: str = "hits_in_topk",
    tie_break: str = "stable_index",
    radius: int = 2,
    radius_denominator: str = "queries_with_relevant",
    empty_precision: str = "zero",
    r_values: Sequence[int] = DEFAULT_R_VALUES,
    r_denominator: str = "all_queries",
    recall_ks: Sequence[int] = DEFAULT_RECALL_KS,
    memory_mb: float = DEFAULT_MEMORY_MB,
    chunk_size: int | None = None,
    progress: bool = False,
    names: tuple[str, str] = ("query_codes", "db_codes"),
) -> dict[str, dict[str, Any]]:
    """Several metrics of one retrieval direction from a single pass over the Hamming distances.

    ``metrics`` is any of ``"map"`` (mAP@topk), ``"map_all"`` (mAP over the full ranking),
    ``"precision_radius"``, ``"pr_curve"``, ``"precision_top_r"`` (these need labels) and
    ``"recall"`` (Recall@K; needs groups). Returns ``{metric: result dict}``; every result dict
    carries a ``protocol`` entry with the options used.
    """
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise DataError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    topk = _topk(topk)
    denominator = _option("denominator", denominator, DENOMINATORS)
    normalize = _option("normalize", normalize, NORMALIZATIONS)
    tie_break = _option("tie_break", tie_break, TIE_BREAKS)
    radius_denominator = _option("radius_denominator", radius_denominator, DENOMINATORS[:2])
    r_denominator = _option("r_denominator", r_denominator, DENOMINATORS[:2])
    empty_precision = _option("empty_precision", empty_precision, EMPTY_PRECISION)
    q, d = _pair_codes(query_codes, db_codes, names)
    ctx = _Context(q, d, tie_break, memory_mb)
    base = {"tie_break": tie_break, "bits": q.bits, "distance": "hamming"}

    label_metrics = [m for m in metrics if m != "recall"]
    lrel = grel = None
    if label_metrics:
        if query_labels is None or db_labels is None:
            raise DataError(f"metric(s) {', '.join(label_metrics)} need query_labels and db_labels (relevance = sharing a label)")
        lrel = _LabelRelevance(query_labels, db_labels, q.n, d.n)
    if "recall" in metrics:
        if query_groups is None or db_groups is None:
            raise DataError("Recall@K needs query_groups and db_groups (relevance = same group, e.g. an image and its captions)")
        grel = _GroupRelevance(query_groups, db_groups, q.n, d.n)

    accs: dict[str, _Acc] = {}
    if "map" in metrics:
        accs["map"] = _MapAcc(ctx, lrel, topk, denominator, normalize)
    if "map_all" in metrics:
        accs["map_all"] = _MapAcc(ctx, lrel, None, denominator, normalize)
    if "precision_radius" in metrics or "pr_curve" in metrics:
        if int(radius) < 0:
            raise DataError(f"radius must be >= 0; got {radius}")
        accs["radius"] = _RadiusAcc(ctx, lrel, radius_denominator, empty_precision, int(radius), full="pr_curve" in metrics)
    if "precision_top_r" in metrics:
        accs["precision_top_r"] = _PrecisionTopRAcc(ctx, lrel, _positive_ints("r_values", r_values), r_denominator)
    if "recall" in metrics:
        accs["recall"] = _RecallAcc(ctx, grel, _positive_ints("recall_ks", recall_ks))
    _run(ctx, list(accs.values()), chunk_size, progress)

    lbase = dict(base, relevance=_LabelRelevance.kind)
    out: dict[str, dict[str, Any]] = {}
    if "map" in metrics:
        out["map"] = accs["map"].result(lbase)
    if "map_all" in metrics:
        out["map_all"] = accs["map_all"].result(lbase)
    if "precision_radius" in metrics:
        out["precision_radius"] = accs["radius"].radius_result(int(radius), lbase)
    if "pr_curve" in metrics:
        out["pr_curve"] = accs["radius"].pr_result(lbase)
    if "precision_top_r" in metrics:
        out["precision_top_r"] = accs["precision_top_r"].result(lbase)
    if "recall" in metrics:
        out["recall"] = accs["recall"].result(dict(base, relevance=_GroupRelevance.kind))
    return out


def map_at_k(
    query_codes,
    db_codes,
    query_labels,
    db_labels,
    topk: int | None = 50,
    *,
    denominator: str = "all_queries",
    normalize: str = "hits_in_topk",
    tie_break: str = "stable_index",
    memory_mb: float = DEFAULT_MEMORY_MB,
    chunk_size: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """mAP@K (``topk=None``: full ranking) as a result dict: value, per-query AP, counts, protocol."""
    return evaluate(
        query_codes, db_codes, query_labels, db_labels, metrics=("map",), topk=topk, denominator=denominator,
        normalize=normalize, tie_break=tie_break, memory_mb=memory_mb, chunk_size=chunk_size, progress=progress,
    )["map"]


def mean_average_precision(
    query_codes,
    db_codes,
    query_labels,
    db_labels,
    topk: int | None = 50,
    *,
    denominator: str = "all_queries",
    normalize: str = "hits_in_topk",
    tie_break: str = "stable_index",
    return_result: bool = False,
    memory_mb: float = DEFAULT_MEMORY_MB,
    chunk_size: int | None = None,
    progress: bool = False,
):
    """mAP@K with the DJSRH definition by default; ``topk=None`` ranks the whole database.

    Codes are +-1 or 0/1 arrays (n, bits); labels multi-hot (n, c) or 1-D class ids. Returns a
    float, or with ``return_result=True`` the result dict of :func:`map_at_k` (with ``protocol``).
    """
    res = map_at_k(
        query_codes, db_codes, query_labels, db_labels, topk, denominator=denominator, normalize=normalize,
        tie_break=tie_break, memory_mb=memory_mb, chunk_size=chunk_size, progress=progress,
    )
    return res if return_result else res["value"]


def precision_at_top_r(
    query_codes,
    db_codes,
    query_labels,
    db_labels,
    r_values: Sequence[int] = DEFAULT_R_VALUES,
    *,
    denominator: str = "all_queries",
    tie_break: str = "stable_index",
    memory_mb: float = DEFAULT_MEMORY_MB,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """Precision of the first R items of the Hamming ranking, for each R (JDSH ``p_topK``)."""
    return evaluate(
        query_codes, db_codes, query_labels, db_labels, metrics=("precision_top_r",), r_values=r_values,
        r_denominator=denominator, tie_break=tie_break, memory_mb=memory_mb, chunk_size=chunk_size,
    )["precision_top_r"]


def pr_curve(
    query_codes,
    db_codes,
    query_labels,
    db_labels,
    *,
    denominator: str = "queries_with_relevant",
    empty_precision: str = "zero",
    memory_mb: float = DEFAULT_MEMORY_MB,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """Precision and recall of Hamming-ball retrieval for every radius r = 0..bits.

    P(r) is 0 for a query that retrieves nothing (``empty_precision="zero"``; the count of such
    queries per radius is reported) or such queries are left out of P(r) (``"skip"``).
    """
    return evaluate(
        query_codes, db_codes, query_labels, db_labels, metrics=("pr_curve",), radius_denominator=denominator,
        empty_precision=empty_precision, memory_mb=memory_mb, chunk_size=chunk_size,
    )["pr_curve"]


def precision_within_radius(
    query_codes,
    db_codes,
    query_labels,
    db_labels,
    radius: int = 2,
    *,
    denominator: str = "queries_with_relevant",
    empty_precision: str = "zero",
    memory_mb: float = DEFAULT_MEMORY_MB,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """Precision of the items within Hamming distance <= radius (the PR curve's P at that radius)."""
    return evaluate(
        query_codes, db_codes, query_labels, db_labels, metrics=("precision_radius",), radius=radius,
        radius_denominator=denominator, empty_precision=empty_precision, memory_mb=memory_mb, chunk_size=chunk_size,
    )["precision_radius"]


def recall_at_k(
    query_codes,
    db_codes,
    query_groups,
    db_groups,
    ks: Sequence[int] = DEFAULT_RECALL_KS,
    *,
    tie_break: str = "stable_index",
    memory_mb: float = DEFAULT_MEMORY_MB,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """Recall@K for pair-identity data: share of queries with an item of their group in the top K."""
    return evaluate(
        query_codes, db_codes, query_groups=query_groups, db_groups=db_groups, metrics=("recall",),
        recall_ks=ks, tie_break=tie_break, memory_mb=memory_mb, chunk_size=chunk_size,
    )["recall"]


def top_k(
    query_codes,
    db_codes,
    k: int,
    *,
    tie_break: str = "stable_index",
    memory_mb: float = DEFAULT_MEMORY_MB,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact Hamming top-k: (indices (nq, k) int64, distances (nq, k)) ordered under ``tie_break``."""
    tie_break = _option("tie_break", tie_break, TIE_BREAKS)
    k = _topk(k)
    if k is None:
        raise DataError("top_k needs a positive integer k")
    q, d = _pair_codes(query_codes, db_codes)
    ctx = _Context(q, d, tie_break, memory_mb)
    k = min(k, d.n)

    class _Collect(_Acc):
        def __init__(self):
            self.k = k
            self.idx = np.empty((q.n, k), dtype=np.int64)
            self.dist = np.empty((q.n, k), dtype=ctx.dist_dtype)

        def bytes_per_pair(self, nd: int) -> float:
            return 9 * k / nd

        def update(self, ch: _Chunk) -> None:
            idx = ch.order(k)
            self.idx[ch.rows] = idx
            self.dist[ch.rows] = np.take_along_axis(ch.dist, idx, axis=1)

    acc = _Collect()
    _run(ctx, [acc], chunk_size, False)
    return acc.idx, acc.dist


def _cosine_top(q: np.ndarray, d: np.ndarray, k: int, chunk_size: int):
    """``(rows, order)`` per chunk of queries: the ``k`` database items of highest cosine similarity,
    ties in database-index order (the ranking of the ``*_dense`` metrics)."""
    qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    dn = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    for s in range(0, len(q), chunk_size):
        rows = slice(s, min(s + chunk_size, len(q)))
        yield rows, np.argsort(-(qn[rows] @ dn.T), axis=1, kind="stable")[:, :k]


def recall_at_k_dense(
    query,
    db,
    query_groups,
    db_groups,
    ks: Sequence[int] = DEFAULT_RECALL_KS,
    *,
    chunk_size: int = 1024,
) -> dict[str, Any]:
    """Recall@K by **cosine** ranking of real-valued embeddings (e.g. a hashing net before the sign).

    The reference that binary codes lose against: same definition as :func:`recall_at_k` (share of
    queries with an item of their group among the top K), ties broken by database index.
    """
    ks = _positive_ints("ks", ks)
    q = np.asarray(query, dtype=np.float32)
    d = np.asarray(db, dtype=np.float32)
    if q.ndim != 2 or d.ndim != 2 or q.shape[1] != d.shape[1]:
        raise DataError(f"recall_at_k_dense: query {q.shape} and database {d.shape} must be 2-D with the same width")
    qg, dg = np.asarray(query_groups), np.asarray(db_groups)
    if len(qg) != len(q) or len(dg) != len(d):
        raise DataError("recall_at_k_dense: one group per query row and per database row")
    kmax = min(max(ks), len(d))
    hits = np.zeros((len(q), kmax), dtype=bool)
    for rows, order in _cosine_top(q, d, kmax, chunk_size):
        hits[rows] = dg[order] == qg[rows, None]
    first = np.cumsum(hits, axis=1) > 0
    out = {f"recall@{k}": float(first[:, min(k, kmax) - 1].mean()) if len(q) else 0.0 for k in ks}
    out["n_queries"] = int(len(q))
    out["n_database"] = int(len(d))
    out["protocol"] = {"ranking": "cosine", "tie_break": "stable_index", "relevance": "same group"}
    return out


def map_at_k_dense(
    query,
    db,
    query_labels,
    db_labels,
    topk: int = 50,
    *,
    chunk_size: int = 1024,
) -> dict[str, Any]:
    """mAP@K by **cosine** ranking of real-valued vectors, DJSRH definition (``hits_in_topk``,
    ``all_queries``), ties by database index.

    What the input features alone are worth: ranking a modality's own features (image features
    against image features) says how much of the label structure they carry, the ceiling a hashing
    method that learns from feature similarities starts from. On ±1 codes it equals
    :func:`map_at_k` (cosine is then ``1 - 2 * hamming / bits``, the same order).
    """
    k = _topk(topk)
    if k is None:
        raise DataError("map_at_k_dense: topk must be a positive integer (the full ranking is not supported here)")
    q = np.asarray(query, dtype=np.float64)
    d = np.asarray(db, dtype=np.float64)
    if q.ndim != 2 or d.ndim != 2 or q.shape[1] != d.shape[1]:
        raise DataError(f"map_at_k_dense: query {q.shape} and database {d.shape} must be 2-D with the same width")
    if not (np.isfinite(q).all() and np.isfinite(d).all()):
        raise DataError("map_at_k_dense: the vectors hold NaN or infinite values")
    rel = _LabelRelevance(query_labels, db_labels, len(q), len(d))
    kk = min(k, len(d))
    ap = np.zeros(len(q))
    ranks = np.arange(1, kk + 1)
    for rows, order in _cosine_top(q, d, kk, chunk_size):
        hit = rel.pairs(rows, order)
        found = np.cumsum(hit, axis=1)
        n_hit = found[:, -1] if kk else np.zeros(order.shape[0])
        ap[rows] = np.where(n_hit > 0, (hit * found / ranks).sum(axis=1) / np.maximum(n_hit, 1), 0.0)
    return {
        "value": float(ap.mean()) if len(q) else 0.0,
        "per_query": ap,
        "n_queries": int(len(q)),
        "n_database": int(len(d)),
        "protocol": {"ranking": "cosine", "topk": k, "denominator": "all_queries", "normalize": "hits_in_topk",
                     "tie_break": "stable_index", "relevance": rel.kind},
    }


# --------------------------------------------------------------------------- cross-modal report
def _one_row_per_group(codes, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Keep the first row of each group; also count groups whose rows have differing codes."""
    codes = np.asarray(codes.detach().cpu().numpy() if hasattr(codes, "detach") else codes)
    _, first, inv = np.unique(groups, return_index=True, return_inverse=True)
    differing = np.any(codes != codes[first[inv]], axis=1)
    keep = np.sort(first)
    return codes[keep], groups[keep], int(len(np.unique(inv[differing])))


def cross_modal_report(
    query_image,
    query_text,
    db_image,
    db_text,
    query_labels=None,
    db_labels=None,
    *,
    query_groups=None,
    db_groups=None,
    tasks: Sequence[str] = ("i2t", "t2i"),
    topk: int | None = 50,
    denominator: str = "all_queries",
    normalize: str = "hits_in_topk",
    tie_break: str = "stable_index",
    radius: int = 2,
    full_map: bool = False,
    curves: bool = False,
    r_values: Sequence[int] = DEFAULT_R_VALUES,
    recall_ks: Sequence[int] = DEFAULT_RECALL_KS,
    memory_mb: float = DEFAULT_MEMORY_MB,
    chunk_size: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Cross-modal retrieval metrics for image/text codes: the one producer of ``metrics.json``.

    Returns ``{"i2t": {...}, "t2i": {...}, "protocol": {...}}`` (plus ``"i2i"``/``"t2t"`` when
    asked in ``tasks``). With labels each task has ``"map@<topk>"`` (``"map@all"`` when topk is
    None), ``"precision@radius<r>"``, counts, and with ``full_map=True`` ``"map@all"``; with
    ``curves=True`` a ``"curves"`` entry holds the PR curve and precision@top-R. With groups
    (pair identity) each task has ``"recall@<k>"``; the image side then keeps one row per group
    (the first), since an image repeated for each of its captions is one item.
    """
    tasks = tuple(tasks)
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise DataError(f"tasks must be a non-empty subset of {', '.join(TASKS)}; got {list(tasks)}")
    has_labels = query_labels is not None or db_labels is not None
    has_groups = query_groups is not None or db_groups is not None
    if has_labels and (query_labels is None or db_labels is None):
        raise DataError("give both query_labels and db_labels (or neither)")
    if has_groups and (query_groups is None or db_groups is None):
        raise DataError("give both query_groups and db_groups (or neither)")
    if not has_labels and not has_groups:
        raise DataError("nothing defines relevance: give labels (query_labels/db_labels) or pair-identity groups (query_groups/db_groups)")
    topk = _topk(topk)
    denominator = _option("denominator", denominator, DENOMINATORS)
    normalize = _option("normalize", normalize, NORMALIZATIONS)
    tie_break = _option("tie_break", tie_break, TIE_BREAKS)

    sides = {"query": {"image": query_image, "text": query_text}, "db": {"image": db_image, "text": db_text}}
    for task in tasks:
        for side, mod in zip(("query", "db"), TASKS[task]):
            if sides[side][mod] is None:
                raise DataError(f"task {task} needs {side}_{mod} codes, which were not given")

    label_metrics = ["map"] if topk is not None else ["map_all"]
    if full_map and topk is not None:
        label_metrics.append("map_all")
    label_metrics.append("precision_radius")
    if curves:
        label_metrics += ["pr_curve", "precision_top_r"]

    protocol: dict[str, Any] = {
        "topk": topk,
        "denominator": denominator,
        "normalize": normalize,
        "tie_break": tie_break,
        "tasks": list(tasks),
    }
    report: dict[str, Any] = {}
    pair_images: dict[str, int] = {}
    for task in tasks:
        qmod, dmod = TASKS[task]
        entry: dict[str, Any] = {}
        if has_labels:
            res = evaluate(
                sides["query"][qmod], sides["db"][dmod], query_labels, db_labels, metrics=label_metrics, topk=topk,
                denominator=denominator, normalize=normalize, tie_break=tie_break, radius=radius,
                r_values=r_values, memory_mb=memory_mb, chunk_size=chunk_size, progress=progress,
                names=(f"query_{qmod}", f"db_{dmod}"),
            )
            main = res["map"] if topk is not None else res["map_all"]
            entry[main["metric"]] = main["value"]
            if "map_all" in res and topk is not None:
                entry["map@all"] = res["map_all"]["value"]
            entry[res["precision_radius"]["metric"]] = res["precision_radius"]["value"]
            entry["n_queries"] = main["n_queries"]
            entry["n_database"] = main["n_database"]
            entry["n_queries_with_relevant"] = main["n_queries_with_relevant"]
            if curves:
                entry["curves"] = {
                    "pr": {k: res["pr_curve"][k] for k in ("radius", "precision", "recall", "queries_with_empty_retrieval")},
                    "precision_at_top_r": {k: res["precision_top_r"][k] for k in ("r", "effective_r", "precision")},
                }
            protocol.update(
                bits=main["protocol"]["bits"],
                relevance=main["protocol"]["relevance"],
                definition=_MAP_DEFINITIONS[normalize],
                radius=int(radius),
                radius_protocol={k: res["precision_radius"]["protocol"][k] for k in ("denominator", "empty_precision", "definition")},
            )
            if curves:
                protocol["precision_at_top_r_protocol"] = {
                    "denominator": res["precision_top_r"]["protocol"]["denominator"],
                    "definition": res["precision_top_r"]["protocol"]["definition"],
                }
        if has_groups:
            qc, dc = sides["query"][qmod], sides["db"][dmod]
            qg, dg = np.asarray(query_groups), np.asarray(db_groups)
            if qmod == "image":
                qc, qg, n_diff = _one_row_per_group(qc, qg)
                pair_images.update(query_images=len(qg), query_groups_with_differing_image_codes=n_diff)
            if dmod == "image":
                dc, dg, n_diff = _one_row_per_group(dc, dg)
                pair_images.update(db_images=len(dg), db_groups_with_differing_image_codes=n_diff)
            res = evaluate(
                qc, dc, query_groups=qg, db_groups=dg, metrics=("recall",), tie_break=tie_break,
                recall_ks=recall_ks, memory_mb=memory_mb, chunk_size=chunk_size, progress=progress,
                names=(f"query_{qmod}", f"db_{dmod}"),
            )["recall"]
            for k, v in zip(res["k"], res["recall"]):
                entry[f"recall@{k}"] = v
            entry["recall_n_queries" if has_labels else "n_queries"] = res["n_queries"]
            protocol.update(
                bits=res["protocol"]["bits"],
                recall_ks=list(res["k"]),
                recall_protocol={
                    "relevance": res["protocol"]["relevance"],
                    "definition": res["protocol"]["definition"],
                    "image_rows": "one per group (the first row of each group)",
                },
            )
        report[task] = entry
    if pair_images:
        protocol["recall_protocol"].update(pair_images)
    if not has_labels:
        protocol["relevance"] = _GroupRelevance.kind
    if curves:
        protocol["r_values"] = list(r_values)
    from cmhash import __version__

    protocol["cmhash_version"] = __version__
    report["protocol"] = protocol
    return report
