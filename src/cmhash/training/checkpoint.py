"""Checkpoints: one file that rebuilds a trained method for encoding, and resumes training exactly.

A checkpoint is a ``torch.save`` of plain data (tensors, numbers, strings, lists, dicts; numpy
arrays are stored as tensors), so it loads with ``torch.load(weights_only=True)``: opening a
checkpoint never runs code from the file. Writes are atomic (:func:`cmhash.io.atomic_path`).

Contents (``format: cmhash-checkpoint``, ``version: 1``):

* ``method``, ``bits``, ``method_state`` (``HashMethod.state()``: networks, hyper-parameters and
  the input spec of deep methods; arrays of shallow methods);
* ``meta``: dataset, split protocol and seed, feature provenance (image encoder, text vocabulary),
  preset and variant, so the search engine knows how to featurise a new query;
* training state while a run is unfinished: ``epoch`` (completed), ``epochs``, ``optimizers``,
  ``rng`` (torch, numpy, python), ``history`` (per-epoch log rows), ``best`` (validation
  selection); ``finished`` is True once the last epoch is done (then optimiser state is dropped).

* training state of the method (``method_training_state``: ``DeepHashMethod.training_state()``)
  while unfinished.

Rebuilding a method from a file needs the method registry, which sits above this package:
:func:`cmhash.inference.load_checkpoint` does it::

    ckpt = load_checkpoint("runs/mir64/checkpoint.pt")
    codes = ckpt.method.encode(image_features, "image")   # +-1 int8, (n, bits)
    ckpt.meta["features"]                                   # how the training features were made

Checkpoints written before the layout change (issue 9) load unchanged: the format did not change,
later fields (text mode, extra networks, training state) are optional with their defaults.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from cmhash.errors import DataError, MissingFileError
from cmhash.io import atomic_path

FORMAT = "cmhash-checkpoint"
VERSION = 1
_ND = "__ndarray__"


# ---------------------------------------------------------------------------- safe conversion
def to_safe(obj: Any) -> Any:
    """Turn numpy arrays/scalars and paths into tensors/python values that weights_only loading accepts."""
    import torch

    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, (int, str)) else k: to_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        out = [to_safe(v) for v in obj]
        return tuple(out) if isinstance(obj, tuple) else out
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "biuf":
            return {_ND: torch.from_numpy(np.ascontiguousarray(obj)).clone(), "dtype": obj.dtype.str}
        return {_ND: obj.tolist(), "dtype": obj.dtype.str}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def from_safe(obj: Any) -> Any:
    """Inverse of :func:`to_safe`."""
    if isinstance(obj, dict):
        if _ND in obj and "dtype" in obj and len(obj) == 2:
            val = obj[_ND]
            if hasattr(val, "numpy"):
                return val.numpy().astype(np.dtype(obj["dtype"]), copy=False)
            return np.asarray(val, dtype=np.dtype(obj["dtype"]))
        return {k: from_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_safe(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(from_safe(v) for v in obj)
    return obj


# ---------------------------------------------------------------------------- RNG state
def rng_state() -> dict[str, Any]:
    """States of torch (CPU and CUDA), numpy's global generator and python's ``random``."""
    import torch

    st = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (st[0], torch.from_numpy(st[1].astype(np.int64)), int(st[2]), int(st[3]), float(st[4])),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------- files
def save_payload(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write a checkpoint payload atomically (adds format and version)."""
    import torch

    body = dict(payload)
    body.update(format=FORMAT, version=VERSION)
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(to_safe(body), tmp)
    return Path(path)


def read_payload(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint file; errors name the file and say what to do."""
    import torch

    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.exists():
        raise MissingFileError(f"{path}: checkpoint not found (train one with `cmhash train`)")
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise DataError(f"{path}: not a readable cmhash checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise DataError(f"{path}: not a cmhash checkpoint (no format '{FORMAT}')")
    if int(raw.get("version", 0)) > VERSION:
        raise DataError(f"{path}: checkpoint version {raw.get('version')} is newer than this cmhash understands ({VERSION}); upgrade cmhash")
    for key in ("method", "bits", "method_state"):
        if key not in raw:
            raise DataError(f"{path}: checkpoint lacks '{key}'")
    out = from_safe(raw)
    out["path"] = str(path)
    return out


def save_method(path: str | Path, method, meta: dict[str, Any] | None = None, **extra: Any) -> Path:
    """Save a fitted method (shallow or deep) with its meta; no training state."""
    payload = {"method": method.name, "bits": method.bits, "method_state": method.state(), "meta": meta or {}, "finished": True}
    payload.update(extra)
    return save_payload(path, payload)


__all__ = ["from_safe", "read_payload", "rng_state", "save_method", "save_payload", "set_rng_state", "to_safe"]
