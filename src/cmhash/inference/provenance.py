"""Which model made an index's codes, and the check that a query model still is that model.

An index built from a checkpoint records the checkpoint's path *and* the sha256 of its content.
If the run is retrained (same path, new weights), queries encoded by the new model would be
compared with codes of the old one and rank nonsense silently; :func:`check_query_model` refuses
that with a clear error instead.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from cmhash.errors import DataError, MissingFileError


def checkpoint_file(path: str | os.PathLike) -> Path:
    """``checkpoint.pt`` of a run folder, or the file itself."""
    p = Path(path)
    return p / "checkpoint.pt" if p.is_dir() else p


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_sha256(path: str | os.PathLike) -> str:
    """sha256 of a checkpoint's content (cached while its size and mtime are unchanged)."""
    p = checkpoint_file(path)
    if not p.is_file():
        raise MissingFileError(f"{p}: checkpoint not found")
    st = p.stat()
    return _sha256(str(p.resolve()), st.st_size, st.st_mtime_ns)


def check_query_model(info: dict, checkpoint: str | os.PathLike, where: str = "index") -> None:
    """Refuse a query model whose content differs from the one recorded in the index ``info``."""
    want = info.get("checkpoint_sha256")
    if not want:
        return  # built from a codes file, or by an older cmhash: nothing recorded to check against
    have = checkpoint_sha256(checkpoint)
    if have != want:
        raise DataError(
            f"{where}: its codes were made by the checkpoint {info.get('checkpoint')} with content sha256 {want[:12]}, "
            f"but the query model {checkpoint_file(checkpoint)} now has sha256 {have[:12]} (retrained or replaced?); "
            "queries would be compared with codes of another model. Rebuild the index with "
            "`cmhash index build --checkpoint RUN`, or query with the checkpoint it was built from"
        )


__all__ = ["checkpoint_file", "checkpoint_sha256", "check_query_model"]
