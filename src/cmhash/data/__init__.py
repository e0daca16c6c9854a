"""Data: sources that turn files into :class:`PairedDataset` objects, text features, splits.

``load_dataset("mirflickr", root)`` finds the source by name in :data:`SOURCES`.
Every source is a function ``(root, *, strict=False, **options) -> PairedDataset`` registered with
``@SOURCES.register("name")`` in a module of :mod:`cmhash.data.sources`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cmhash.data.dataset import DroppedPair, LoadReport, PairedDataset
from cmhash.data.images import ArrayImageStore, FileImageStore, HDF5ImageStore, ImageStore
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
        "cmhash.data.sources.iapr",
        "cmhash.data.sources.coco",
        "cmhash.data.sources.folder",
        "cmhash.data.sources.synthetic",
    ],
)


def load_dataset(name: str, root: str | Path | None = None, *, strict: bool = False, **options: Any) -> PairedDataset:
    """Load a dataset by source name. ``strict`` fails on the first missing/unreadable image."""
    loader = SOURCES.get(name)
    if name != "synthetic":
        if root is None:
            raise MissingFileError(f"source '{name}' needs the folder that holds its files (root; CLI: --root PATH)")
        root = Path(root).expanduser()
        if not root.exists():
            raise MissingFileError(f"{root}: data root does not exist (source '{name}')")
    return loader(root, strict=strict, **options)


def source_options(name: str) -> list[str]:
    """The options a source takes (keyword-only parameters of its loader(s), ``strict`` aside)."""
    from cmhash.data.sources._common import loader_options

    loader = SOURCES.get(name)
    funcs = getattr(loader, "options_from", None)
    funcs = funcs() if callable(funcs) else (loader,)
    out: list[str] = []
    for fn in funcs:
        out += [k for k in loader_options(fn) if k not in out]
    return out


def describe_sources() -> dict[str, str]:
    """Source name -> one-line description (the first line of the loader's docstring)."""
    out = {}
    for name in SOURCES.names():
        doc = (SOURCES.get(name).__doc__ or "").strip().splitlines()
        out[name] = doc[0].strip() if doc else ""
    return out


__all__ = [
    "SOURCES",
    "load_dataset",
    "describe_sources",
    "source_options",
    "PairedDataset",
    "LoadReport",
    "DroppedPair",
    "ImageStore",
    "FileImageStore",
    "ArrayImageStore",
    "HDF5ImageStore",
]
