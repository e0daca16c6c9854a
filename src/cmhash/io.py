"""Atomic writes: a crash mid-write never leaves a half-written checkpoint, feature file or index.

Everything is written to a temporary file in the destination folder, flushed and fsync'ed, then
moved over the destination with :func:`os.replace` (atomic on POSIX and Windows).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


def _default_mode() -> int:
    """Permissions a normal ``open()`` would give (0666 minus the umask); mkstemp uses 0600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; on success it replaces ``dest`` atomically.

    The caller writes the whole file to the yielded path (any library that takes a path works).
    On an exception the temporary file is removed and ``dest`` is left untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix + ".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_path, _default_mode())
        os.replace(tmp_path, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_open(dest: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temporary file for writing; it replaces ``dest`` only if the block succeeds."""
    if "b" in mode:
        encoding = None
    with atomic_path(dest) as tmp:
        with open(tmp, mode, encoding=encoding) as fh:
            yield fh


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and paths so json.dump accepts them."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(dest: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON atomically."""
    with atomic_open(dest, "w") as fh:
        json.dump(to_jsonable(obj), fh, indent=indent)
        fh.write("\n")
    return Path(dest)


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON, with an error that names the file when it is missing or malformed."""
    from cmhash.errors import DataError, MissingFileError

    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc


def save_npy(dest: str | os.PathLike, array: np.ndarray) -> Path:
    """Save one array as .npy atomically."""
    with atomic_path(dest, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
    return Path(dest)


def save_npz(dest: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Save several arrays as .npz atomically (no pickling)."""
    with atomic_path(dest, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return Path(dest)


def read_npz(path: str | os.PathLike, what: str = ".npz file") -> dict[str, np.ndarray]:
    """All arrays of an .npz (no pickles), with an error that names the file when it cannot be read.

    Callers check that the file exists first, so their message can say how to make one.
    """
    from cmhash.errors import DataError

    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:
        raise DataError(f"{path}: not a readable {what} ({exc})") from exc
