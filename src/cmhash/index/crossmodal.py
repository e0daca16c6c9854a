"""Both retrieval directions from one model: the image codes and the text codes of one collection.

A :class:`CrossModalIndex` holds one :class:`~cmhash.index.base.BinaryIndex` per modality, all with
the same item ids, plus per-item metadata (text, image path/reference, labels) kept once, in the
first modality's index. A text query searches the image codes (text -> image retrieval), an image
query the text codes, and ``target="both"`` ranks each item by its nearer code::

    index = CrossModalIndex.create("faiss", bits=64)
    index.add(ids, image_codes=img, text_codes=txt, metadata=[{"text": ..., "image": ...}, ...])
    ids, dist = index.search(text_query_codes, k=10, target="image")
    hits = index.search_hits(text_query_codes, k=10, target="image")   # dicts with metadata

Caption datasets (Flickr8k: five captions per image) use *per-modality items*
(``info["items"] == "per_modality"``): the image index holds one item per image, the text index
one item per caption, each with its own ids and metadata (:meth:`add_modality`), so an image is
found once and image-to-text search lists captions.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cmhash.errors import DataError
from cmhash.index.base import FORMAT, BinaryIndex, check_k
from cmhash.index.registry import INDEX_BACKENDS

MODALITIES = ("image", "text")
TARGETS = ("image", "text", "both")


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise DataError(f"target must be one of {', '.join(TARGETS)} (the codes to search), got {target!r}")
    return target


class CrossModalIndex:
    """Image and text codes of one collection; see the module docstring."""

    def __init__(self, indexes: Mapping[str, BinaryIndex], info: Mapping[str, Any] | None = None):
        unknown = set(indexes) - set(MODALITIES)
        if unknown or not indexes:
            raise DataError(f"a cross-modal index holds codes of {' and/or '.join(MODALITIES)}, got {sorted(indexes)}")
        self.indexes = {m: indexes[m] for m in MODALITIES if m in indexes}
        bits = {ix.bits for ix in self.indexes.values()}
        if len(bits) != 1:
            raise DataError(f"the image and text indexes must have the same code length, got {sorted(bits)}")
        self.bits = bits.pop()
        self.info: dict[str, Any] = dict(info or {})

    # ----------------------------------------------------------- construction
    @classmethod
    def create(cls, backend: str, bits: int, modalities: Sequence[str] = MODALITIES, info=None, **options) -> "CrossModalIndex":
        """One empty index per modality. Milvus gets one collection per modality: ``<collection>_<modality>``."""
        factory = INDEX_BACKENDS.get(backend)
        indexes = {}
        for m in modalities:
            if m not in MODALITIES:
                raise DataError(f"unknown modality {m!r}; use {' or '.join(MODALITIES)}")
            opts = dict(options)
            if backend == "milvus":
                opts["collection"] = f"{options.get('collection', 'cmhash')}_{m}"
            indexes[m] = factory(bits=bits, **opts)
        return cls(indexes, info)

    @property
    def per_modality_items(self) -> bool:
        """True when image and text items have their own ids and metadata (caption datasets)."""
        return self.info.get("items") == "per_modality"

    def add_modality(self, modality: str, ids, codes, metadata=None) -> None:
        """Add items to one modality only (per-modality layout: one item per image, one per caption)."""
        if not self.per_modality_items:
            raise DataError("add_modality needs an index with per-modality items (info items='per_modality'); use add()")
        if modality not in self.indexes:
            raise DataError(f"this index holds no {modality} codes (it holds {', '.join(self.modalities)})")
        self.indexes[modality].add(ids, codes, metadata=metadata)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.indexes)

    @property
    def primary(self) -> BinaryIndex:
        """The index that also keeps the item metadata."""
        return next(iter(self.indexes.values()))

    @property
    def backend(self) -> str:
        return self.primary.backend

    @property
    def count(self) -> int:
        return self.primary.count

    def __len__(self) -> int:
        return self.count

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "crossmodal",
            "backend": self.backend,
            "bits": self.bits,
            "count": self.count,
            "counts": {m: ix.count for m, ix in self.indexes.items()},
            "modalities": list(self.modalities),
            "exact": all(ix.exact for ix in self.indexes.values()),
            "options": self.primary.options(),
            "info": self.info,
        }

    # ----------------------------------------------------------- updates
    def add(self, ids, image_codes=None, text_codes=None, metadata=None) -> None:
        """Add items with their codes in every modality this index holds (and optional metadata)."""
        given = {"image": image_codes, "text": text_codes}
        for m, codes in given.items():
            if m in self.indexes and codes is None:
                raise DataError(f"this index holds {' and '.join(self.modalities)} codes; give {m}_codes too")
            if m not in self.indexes and codes is not None:
                raise DataError(f"this index holds no {m} codes; create it with modalities including '{m}'")
        packed = {m: self.indexes[m]._packed(given[m], f"{m} codes") for m in self.modalities}
        sizes = {len(p) for p in packed.values()}
        if len(sizes) != 1:
            raise DataError(f"image and text codes have different numbers of rows: {[len(packed[m]) for m in self.modalities]}")
        done = []
        try:
            for m in self.modalities:
                keep_meta = not done or self.per_modality_items
                self.indexes[m].add(ids, packed[m], metadata=metadata if keep_meta else None)
                done.append(m)
        except BaseException:
            for m in done:  # keep the modalities consistent
                self.indexes[m].remove(ids, missing_ok=True)
            raise

    def remove(self, ids, *, missing_ok: bool = False) -> int:
        if self.per_modality_items:  # an id may live in one modality only
            from cmhash.index.idmap import show_ids

            wanted = list(np.atleast_1d(np.asarray(ids, dtype=object)))
            found = np.zeros(len(wanted), dtype=bool)
            for ix in self.indexes.values():
                found |= ix.contains(wanted)
            if not missing_ok and not found.all():
                raise DataError(f"id(s) not in the index: {show_ids([w for w, f in zip(wanted, found) if not f])}")
            return sum(ix.remove(wanted, missing_ok=True) for ix in self.indexes.values())
        removed = self.primary.remove(ids, missing_ok=missing_ok)
        for ix in list(self.indexes.values())[1:]:
            ix.remove(ids, missing_ok=True)
        return removed

    # ----------------------------------------------------------- queries
    def search(self, query_codes, k: int, target: str = "image") -> tuple[np.ndarray, np.ndarray]:
        """(ids, distances), each (n_queries, min(k, count)), searching the ``target`` codes.

        ``target="both"`` ranks each item by the nearer of its image and text codes.
        """
        ids, dist, _ = self._search(query_codes, k, target)
        return ids, dist

    def _search(self, query_codes, k: int, target: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        check_target(target)
        k = check_k(k)
        if target != "both":
            if target not in self.indexes:
                raise DataError(f"this index holds no {target} codes (it holds {', '.join(self.modalities)})")
            ids, dist = self.indexes[target].search(query_codes, k)
            return ids, dist, np.full(ids.shape, target, dtype=object)
        if len(self.indexes) < 2:
            return self._search(query_codes, k, self.modalities[0])
        per = {m: self.indexes[m].search(query_codes, k) for m in self.modalities}
        nq, kk = per[self.modalities[0]][0].shape
        out_ids = np.empty((nq, kk), dtype=per[self.modalities[0]][0].dtype)
        out_d = np.empty((nq, kk), dtype=np.int32)
        out_m = np.empty((nq, kk), dtype=object)
        for row in range(nq):
            merged = []
            for mi, m in enumerate(self.modalities):
                ids_m, d_m = per[m]
                merged += [(int(d_m[row, r]), r, mi, ids_m[row, r]) for r in range(kk)]
            merged.sort(key=lambda t: t[:3])
            seen, j = set(), 0
            for d, _, mi, item in merged:
                key = item.item() if isinstance(item, np.generic) else item
                if key in seen:
                    continue
                seen.add(key)
                out_ids[row, j], out_d[row, j], out_m[row, j] = item, d, self.modalities[mi]
                j += 1
                if j == kk:
                    break
        return out_ids, out_d, out_m

    def search_hits(self, query_codes, k: int, target: str = "image", metadata: bool = True) -> list[list[dict[str, Any]]]:
        """Per query, a ranked list of ``{"rank", "id", "distance", "matched", "metadata"}`` dicts."""
        ids, dist, matched = self._search(query_codes, k, target)
        flat = ids.reshape(-1)
        if metadata and flat.size and self.per_modality_items:
            mods = matched.reshape(-1)
            metas = [self.indexes[m].get_metadata([i])[0] for i, m in zip(flat, mods)]
        else:
            metas = self.get_metadata(flat) if metadata and flat.size else [None] * flat.size
        out = []
        for row in range(ids.shape[0]):
            hits = []
            for r in range(ids.shape[1]):
                item = ids[row, r]
                hits.append(
                    {
                        "rank": r + 1,
                        "id": item.item() if isinstance(item, np.generic) else item,
                        "distance": int(dist[row, r]),
                        "matched": matched[row, r],
                        "metadata": metas[row * ids.shape[1] + r],
                    }
                )
            out.append(hits)
        return out

    def get_metadata(self, ids, modality: str | None = None) -> list[dict | None]:
        """Metadata of items; per-modality layout: of ``modality``'s items (default: wherever each id is)."""
        if not self.per_modality_items:
            return self.primary.get_metadata(ids)
        if modality is not None:
            return self.indexes[modality].get_metadata(ids)
        out = []
        for i in np.atleast_1d(np.asarray(ids, dtype=object)):
            owner = next((ix for ix in self.indexes.values() if ix.contains([i])[0]), self.primary)
            out.append(owner.get_metadata([i])[0])
        return out

    def owner_of(self, item) -> str | None:
        """The modality whose index holds ``item`` (image first), or None."""
        for m, ix in self.indexes.items():
            if ix.contains([item])[0]:
                return m
        return None

    def get_codes(self, ids, modality: str) -> np.ndarray:
        if modality not in self.indexes:
            raise DataError(f"this index holds no {modality} codes (it holds {', '.join(self.modalities)})")
        return self.indexes[modality].get_codes(ids)

    def contains(self, ids) -> np.ndarray:
        if self.per_modality_items:
            out = None
            for ix in self.indexes.values():
                c = ix.contains(ids)
                out = c if out is None else (out | c)
            return out
        return self.primary.contains(ids)

    # ----------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write every modality's index and the metadata to one file atomically."""
        from cmhash.index.container import write_container

        subs, sections = {}, {}
        for m, ix in self.indexes.items():
            sub, sec = ix._state(prefix=f"{m}/")
            subs[m] = sub
            sections.update(sec)
        manifest = {
            "format": FORMAT,
            "kind": "crossmodal",
            "bits": self.bits,
            "backend": self.backend,
            "count": self.count,
            "modalities": subs,
            "info": self.info,
            "saved": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        return write_container(path, manifest, sections)

    @classmethod
    def _from_state(cls, manifest: dict[str, Any], sections: dict[str, Any], **overrides) -> "CrossModalIndex":
        indexes = {}
        for m, sub in manifest["modalities"].items():
            factory = INDEX_BACKENDS.get(sub["backend"])
            indexes[m] = factory._from_state(sub, sections, prefix=f"{m}/", **overrides)
        return cls(indexes, manifest.get("info"))

    def flush(self) -> None:
        """Make remote backends durable and indexed (Milvus); nothing to do in-process."""
        for ix in self.indexes.values():
            if hasattr(ix, "flush"):
                ix.flush()

    def close(self) -> None:
        for ix in self.indexes.values():
            ix.close()

    def __repr__(self) -> str:
        return f"<CrossModalIndex backend={self.backend} bits={self.bits} count={self.count} modalities={','.join(self.modalities)}>"
