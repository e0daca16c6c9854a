"""The ``milvus`` backend: BINARY_VECTOR + HAMMING in a Milvus collection (BIN_FLAT or BIN_IVF_FLAT).

For collections that outgrow one machine. Everything lives in Milvus, so several processes (a
search service, a batch job) can share one collection and the saved index file is only a
pointer to it (URI, collection, parameters; never the token).

Collection schema: ``pk`` (the item id: INT64, or VARCHAR for string ids), ``seq`` (INT64 insertion
stamp, the tie-breaker), ``vec`` (BINARY_VECTOR, packed bytes as numpy.packbits writes them),
``meta`` (JSON; an item without metadata stores ``{}``). Milvus does not enforce unique primary
keys, so ``add`` checks for existing ids itself.

Results agree with the numpy and faiss backends: distances exactly, and ids too for BIN_FLAT --
Milvus's order among equal distances is arbitrary, so each query fetches a few extra hits, sorts
by (distance, insertion stamp) and fetches more when ties straddle the k-th place (up to Milvus's
16384-hit limit). The token comes from ``token=`` or the ``CMHASH_MILVUS_TOKEN`` variable.

Consistency: reads use Milvus's "Session" level by default (this client always sees its own
writes; a "Strong" read waits ~0.2 s for a time tick on every call); opening an existing
collection does one "Strong" read first so that it sees everything written before.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any, Sequence

import numpy as np

from cmhash.errors import CmhashError, DataError, require
from cmhash.index.base import BinaryIndex, check_k, check_metadata, check_options
from cmhash.index.idmap import check_unique, normalize_ids, show_ids
from cmhash.index.registry import INDEX_BACKENDS

INDEX_TYPES = ("BIN_FLAT", "BIN_IVF_FLAT")
MAX_TOPK = 16384  # Milvus refuses a larger limit per query
_IN_CHUNK = 1000  # ids per `pk in [...]` expression
_RESULTS_PER_CALL = 1 << 17  # nq * limit per search request
_MAX_NQ = 1024


def _pymilvus():
    return require("pymilvus", "the Milvus index backend", extra="milvus")


@INDEX_BACKENDS.register("milvus")
class MilvusIndex(BinaryIndex):
    """Hamming search in a Milvus collection; see the module docstring."""

    backend = "milvus"

    def __init__(
        self,
        bits: int,
        uri: str = "http://127.0.0.1:19530",
        collection: str = "cmhash",
        index_type: str = "BIN_FLAT",
        nlist: int = 1024,
        nprobe: int = 16,
        token: str | None = None,
        db_name: str = "default",
        id_type: str | None = None,
        max_id_length: int = 512,
        if_exists: str = "error",
        consistency_level: str = "Session",
        insert_batch: int = 50_000,
        timeout: float = 120.0,
        **options: Any,
    ):
        check_options(self.backend, options, ["uri", "collection", "index_type", "nlist", "nprobe", "token", "db_name", "id_type", "max_id_length", "if_exists", "consistency_level", "insert_batch", "timeout"])
        super().__init__(bits)
        index_type = str(index_type).upper()
        if index_type not in INDEX_TYPES:
            raise DataError(f"milvus index: index_type must be one of {', '.join(INDEX_TYPES)}, got {index_type!r}")
        if if_exists not in ("error", "drop", "open"):
            raise DataError(f"milvus index: if_exists must be 'error', 'drop' or 'open', got {if_exists!r}")
        if id_type not in (None, "int", "str"):
            raise DataError(f"milvus index: id_type must be 'int' or 'str', got {id_type!r}")
        self.uri, self.collection_name, self.index_type = str(uri), str(collection), index_type
        self.nlist, self.nprobe = int(nlist), int(nprobe)
        self.db_name, self.max_id_length = db_name, int(max_id_length)
        self.consistency_level, self.insert_batch, self.timeout = consistency_level, int(insert_batch), float(timeout)
        self.id_kind: str | None = id_type
        self._last_seq = 0
        self._pm = _pymilvus()
        self._alias = f"cmhash-{uuid.uuid4().hex[:12]}"
        self._connect(token if token is not None else os.environ.get("CMHASH_MILVUS_TOKEN", ""))
        self._col = None
        utility = self._pm.utility
        if utility.has_collection(self.collection_name, using=self._alias):
            if if_exists == "error":
                raise DataError(
                    f"Milvus collection '{self.collection_name}' already exists at {self.uri}; open it with "
                    "load_index(saved_file) or if_exists='open', or replace it with if_exists='drop'"
                )
            if if_exists == "drop":
                utility.drop_collection(self.collection_name, using=self._alias)
            else:
                self._open_existing()
        if self._col is None and self.id_kind is not None:
            self._create(self.id_kind)

    # ----------------------------------------------------------- connection
    def _connect(self, token: str) -> None:
        try:
            self._pm.connections.connect(alias=self._alias, uri=self.uri, token=token, db_name=self.db_name, timeout=min(self.timeout, 30))
        except Exception as exc:
            raise CmhashError(
                f"cannot connect to Milvus at {self.uri} ({type(exc).__name__}: {exc}); is the server running and the URI right? "
                "(set the token with CMHASH_MILVUS_TOKEN if the cluster needs one)"
            ) from None

    def close(self) -> None:
        try:
            self._pm.connections.disconnect(self._alias)
        except Exception:  # pragma: no cover - already gone
            pass

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    def _description(self) -> str:
        return json.dumps({"cmhash": 1, "bits": self.bits, "id_type": self.id_kind})

    def _open_existing(self) -> None:
        col = self._pm.Collection(self.collection_name, using=self._alias)
        try:
            info = json.loads(col.description or "{}")
        except json.JSONDecodeError:
            info = {}
        if info.get("cmhash") != 1:
            raise DataError(f"Milvus collection '{self.collection_name}' at {self.uri} was not created by cmhash; choose another name")
        if int(info.get("bits", -1)) != self.bits:
            raise DataError(f"Milvus collection '{self.collection_name}' holds {info.get('bits')}-bit codes, not {self.bits}-bit")
        if self.id_kind is not None and info.get("id_type") not in (None, self.id_kind):
            raise DataError(f"Milvus collection '{self.collection_name}' uses {info.get('id_type')} ids, not {self.id_kind}")
        self.id_kind = info.get("id_type")
        self._col = col
        self._load()
        # catch up once with everything written before (by any client); later reads are "Session":
        # they see this client's own writes without waiting a time tick on every call
        self._catch_up()

    def _load(self) -> None:
        """Load the collection for search, polling briskly (pymilvus's own wait sleeps 0.5 s per check)."""
        self._col.load(timeout=self.timeout, _async=True)
        deadline = time.time() + self.timeout
        while True:
            progress = self._pm.utility.loading_progress(self.collection_name, using=self._alias)
            if str(progress.get("loading_progress", "")).startswith("100"):
                return
            if time.time() > deadline:
                raise CmhashError(f"Milvus collection '{self.collection_name}' did not load within {self.timeout:.0f} s")
            time.sleep(0.05)

    def _create(self, id_kind: str) -> None:
        pm = self._pm
        if id_kind == "int":
            pk = pm.FieldSchema("pk", pm.DataType.INT64, is_primary=True, auto_id=False)
        else:
            pk = pm.FieldSchema("pk", pm.DataType.VARCHAR, is_primary=True, auto_id=False, max_length=self.max_id_length)
        fields = [
            pk,
            pm.FieldSchema("seq", pm.DataType.INT64),
            pm.FieldSchema("vec", pm.DataType.BINARY_VECTOR, dim=self.width * 8),
            pm.FieldSchema("meta", pm.DataType.JSON),
        ]
        self.id_kind = id_kind
        schema = pm.CollectionSchema(fields, description=self._description())
        col = pm.Collection(self.collection_name, schema, using=self._alias, consistency_level=self.consistency_level)
        params = {"nlist": self.nlist} if self.index_type == "BIN_IVF_FLAT" else {}
        col.create_index("vec", {"index_type": self.index_type, "metric_type": "HAMMING", "params": params}, timeout=self.timeout)
        self._col = col
        self._load()

    # ----------------------------------------------------------- helpers
    def options(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "collection": self.collection_name,
            "index_type": self.index_type,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "db_name": self.db_name,
            "max_id_length": self.max_id_length,
            "consistency_level": self.consistency_level,
        }

    @property
    def exact(self) -> bool:
        return self.index_type == "BIN_FLAT"

    def _expr(self, ids: np.ndarray) -> str:
        values = ids.tolist()
        return "pk in " + (json.dumps(values) if self.id_kind == "str" else "[" + ",".join(str(int(v)) for v in values) + "]")

    def _query(self, ids: np.ndarray, fields: Sequence[str]) -> dict[Any, dict]:
        """pk -> entity for the given ids that exist."""
        out: dict[Any, dict] = {}
        if self._col is None:
            return out
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            rows = self._col.query(self._expr(chunk), output_fields=list(fields), consistency_level=self.consistency_level, timeout=self.timeout)
            for row in rows:
                out[row["pk"]] = row
        return out

    def _norm(self, ids, what: str = "ids") -> np.ndarray:
        return normalize_ids(ids, self.id_kind, what)

    def _next_seqs(self, n: int) -> np.ndarray:
        """Insertion stamps: nanosecond clock, strictly increasing within this process."""
        start = max(time.time_ns(), self._last_seq + 1)
        self._last_seq = start + n - 1
        return np.arange(start, start + n, dtype=np.int64)

    # ----------------------------------------------------------- API
    @property
    def count(self) -> int:
        if self._col is None:
            return 0
        rows = self._col.query("", output_fields=["count(*)"], consistency_level=self.consistency_level, timeout=self.timeout)
        return int(rows[0]["count(*)"])

    def add(self, ids, codes, metadata=None) -> None:
        packed = self._packed(codes)
        arr = self._norm(ids)
        check_unique(arr)
        if len(arr) != len(packed):
            raise DataError(f"{len(arr)} ids for {len(packed)} codes; give one id per code")
        meta = check_metadata(metadata, len(arr))
        if len(arr) == 0:
            return
        if arr.dtype.kind == "U":
            too_long = np.flatnonzero(np.char.str_len(arr) > self.max_id_length)
            if len(too_long):
                raise DataError(f"ids longer than max_id_length={self.max_id_length}: {show_ids(arr[too_long])}")
        if self._col is None:
            self._create("str" if arr.dtype.kind == "U" else "int")
        elif self.count:
            existing = self._query(arr, ["pk"])
            if existing:
                raise DataError(f"ids already in the index: {show_ids(sorted(existing))}; remove them first or use new ids")
        seqs = self._next_seqs(len(arr))
        pks = arr.tolist()
        for start in range(0, len(arr), self.insert_batch):
            stop = start + self.insert_batch
            vecs = [bytes(row) for row in packed[start:stop]]
            metas = [m or {} for m in meta[start:stop]] if meta is not None else [{}] * len(vecs)
            self._col.insert([pks[start:stop], seqs[start:stop].tolist(), vecs, metas], timeout=self.timeout)

    def remove(self, ids, *, missing_ok: bool = False) -> int:
        arr = self._norm(ids, "ids to remove")
        check_unique(arr, "ids to remove")
        existing = self._query(arr, ["pk"])
        missing = [v for v in arr.tolist() if v not in existing]
        if missing and not missing_ok:
            raise DataError(f"ids to remove: unknown id(s) {show_ids(missing)} (not in the index)")
        present = np.asarray([v for v in arr.tolist() if v in existing], dtype=arr.dtype)
        for start in range(0, len(present), _IN_CHUNK):
            self._col.delete(self._expr(present[start : start + _IN_CHUNK]), timeout=self.timeout)
        if len(present):
            self._catch_up()  # Milvus 2.3 returns no timestamp for a delete, so a Session read could miss it
        return len(present)

    def _catch_up(self) -> None:
        """One Strong read: wait until the server has applied every write made so far."""
        self._col.query("", output_fields=["count(*)"], consistency_level="Strong", timeout=self.timeout)

    def contains(self, ids) -> np.ndarray:
        arr = self._norm(ids)
        existing = self._query(arr, ["pk"])
        return np.asarray([v in existing for v in arr.tolist()], dtype=bool)

    def _fetch(self, ids, field: str) -> list:
        arr = self._norm(ids)
        rows = self._query(arr, [field])
        missing = [v for v in arr.tolist() if v not in rows]
        if missing:
            raise DataError(f"ids: unknown id(s) {show_ids(missing)} (not in the index)")
        return [rows[v][field] for v in arr.tolist()]

    def get_codes(self, ids) -> np.ndarray:
        vecs = self._fetch(ids, "vec")
        out = np.zeros((len(vecs), self.width), np.uint8)
        for j, v in enumerate(vecs):
            out[j] = np.frombuffer(v[0] if isinstance(v, list) else v, dtype=np.uint8)
        return out

    def get_metadata(self, ids) -> list[dict | None]:
        return [m or None for m in self._fetch(ids, "meta")]

    def search(self, query_codes, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = check_k(k)
        q = self._packed(query_codes, "query codes")
        n = self.count
        if k > MAX_TOPK and n > MAX_TOPK:
            raise DataError(f"milvus index: k={k} but Milvus returns at most {MAX_TOPK} results per query; ask for k <= {MAX_TOPK}")
        k = min(k, n)
        id_dtype = np.int64 if self.id_kind != "str" else str
        out_ids = np.empty((len(q), k), dtype=object)
        out_d = np.empty((len(q), k), dtype=np.int32)
        if k == 0 or len(q) == 0:
            return out_ids.astype(id_dtype), out_d
        limit = min(MAX_TOPK, n, k + max(16, k // 2))
        todo = np.arange(len(q))
        while len(todo):
            retry = []
            per_call = max(1, min(_MAX_NQ, _RESULTS_PER_CALL // limit))
            for start in range(0, len(todo), per_call):
                rows = todo[start : start + per_call]
                for row, hits in zip(rows.tolist(), self._search_raw(q[rows], limit)):
                    ids_r, dist_r, seq_r = hits
                    order = np.lexsort((seq_r, dist_r))
                    resolved = len(dist_r) < limit or limit >= min(MAX_TOPK, n) or dist_r[order[limit - 1]] > dist_r[order[k - 1]]
                    if not resolved:
                        retry.append(row)
                        continue
                    take = order[:k]
                    if len(take) < k:
                        raise CmhashError(f"Milvus returned {len(take)} hits for k={k} (count {n}); the collection changed during the search?")
                    out_ids[row] = [ids_r[j] for j in take.tolist()]
                    out_d[row] = dist_r[take]
            todo = np.asarray(retry, dtype=np.int64)
            limit = min(MAX_TOPK, n, limit * 4)
        return out_ids.astype(id_dtype), out_d

    def _search_params(self) -> dict[str, Any]:
        params = {"nprobe": self.nprobe} if self.index_type == "BIN_IVF_FLAT" else {}
        return {"metric_type": "HAMMING", "params": params}

    def _search_raw(self, packed: np.ndarray, limit: int) -> list[tuple[list, np.ndarray, np.ndarray]]:
        res = self._col.search(
            [bytes(row) for row in packed],
            "vec",
            self._search_params(),
            limit=limit,
            output_fields=["seq"],
            consistency_level=self.consistency_level,
            timeout=self.timeout,
        )
        out = []
        for hits in res:
            dist = np.rint(np.asarray(hits.distances, dtype=np.float64)).astype(np.int32)
            seq = np.asarray([hit.entity.get("seq") for hit in hits], dtype=np.int64)
            out.append((list(hits.ids), dist, seq))
        return out

    def flush(self, wait_index: bool = True) -> None:
        """Seal the inserted data (durable). With ``wait_index``, also wait until the sealed
        segments are indexed and reload the collection so that searches use the index (until
        then Milvus scans new segments brute force: exact, but not the IVF speed)."""
        if self._col is None:
            return
        self._col.flush(timeout=self.timeout)
        if wait_index:
            self._pm.utility.wait_for_index_building_complete(self.collection_name, using=self._alias, timeout=self.timeout)
            self._col.release(timeout=self.timeout)
            self._load()

    def drop(self) -> None:
        """Delete the Milvus collection (the data is gone)."""
        if self._pm.utility.has_collection(self.collection_name, using=self._alias):
            self._pm.utility.drop_collection(self.collection_name, using=self._alias)
        self._col = None

    # ----------------------------------------------------------- state
    def _state(self, prefix: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
        self.flush(wait_index=False)
        from cmhash import __version__

        manifest = {
            "backend": self.backend,
            "bits": self.bits,
            "count": self.count,
            "id_kind": self.id_kind,
            "has_metadata": True,
            "options": self.options(),
            "state": {"layout": "milvus-collection"},
            "cmhash_version": __version__,
        }
        return manifest, {}

    @classmethod
    def _from_state(cls, manifest, sections, prefix: str = "", **overrides) -> "MilvusIndex":
        options = dict(manifest.get("options", {}))
        options.update(overrides)
        options["if_exists"] = "open"
        options["id_type"] = None  # never create the collection here: it must exist, or the index was empty
        index = cls(manifest["bits"], **options)
        if index._col is None and not manifest.get("count", 0):
            index.id_kind = manifest.get("id_kind")
        elif index._col is None:
            raise DataError(
                f"Milvus collection '{index.collection_name}' not found at {index.uri}; the index file points at a collection "
                "that was dropped or at another server (pass uri=... / --milvus-uri to point it elsewhere)"
            )
        return index
