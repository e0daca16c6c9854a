"""The codes file: binary codes of a query set and a database, both modalities, with labels.

Written by ``cmhash encode`` and read by ``cmhash eval`` and ``cmhash index build``. Format: one
``.npz`` (no pickle) holding any of

* ``query_image``, ``query_text``, ``db_image``, ``db_text``: packed uint8 codes (n, ceil(bits/8))
* ``query_labels``, ``db_labels``: uint8 multi-hot (optional)
* ``query_groups``, ``db_groups``: pair-identity ids (optional; Flickr8k image of each caption)
* ``query_ids``, ``db_ids``: item ids (optional, strings)
* ``meta``: a JSON string (bits, method, dataset, split protocol, ...)

Codes are stored packed (``cmhash.codes.pack``); ``load_codes`` returns them unpacked as +-1 int8.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cmhash import codes as C
from cmhash.errors import DataError, MissingFileError
from cmhash.io import read_npz, save_npz

CODE_KEYS = ("query_image", "query_text", "db_image", "db_text")
OTHER_KEYS = ("query_labels", "db_labels", "query_groups", "db_groups", "query_ids", "db_ids")
FORMAT = "cmhash-codes"


def save_codes(path: str | Path, *, bits: int, meta: dict[str, Any] | None = None, **arrays) -> Path:
    """Save codes (+-1 or 0/1, shape (n, bits)) and optional labels/groups/ids atomically."""
    unknown = set(arrays) - set(CODE_KEYS) - set(OTHER_KEYS)
    if unknown:
        raise DataError(f"save_codes: unknown array(s) {', '.join(sorted(unknown))}")
    out: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        if value is None:
            continue
        if key in CODE_KEYS:
            arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
            if arr.ndim != 2 or arr.shape[1] != bits:
                raise DataError(f"save_codes: {key} has shape {arr.shape}, expected (n, {bits})")
            out[key] = C.pack(arr, key)
        elif key.endswith("_ids"):
            out[key] = np.asarray(value).astype(str)
        else:
            out[key] = np.asarray(value)
    m = dict(meta or {})
    m.update(format=FORMAT, bits=int(bits))
    out["meta"] = np.asarray(json.dumps(m))
    return save_npz(path, **out)


def load_codes(path: str | Path) -> dict[str, Any]:
    """Load a codes file: codes unpacked to +-1 int8, plus labels/groups/ids and ``meta`` (dict)."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path}: codes file not found (write one with `cmhash encode`)")
    data = read_npz(path, ".npz codes file")
    if "meta" not in data:
        raise DataError(f"{path}: no 'meta' entry; not a cmhash codes file")
    meta = json.loads(str(data.pop("meta")))
    if meta.get("format") != FORMAT or "bits" not in meta:
        raise DataError(f"{path}: meta does not describe a cmhash codes file")
    bits = int(meta["bits"])
    out: dict[str, Any] = {"meta": meta, "bits": bits}
    for key, arr in data.items():
        if key in CODE_KEYS:
            if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != C.packed_width(bits):
                raise DataError(f"{path}: '{key}' is not packed {bits}-bit codes (shape {arr.shape}, dtype {arr.dtype})")
            out[key] = C.unpack(arr, bits).astype(np.int8) * 2 - 1
        elif key in OTHER_KEYS:
            out[key] = arr
        else:
            raise DataError(f"{path}: unexpected entry '{key}'")
    for side in ("query", "db"):
        n = {len(out[k]) for k in out if isinstance(k, str) and k.startswith(side + "_")}
        if len(n) > 1:
            raise DataError(f"{path}: the {side} arrays have different lengths {sorted(n)}")
    return out
