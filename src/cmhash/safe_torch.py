"""Loading torch weight files without ever unpickling them, on every supported torch.

``torch.load`` runs arbitrary code from a pickle unless ``weights_only=True``; torch made that the
default only in 2.6, and third-party loaders (``efficientnet_lite_pytorch``'s ``from_pretrained``)
call ``torch.load(path)`` bare. cmhash therefore loads every weights file itself, here.
"""

from __future__ import annotations

import os
from typing import Any

from cmhash.errors import DataError, MissingFileError


def load_weights(path: str | os.PathLike, what: str = "weights file") -> dict[str, Any]:
    """A state dict read with ``weights_only=True``; one-line errors naming the file."""
    import torch

    from cmhash.io import safe_reason

    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: {what} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure is an unreadable file
        raise DataError(f"{path}: not a readable {what} ({safe_reason(exc)})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DataError(f"{path}: not a {what} (expected a state dict, found {type(state).__name__})")
    return state


def efficientnet_from_file(variant: str, path: str | os.PathLike, **override: Any):
    """``EfficientNet.from_pretrained(variant, weights_path=path)`` without its bare ``torch.load``."""
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(variant, **override)
    state = load_weights(path, f"{variant} weights file")
    try:
        ret = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise DataError(f"{path}: these are not {variant} weights ({str(exc).splitlines()[0]})") from exc
    if ret.missing_keys or ret.unexpected_keys:
        bad = (ret.missing_keys or ret.unexpected_keys)[:3]
        raise DataError(f"{path}: these are not {variant} weights (missing or unexpected keys, e.g. {', '.join(bad)})")
    return model
