"""Helpers that write small data fixtures (JPEGs, v5 and v7.3 .mat files) for the data-source tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

MATLAB_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."


def write_jpeg(path: Path, color=(200, 30, 30), size=(12, 10)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format="JPEG", quality=90)
    return path


def write_garbage(path: Path) -> Path:
    """A file with an image name that is not an image (an HTML error page saved as .jpg)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"<html><body>404 Not Found</body></html>")
    return path


def write_mat_v5(path: Path, **variables) -> Path:
    import scipy.io as sio

    path.parent.mkdir(parents=True, exist_ok=True)
    sio.savemat(str(path), variables)
    return path


def write_mat_v73(path: Path, **variables) -> Path:
    """Write a MATLAB v7.3 file as MATLAB does: an HDF5 file (512-byte user block with the MATLAB
    header) whose arrays are stored column-major, i.e. with every axis order reversed."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as fh:
        for name, value in variables.items():
            arr = np.asarray(value)
            ds = fh.create_dataset(name, data=np.transpose(arr))
            cls = {"u": "uint8", "f": "double", "i": "int32", "b": "logical"}[arr.dtype.kind]
            ds.attrs["MATLAB_class"] = np.bytes_(cls)
    with open(path, "r+b") as fh:
        fh.write(MATLAB_HEADER.ljust(128, b" "))
    return path


def image_stack(n: int, h: int = 8, w: int = 6, seed: int = 0) -> np.ndarray:
    """n distinct RGB images as MATLAB holds them: H x W x 3 x n uint8 (image i has red = 10*i)."""
    rng = np.random.default_rng(seed)
    stack = rng.integers(0, 255, size=(h, w, 3, n), dtype=np.uint8)
    for i in range(n):
        stack[0, 0, 0, i] = (10 * i) % 256
    return stack


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file and folder under ``folder``: compare before/after loading."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.stat(p)
            out[os.path.relpath(p, folder)] = (st.st_size if name in filenames else 0, st.st_mtime_ns)
    st = os.stat(folder)
    out["."] = (0, st.st_mtime_ns)
    return out
