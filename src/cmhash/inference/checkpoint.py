"""Load a checkpoint back into a ready-to-encode method (any registered method, shallow or deep).

The file format and the writers live in :mod:`cmhash.training.checkpoint`; this module adds the
method registry lookup, so it sits above :mod:`cmhash.methods`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cmhash.errors import CmhashError, DataError
from cmhash.training.checkpoint import read_payload


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``method`` is ready to ``encode(inputs, modality)``."""

    path: str
    method_name: str
    bits: int
    method: Any
    meta: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None
    epochs: int | None = None
    finished: bool = True
    history: list[dict[str, Any]] = field(default_factory=list)

    def encode(self, inputs, modality: str) -> np.ndarray:
        return self.method.encode(inputs, modality)


def load_checkpoint(path: str | Path, device: str = "cpu") -> Checkpoint:
    """Rebuild the trained method stored at ``path`` (a file, or a run folder holding checkpoint.pt)."""
    from cmhash.methods import METHODS

    payload = read_payload(path, map_location="cpu")
    cls = METHODS.get(payload["method"])
    try:
        method = cls.from_state(payload["method_state"])
    except CmhashError:
        raise
    except Exception as exc:
        raise DataError(f"{payload['path']}: cannot rebuild method '{payload['method']}' from this checkpoint ({exc})") from exc
    if getattr(method, "deep", False) and device != "cpu":
        method.to(device)
    return Checkpoint(
        path=payload["path"],
        method_name=payload["method"],
        bits=int(payload["bits"]),
        method=method,
        meta=dict(payload.get("meta") or {}),
        epoch=payload.get("epoch"),
        epochs=payload.get("epochs"),
        finished=bool(payload.get("finished", True)),
        history=list(payload.get("history") or []),
    )



__all__ = ["Checkpoint", "load_checkpoint"]
