"""Image stores: where the pixels of each pair live (files on disk, or arrays inside an HDF5 .mat).

A store is a lazy, indexable sequence: ``store.load(i)`` returns an RGB ``PIL.Image`` and
``store.ref(i)`` a human-readable reference (a path, or ``file.mat:IAll[17]``) for reports and
search results. Stores never modify their source files.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from cmhash.errors import DataError


class ImageStore:
    """Interface for the image side of a paired dataset."""

    def __len__(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def ref(self, i: int) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def load(self, i: int):  # pragma: no cover - interface
        """Return image ``i`` as an RGB PIL image."""
        raise NotImplementedError

    def subset(self, indices: Sequence[int] | np.ndarray) -> "ImageStore":  # pragma: no cover
        raise NotImplementedError

    def refs(self) -> list[str]:
        return [self.ref(i) for i in range(len(self))]


class FileImageStore(ImageStore):
    """Images as files on disk (jpg/png/...), one path per pair."""

    def __init__(self, paths: Sequence[str | os.PathLike]):
        self.paths = [str(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def ref(self, i: int) -> str:
        return self.paths[i]

    def load(self, i: int):
        from cmhash.data.imageio import open_rgb

        return open_rgb(self.paths[i])

    def subset(self, indices) -> "FileImageStore":
        return FileImageStore([self.paths[int(j)] for j in np.asarray(indices)])


def open_h5_readonly(path: str | os.PathLike):
    """Open an HDF5 file for reading without taking a file lock.

    Read-only or network mounts (NFS, Lustre) often refuse HDF5's lock ("unable to lock file");
    a dataset is only ever read here, so the lock buys nothing.
    """
    import h5py

    try:
        return h5py.File(path, "r", locking=False)
    except TypeError:  # pragma: no cover - h5py < 3.5
        return h5py.File(path, "r")


def _check_layout(layout: str, where: str) -> str:
    lay = layout.upper()
    if sorted(lay) not in (sorted("HWC"), sorted("HW")):
        raise DataError(f"{where}: image layout '{layout}' must be a permutation of HWC (or HW for grey images)")
    return lay


def array_to_pil(item: np.ndarray, layout: str):
    """One stored image (axes in ``layout`` order) -> RGB PIL image; 1-channel and float data handled."""
    from PIL import Image

    item = np.asarray(item)
    if len(layout) == 2:
        hwc = np.transpose(item, [layout.index(c) for c in "HW"])[:, :, None]
    else:
        hwc = np.transpose(item, [layout.index(c) for c in "HWC"])
    if hwc.dtype != np.uint8:
        hwc = np.clip(hwc, 0, 255).astype(np.uint8)
    hwc = np.ascontiguousarray(hwc)
    if hwc.shape[2] == 1:
        return Image.fromarray(hwc[:, :, 0]).convert("RGB")
    return Image.fromarray(hwc).convert("RGB")


class ArrayImageStore(ImageStore):
    """Images held in memory as one (N, ...) uint8 array, e.g. a small v5 ``IAll`` loaded by scipy."""

    def __init__(self, array: np.ndarray, layout: str = "HWC", name: str = "array", rows: Sequence[int] | None = None):
        self.array = array
        self.layout = _check_layout(layout, name)
        if array.ndim != len(self.layout) + 1:
            raise DataError(f"{name}: image array of shape {array.shape} does not match layout {self.layout}")
        self.name = name
        self.rows = np.arange(len(array), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def ref(self, i: int) -> str:
        return f"{self.name}[{int(self.rows[i])}]"

    def load(self, i: int):
        return array_to_pil(self.array[int(self.rows[i])], self.layout)

    def subset(self, indices) -> "ArrayImageStore":
        return ArrayImageStore(self.array, self.layout, self.name, self.rows[np.asarray(indices, dtype=np.int64)])


class HDF5ImageStore(ImageStore):
    """Raw uint8 images stored in an HDF5 (MATLAB v7.3) array, as in DJSRH's ``*-iall.mat``.

    ``layout`` names the axis order of one stored item as h5py sees it, e.g. ``"CWH"`` for the
    DCMH/DJSRH files (MATLAB's H x W x C x N stack read back as N x C x W x H; DJSRH uses
    ``np.transpose(IAll[idx], (2, 1, 0))`` to get HWC).
    """

    def __init__(self, path: str | os.PathLike, variable: str, rows: Sequence[int] | None = None, layout: str = "CWH"):
        self.path = str(path)
        self.variable = variable
        self.layout = _check_layout(layout, self.path)
        self._h5 = None
        if rows is None:
            with open_h5_readonly(self.path) as fh:
                if variable not in fh:
                    raise DataError(f"{self.path}: no variable '{variable}' (found: {', '.join(fh.keys())})")
                n = fh[variable].shape[0]
            rows = range(n)
        self.rows = np.asarray(list(rows), dtype=np.int64)

    def __getstate__(self):  # picklable for DataLoader workers: reopen the file in each process
        state = dict(self.__dict__)
        state["_h5"] = None
        return state

    def _array(self):
        if self._h5 is None:
            self._h5 = open_h5_readonly(self.path)
        return self._h5[self.variable]

    def __len__(self) -> int:
        return len(self.rows)

    def ref(self, i: int) -> str:
        return f"{self.path}:{self.variable}[{int(self.rows[i])}]"

    def load(self, i: int):
        return array_to_pil(self._array()[int(self.rows[i])], self.layout)

    def close(self) -> None:
        """Close the HDF5 handle (it is reopened on the next load)."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def subset(self, indices) -> "HDF5ImageStore":
        out = HDF5ImageStore.__new__(HDF5ImageStore)
        out.__dict__.update(self.__getstate__())
        out.rows = self.rows[np.asarray(indices, dtype=np.int64)]
        return out
