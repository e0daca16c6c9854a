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
from typing import Any, Iterable, Iterator

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
        raise DataError(f"{path}: not a readable {what} ({safe_reason(exc)})") from exc


def safe_reason(exc: BaseException) -> str:
    """The first line of a loader's error, minus advice to load the file unsafely.

    numpy and torch suggest ``allow_pickle=True`` / ``weights_only=False`` for files they refuse;
    following that advice on an untrusted file runs its code, so cmhash never repeats it.
    """
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if any(w in str(exc) for w in ("pickle", "weights_only", "Unpickl", "unpickl")):
        return "not a file of plain arrays: it holds pickled Python objects or is not an array archive at all; cmhash never unpickles files"
    return text[:200]


# ----------------------------------------------------------------------------- one writer, no clobbering
# The small API other writers (run folders, indexes, feature caches, the search service) share:
#   with write_lock(target): ...        second writer fails at once, naming the holder's PID
#   refuse_existing(target, ...)        an existing output is never replaced without --overwrite
#   clean_stale_temps(target)           leftovers of writers killed mid-write (call under the lock)
TEMP_SUFFIX = ".tmp"


def lock_path(target: str | os.PathLike) -> Path:
    """Lock file of ``target``: ``DIR/.cmhash.lock`` for a folder, ``.NAME.lock`` beside a file."""
    target = Path(target)
    if target.is_dir():
        return target / ".cmhash.lock"
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def write_lock(target: str | os.PathLike, what: str = "output", is_dir: bool | None = None) -> Iterator[Path]:
    """Hold an exclusive lock on ``target`` (a folder or a file) while writing it.

    A second writer fails at once with :class:`cmhash.errors.LockedError` naming the holder's PID.
    The lock is an ``flock`` on a small file holding the PID, so a holder killed with ``kill -9``
    releases it by dying (no stale lock to remove by hand). ``is_dir`` says whether ``target`` is
    a folder (created if needed); by default an existing folder is a folder and anything else a file.
    """
    from cmhash.errors import LockedError

    target = Path(target)
    if is_dir is None:
        is_dir = target.is_dir()
    created = False
    if is_dir:
        created = not target.exists()
        target.mkdir(parents=True, exist_ok=True)
        path = target / ".cmhash.lock"
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        path = target.parent / f".{target.name}.lock"
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks; writes stay atomic
        yield path
        return
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            finally:
                os.close(fd)
            pid = int(holder) if holder.isdigit() else None
            who = f"process {pid}" if pid else "another process"
            raise LockedError(
                f"{target}: {who} is writing this {what} (lock {path}); wait for it to finish or choose another output",
                pid=pid,
            ) from None
        # The holder before us may have removed the file after we opened it: lock the live one.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
        if created:  # a folder made only to be locked, then left empty by a failed job, goes too
            with contextlib.suppress(OSError):
                target.rmdir()


def clean_stale_temps(target: str | os.PathLike, is_dir: bool | None = None) -> list[Path]:
    """Remove temporary files left by writers killed in the middle of :func:`atomic_path`.

    For a folder: every ``.*.tmp`` file directly inside it; for a file: its own ``.NAME.*.tmp``
    siblings. Call it while holding :func:`write_lock`, so no live writer's file is removed.
    """
    target = Path(target)
    if is_dir is None:
        is_dir = target.is_dir()
    folder, pattern = (target, ".*" + TEMP_SUFFIX) if is_dir else (target.parent, f".{target.name}.*{TEMP_SUFFIX}")
    removed = []
    if folder.is_dir():
        for p in folder.glob(pattern):
            if p.is_file():
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
    return removed


def refuse_existing(target: str | os.PathLike, what: str, *, overwrite: bool = False, resume: bool | None = None, ignore: Iterable[str] = ()) -> bool:
    """Refuse to replace an existing output unless the user said so; True when it exists.

    A folder counts as existing when it holds anything besides the names in ``ignore`` (and lock
    or temporary files). ``resume=None`` means the writer has no resume mode. The error names the
    path and the flags that allow it (``--overwrite``, and ``--resume`` where there is one).
    """
    from cmhash.errors import CmhashError

    target = Path(target)
    if target.is_dir():
        skip = set(ignore) | {".cmhash.lock"}
        exists = any(p.name not in skip and not p.name.endswith(TEMP_SUFFIX) for p in target.iterdir())
    else:
        exists = target.exists()
    if exists and not overwrite and not resume:
        hint = "--resume to continue it or --overwrite to replace it" if resume is not None else "--overwrite to replace it"
        raise CmhashError(f"{target}: already holds {what}; pass {hint}, or choose another output")
    return exists
