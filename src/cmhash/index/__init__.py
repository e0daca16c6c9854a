"""Hamming-distance indexes of binary codes, behind one small interface.

    from cmhash.index import create_index, load_index
    index = create_index("faiss", bits=64)          # or "numpy", or "milvus" (uri=..., collection=...)
    index.add(ids, codes)                            # (n, bits) +-1/0-1, or packed uint8 (n, bits/8)
    ids, distances = index.search(query_codes, k=10) # (n_queries, k) each, best first
    index.remove(ids); index.save("codes.index"); index = load_index("codes.index")

Backends (``list_backends()``): ``numpy`` (exact, no extra dependency), ``faiss`` (exact flat by
default; ``kind="ivf"``/``"hnsw"`` approximate), ``milvus`` (BIN_FLAT exact / BIN_IVF_FLAT, on a
Milvus server or cluster). Exact backends return identical distances and, ties broken by
insertion order, identical ids. :class:`CrossModalIndex` holds the image and the text codes of one
collection so that a query of either modality searches the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cmhash.errors import DataError
from cmhash.index.base import FORMAT, BinaryIndex, LocalIndex
from cmhash.index.crossmodal import MODALITIES, TARGETS, CrossModalIndex
from cmhash.index.registry import INDEX_BACKENDS

DEFAULT_BACKEND = "faiss"


def create_index(backend: str = DEFAULT_BACKEND, *, bits: int, **options: Any) -> BinaryIndex:
    """A new empty index of ``bits``-bit codes; ``options`` are the backend's (e.g. kind="hnsw")."""
    return INDEX_BACKENDS.get(backend)(bits=bits, **options)


def list_backends() -> list[str]:
    return INDEX_BACKENDS.names()


def load_index(path: str | Path, *, verify: bool = True, **overrides: Any) -> BinaryIndex | CrossModalIndex:
    """Load an index saved with ``save`` (a :class:`BinaryIndex` or a :class:`CrossModalIndex`).

    ``overrides`` replace saved backend options, e.g. ``uri=`` / ``token=`` for Milvus or
    ``threads=`` for faiss. ``verify`` checks every section's checksum.
    """
    from cmhash.index.container import read_container

    manifest, sections = read_container(path, verify=verify)
    if manifest.get("format") != FORMAT:
        raise DataError(f"{path}: not a cmhash index (format {manifest.get('format')!r})")
    try:
        if manifest.get("kind") == "crossmodal":
            return CrossModalIndex._from_state(manifest, sections, **overrides)
        if manifest.get("kind") == "binary":
            return INDEX_BACKENDS.get(manifest["backend"])._from_state(manifest, sections, **overrides)
    except (KeyError, TypeError) as exc:
        raise DataError(f"{path}: index manifest lacks or mangles the entry {exc}; the file is corrupt") from None
    raise DataError(f"{path}: unknown index kind {manifest.get('kind')!r}")


__all__ = [
    "BinaryIndex",
    "LocalIndex",
    "CrossModalIndex",
    "INDEX_BACKENDS",
    "MODALITIES",
    "TARGETS",
    "create_index",
    "list_backends",
    "load_index",
]
