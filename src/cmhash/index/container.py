"""The index file: one self-checking file holding a manifest and binary sections.

Layout (all integers little-endian)::

    b"CMHASHIX" u32 format-version            header, 12 bytes
    section 0 bytes, section 1 bytes, ...     raw arrays / faiss blobs / JSON lines
    manifest (UTF-8 JSON)                     kind, backend, bits, count, id map, options, and for
                                              every section: name, offset, length, sha256, dtype, shape
    u64 manifest offset, u64 manifest length, 32-byte sha256 of the manifest, b"CMHIXEND"

The manifest sits at the end so sections stream to disk without being held twice in memory. A
file cut short loses its end marker; a flipped byte fails a checksum; either is reported as a
clear :class:`~cmhash.errors.DataError` naming the file. The whole file is written through
:func:`cmhash.io.atomic_path`, so a crash in the middle of a save leaves the previous file intact.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from cmhash.errors import DataError, MissingFileError
from cmhash.io import atomic_path, to_jsonable

MAGIC = b"CMHASHIX"
END_MAGIC = b"CMHIXEND"
VERSION = 1
_HEAD = struct.Struct("<8sI")
_TRAILER = struct.Struct("<QQ32s8s")
_CHUNK = 16 << 20  # bytes written per call (also the unit a slow disk or a crash interrupts)


def _write_chunk(fh, data: memoryview) -> None:
    """Write one chunk; a separate function so tests can slow it down to kill a save midway."""
    fh.write(data)


def _as_bytes_view(value) -> tuple[memoryview, dict[str, Any]]:
    """A byte view of a section value plus what is needed to rebuild it (dtype/shape for arrays)."""
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError("object arrays cannot be stored in an index file")
        arr = np.ascontiguousarray(value)
        info = {"dtype": arr.dtype.str, "shape": list(arr.shape)}
        return memoryview(arr.reshape(-1).view(np.uint8)), info
    if isinstance(value, str):
        value = value.encode("utf-8")
    return memoryview(bytes(value)), {}


def write_container(path: str | Path, manifest: Mapping[str, Any], sections: Mapping[str, Any]) -> Path:
    """Write ``sections`` and ``manifest`` to ``path`` atomically.

    A section is bytes, an ndarray, or a list of ndarrays stored as their concatenation along
    axis 0 (so big indexes are written chunk by chunk without a full copy).
    """
    path = Path(path)
    entries = []
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(_HEAD.pack(MAGIC, VERSION))
            offset = _HEAD.size
            for name, value in sections.items():
                parts = value if isinstance(value, (list, tuple)) else [value]
                digest, length, info = hashlib.sha256(), 0, {}
                for part in parts:
                    view, part_info = _as_bytes_view(part)
                    if part_info:
                        rows = info["shape"][0] + part_info["shape"][0] if info else part_info["shape"][0]
                        if info and (info["dtype"] != part_info["dtype"] or info["shape"][1:] != part_info["shape"][1:]):
                            raise ValueError(f"section {name}: parts differ in dtype or shape")
                        info = {**part_info, "shape": [rows, *part_info["shape"][1:]]}
                    for start in range(0, len(view), _CHUNK):
                        chunk = view[start : start + _CHUNK]
                        digest.update(chunk)
                        _write_chunk(fh, chunk)
                    length += len(view)
                entries.append({"name": name, "offset": offset, "length": length, "sha256": digest.hexdigest(), **info})
                offset += length
            body = dict(manifest)
            body["sections"] = entries
            blob = json.dumps(to_jsonable(body), sort_keys=True).encode("utf-8")
            fh.write(blob)
            fh.write(_TRAILER.pack(offset, len(blob), hashlib.sha256(blob).digest(), END_MAGIC))
    return path


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and check only the manifest of an index file (cheap: no section is read)."""
    manifest, _ = _open(Path(path), read_sections=False, verify=False)
    return manifest


def read_container(path: str | Path, verify: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read an index file: (manifest, sections). Arrays come back as numpy arrays, other sections as bytes.

    With ``verify`` every section's sha256 is checked (about 1 s per GB).
    """
    return _open(Path(path), read_sections=True, verify=verify)


def _open(path: Path, read_sections: bool, verify: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    if not path.exists():
        raise MissingFileError(f"{path}: index file not found (build one with `cmhash index build`)")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; an index is a single file written by `cmhash index build` or index.save()")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(_HEAD.size)
        if len(head) < _HEAD.size or head[:8] != MAGIC:
            raise DataError(f"{path}: not a cmhash index file (bad header); point --index at a file written by `cmhash index build`")
        _, version = _HEAD.unpack(head)
        if version > VERSION:
            raise DataError(f"{path}: index format version {version} is newer than this cmhash supports ({VERSION}); upgrade cmhash")
        if size < _HEAD.size + _TRAILER.size:
            raise DataError(f"{path}: index file is truncated ({size} bytes); rebuild it or restore a backup")
        fh.seek(size - _TRAILER.size)
        m_off, m_len, m_sha, end = _TRAILER.unpack(fh.read(_TRAILER.size))
        if end != END_MAGIC:
            raise DataError(f"{path}: index file is truncated or corrupt (no end marker; {size} bytes); rebuild it or restore a backup")
        if m_off + m_len + _TRAILER.size != size or m_off < _HEAD.size:
            raise DataError(f"{path}: index file is corrupt (manifest position does not match the file size {size})")
        fh.seek(m_off)
        blob = fh.read(m_len)
        if hashlib.sha256(blob).digest() != m_sha:
            raise DataError(f"{path}: index manifest is corrupt (checksum mismatch); rebuild the index or restore a backup")
        manifest = json.loads(blob.decode("utf-8"))
        sections: dict[str, Any] = {}
        if not read_sections:
            return manifest, sections
        for entry in manifest.get("sections", []):
            name, off, length = entry["name"], int(entry["offset"]), int(entry["length"])
            if off < _HEAD.size or off + length > m_off:
                raise DataError(f"{path}: section '{name}' lies outside the data area; the file is corrupt")
            fh.seek(off)
            buf = np.empty(length, dtype=np.uint8)
            got = fh.readinto(memoryview(buf))
            if got != length:
                raise DataError(f"{path}: section '{name}' is truncated ({got} of {length} bytes)")
            if verify and hashlib.sha256(memoryview(buf)).hexdigest() != entry["sha256"]:
                raise DataError(f"{path}: section '{name}' is corrupt (checksum mismatch); rebuild the index or restore a backup")
            if "dtype" in entry:
                sections[name] = buf.view(np.dtype(entry["dtype"])).reshape(entry["shape"])
            else:
                sections[name] = buf.tobytes()
    return manifest, sections
