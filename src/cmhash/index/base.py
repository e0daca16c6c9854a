"""The one interface every index backend implements, and the shared in-process machinery.

:class:`BinaryIndex` is what scripts use::

    index = create_index("faiss", bits=64)
    index.add(ids, codes, metadata=None)   # codes: (n, bits) +-1 or 0/1, or packed uint8 (n, bits/8)
    ids, dist = index.search(query_codes, k=10)   # (n_queries, k) each, best first
    index.remove(ids)
    index.save("my.index");  index = load_index("my.index")

Rules shared by all backends (checked here once):

* codes are validated by :func:`cmhash.codes.as_packed` (wrong width or a value other than +-1/0/1
  is an error naming the row); packed input with padding bits set is refused.
* ids are all integers or all strings; adding an id twice or removing an unknown id is an error
  naming the ids.
* results are ordered by Hamming distance, ties by insertion order; ``k`` larger than the number
  of codes returns every code (the result then has ``count`` columns).
* ``metadata`` is one JSON-serialisable dict (or None) per item, returned by ``get_metadata``.

:class:`LocalIndex` adds what the in-process backends (numpy, faiss) share: the id map, the
metadata list and the single-file save format of :mod:`cmhash.index.container`.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from cmhash import codes as C
from cmhash.errors import DataError
from cmhash.index.idmap import IdMap, check_unique, normalize_ids

FORMAT = "cmhash-index"


def check_bits(bits) -> int:
    try:
        b = int(bits)
    except (TypeError, ValueError):
        raise DataError(f"bits must be a positive integer, got {bits!r}") from None
    if b <= 0 or b != bits:
        raise DataError(f"bits must be a positive integer, got {bits!r}")
    return b


def check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise DataError(f"k must be a positive integer, got {k!r}")
    return int(k)


def check_options(backend: str, options: dict[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise DataError(f"{backend} index: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed)) or 'none (this backend takes no options)'}")


def check_metadata(metadata, n: int) -> list | None:
    """None, or a list of n JSON-serialisable dicts/None."""
    if metadata is None:
        return None
    if isinstance(metadata, dict):
        raise DataError("metadata: expected one dict per item (a list), got a single dict")
    items = list(metadata)
    if len(items) != n:
        raise DataError(f"metadata: {len(items)} entries for {n} codes; give one dict (or None) per item")
    for row, item in enumerate(items):
        if item is not None and not isinstance(item, dict):
            raise DataError(f"metadata: row {row} is a {type(item).__name__}; each entry must be a dict or None")
    try:
        json.dumps(items)
    except (TypeError, ValueError) as exc:
        raise DataError(f"metadata: not JSON-serialisable ({exc}); use str/int/float/list/dict values") from None
    return items


class BinaryIndex(ABC):
    """Binary codes searchable by Hamming distance; see the module docstring."""

    #: registry name of the backend
    backend: ClassVar[str] = "?"

    def __init__(self, bits: int):
        self.bits = check_bits(bits)
        self.width = C.packed_width(self.bits)

    # ----------------------------------------------------------------- inputs
    def _packed(self, codes, what: str = "codes") -> np.ndarray:
        """Validate codes of this index's width; return packed uint8 (n, width)."""
        packed = C.as_packed(codes, self.bits, what)
        pad = self.width * 8 - self.bits
        if pad and packed.size:
            mask = (1 << pad) - 1
            bad = np.flatnonzero(packed[:, -1] & mask)
            if len(bad):
                raise DataError(
                    f"{what}: row {bad[0]} has padding bits set in its last byte; packed {self.bits}-bit codes must be "
                    "zero-padded as numpy.packbits does (or pass the unpacked (n, bits) codes)"
                )
        return packed

    # ----------------------------------------------------------------- API
    @property
    @abstractmethod
    def count(self) -> int:
        """Number of codes in the index."""

    def __len__(self) -> int:
        return self.count

    @property
    def exact(self) -> bool:
        """True when search returns the exact top-k."""
        return True

    @abstractmethod
    def add(self, ids, codes, metadata: Sequence[dict | None] | None = None) -> None:
        """Add items: ``ids`` (n,) int or str, ``codes`` (n, bits) +-1/0-1 or packed (n, bits/8)."""

    @abstractmethod
    def remove(self, ids, *, missing_ok: bool = False) -> int:
        """Remove items by id; unknown ids raise unless ``missing_ok``. Returns how many were removed."""

    @abstractmethod
    def search(self, query_codes, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, distances) of the k nearest codes of each query, each (n_queries, min(k, count))."""

    @abstractmethod
    def get_codes(self, ids) -> np.ndarray:
        """Packed uint8 codes (n, bits/8) of the given ids."""

    @abstractmethod
    def get_metadata(self, ids) -> list[dict | None]:
        """Metadata dict (or None) of each id."""

    @abstractmethod
    def contains(self, ids) -> np.ndarray:
        """Boolean array: which ids are in the index."""

    def options(self) -> dict[str, Any]:
        """Construction options (what ``create_index`` needs to make an empty twin)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """A summary for `cmhash index info` and logs."""
        return {"backend": self.backend, "bits": self.bits, "count": self.count, "exact": self.exact, "options": self.options()}

    def save(self, path: str | Path) -> Path:
        """Write the index to one file atomically (a crash midway leaves the old file intact)."""
        from cmhash.index.container import write_container

        manifest, sections = self._state()
        manifest = {"format": FORMAT, "kind": "binary", **manifest, "saved": time.strftime("%Y-%m-%dT%H:%M:%S")}
        return write_container(path, manifest, sections)

    @abstractmethod
    def _state(self, prefix: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
        """(manifest entries, sections named ``prefix + name``) describing the whole index."""

    @classmethod
    @abstractmethod
    def _from_state(cls, manifest: dict[str, Any], sections: dict[str, Any], prefix: str = "", **overrides) -> "BinaryIndex":
        """Rebuild an index from :meth:`_state`'s output."""

    def close(self) -> None:
        """Release connections (remote backends)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} backend={self.backend} bits={self.bits} count={self.count}>"


class LocalIndex(BinaryIndex):
    """In-process backends: ids by position (insertion order) + metadata list + file state.

    Subclasses implement the position-level primitives ``_append``, ``_delete``, ``_search_pos``,
    ``_codes_at``, ``_backend_state`` and ``_restore``.
    """

    def __init__(self, bits: int):
        super().__init__(bits)
        self._idmap = IdMap()
        self._meta: list | None = None

    # ----------------------------------------------------------- primitives
    @abstractmethod
    def _append(self, packed: np.ndarray) -> None:
        """Append packed codes at the end (positions count .. count+n-1)."""

    @abstractmethod
    def _delete(self, positions: np.ndarray) -> None:
        """Delete codes at the given sorted positions; later codes keep their relative order."""

    @abstractmethod
    def _search_pos(self, packed_queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances int32, positions int64) of the top k (k <= count), each (nq, k)."""

    @abstractmethod
    def _codes_at(self, positions: np.ndarray) -> np.ndarray:
        """Packed codes at positions."""

    @abstractmethod
    def _backend_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(backend manifest entries, backend sections)."""

    @abstractmethod
    def _restore(self, state: dict[str, Any], sections: dict[str, np.ndarray]) -> None:
        """Load the backend part saved by ``_backend_state`` into a fresh instance."""

    # ----------------------------------------------------------- API
    @property
    def count(self) -> int:
        return len(self._idmap)

    @property
    def id_kind(self) -> str | None:
        return self._idmap.kind

    def ids(self) -> np.ndarray:
        """All ids in insertion order."""
        return self._idmap.ids.copy()

    def add(self, ids, codes, metadata=None) -> None:
        packed = self._packed(codes)
        arr = self._idmap.check_new(ids)
        if len(arr) != len(packed):
            raise DataError(f"{len(arr)} ids for {len(packed)} codes; give one id per code")
        meta = check_metadata(metadata, len(arr))
        if len(arr) == 0:
            return
        self._append(packed)
        self._idmap.append(arr)
        if meta is not None and self._meta is None:
            self._meta = [None] * (self.count - len(arr))
        if self._meta is not None:
            self._meta.extend(meta if meta is not None else [None] * len(arr))

    def remove(self, ids, *, missing_ok: bool = False) -> int:
        arr = normalize_ids(ids, self._idmap.kind)
        check_unique(arr, "ids to remove")
        pos = self._idmap.positions(arr, missing_ok=missing_ok)
        pos = np.sort(pos[pos >= 0])
        if len(pos) == 0:
            return 0
        self._delete(pos)
        self._idmap.delete(pos)
        if self._meta is not None:
            drop = set(pos.tolist())
            self._meta = [m for i, m in enumerate(self._meta) if i not in drop]
        return len(pos)

    def search(self, query_codes, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = check_k(k)
        q = self._packed(query_codes, "query codes")
        k = min(k, self.count)
        if k == 0 or len(q) == 0:
            return np.empty((len(q), k), self._idmap.ids.dtype), np.empty((len(q), k), np.int32)
        dist, pos = self._search_pos(q, k)
        return self._idmap.take(pos), dist

    def contains(self, ids) -> np.ndarray:
        arr = normalize_ids(ids, self._idmap.kind)
        return self._idmap.find(arr) >= 0

    def get_codes(self, ids) -> np.ndarray:
        return self._codes_at(self._idmap.positions(ids))

    def get_metadata(self, ids) -> list[dict | None]:
        pos = self._idmap.positions(ids)
        if self._meta is None:
            return [None] * len(pos)
        return [self._meta[p] for p in pos.tolist()]

    # ----------------------------------------------------------- state
    def _state(self, prefix: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
        backend_manifest, backend_sections = self._backend_state()
        sections: dict[str, Any] = {prefix + "ids": self._idmap.ids}
        if self._meta is not None:
            sections[prefix + "metadata"] = "\n".join(json.dumps(m) for m in self._meta).encode("utf-8")
        for name, value in backend_sections.items():
            sections[prefix + name] = value
        from cmhash import __version__

        manifest = {
            "backend": self.backend,
            "bits": self.bits,
            "count": self.count,
            "id_kind": self._idmap.kind,
            "has_metadata": self._meta is not None,
            "options": self.options(),
            "state": backend_manifest,
            "cmhash_version": __version__,
        }
        return manifest, sections

    @classmethod
    def _from_state(cls, manifest, sections, prefix: str = "", **overrides) -> "LocalIndex":
        options = dict(manifest.get("options", {}))
        options.update(overrides)
        index = cls(manifest["bits"], **options)
        try:
            ids = sections[prefix + "ids"]
            index._idmap = IdMap(manifest.get("id_kind"), ids)
            if manifest.get("has_metadata"):
                lines = sections[prefix + "metadata"].decode("utf-8").split("\n") if len(ids) else []
                index._meta = [json.loads(line) for line in lines]
            index._restore(manifest.get("state", {}), {k[len(prefix) :]: v for k, v in sections.items() if k.startswith(prefix)})
        except KeyError as exc:
            raise DataError(f"index file lacks the section {exc}; it is corrupt or from another program") from None
        if index.count != manifest["count"] or (index._meta is not None and len(index._meta) != index.count):
            raise DataError(f"index file is inconsistent: manifest says {manifest['count']} codes, the sections hold {index.count}")
        return index
