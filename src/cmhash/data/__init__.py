"""Data: sources that turn files into :class:`PairedDataset` objects, text features, splits.

``load_dataset("mirflickr", root)`` finds the source by name in :data:`SOURCES`.
Every source is a function ``(root, *, strict=False, **options) -> PairedDataset`` registered with
``@SOURCES.register("name")`` in a module of :mod:`cmhash.data.sources`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cmhash.data.dataset import DroppedPair, LoadReport, PairedDataset
from cmhash.data.images import FileImageStore, HDF5ImageStore, ImageStore
from cmhash.errors import MissingFileError
from cmhash.registry import Registry

SOURCES: Registry = Registry(
    "data source",
    modules=[
        "cmhash.data.sources.wiki",
        "cmhash.data.sources.mirflickr",
        "cmhash.data.sources.nuswide",
        "cmhash.data.sources.flickr8k",
        "cmhash.data.sources.fashion",
        "cmhash.data.sources.folder",
        "cmhash.data.sources.synthetic",
    ],
)


def load_dataset(name: str, root: str | Path | None = None, *, strict: bool = False, **options: Any) -> PairedDataset:
    """Load a dataset by source name. ``strict`` fails on the first missing/unreadable image."""
    loader = SOURCES.get(name)
    if root is not None and name != "synthetic":
        root = Path(root)
        if not root.exists():
            raise MissingFileError(f"{root}: data root does not exist (source '{name}')")
    return loader(root, strict=strict, **options)


__all__ = [
    "SOURCES",
    "load_dataset",
    "PairedDataset",
    "LoadReport",
    "DroppedPair",
    "ImageStore",
    "FileImageStore",
    "HDF5ImageStore",
]
