"""The model side of search: turn a collection, or one text / one image, into codes with a checkpoint.

This is the only place where the index touches models and feature encoders, so that the index
and the CLI stay independent of how a method is stored:

* :func:`encode_collection` -> :class:`EncodedCollection` (ids, image/text codes, metadata)
* :func:`encode_query` -> one row of +-1 codes for a text or an image

Both need the checkpoint loader (``cmhash.methods.checkpoint.load_checkpoint``: the trained method
and the specs of the feature encoders its inputs came from) and the feature encoders
(``cmhash.features.encoder_from_spec``), which are built in other areas of cmhash. Until they
are part of this build, both functions raise :class:`ModelNotAvailableError` (a CmhashError, so
the CLI prints it and exits 2); everything else of the search engine works from codes files
(`cmhash index build --codes`, `cmhash search --like/--query-codes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cmhash.errors import CmhashError


@dataclass
class EncodedCollection:
    """Codes of every item of a collection, both modalities, with per-item metadata."""

    ids: np.ndarray
    codes: dict[str, np.ndarray]  # modality -> (n, bits) +-1
    bits: int
    metadata: list[dict[str, Any]] | None = None
    info: dict[str, Any] = field(default_factory=dict)


class ModelNotAvailableError(CmhashError, NotImplementedError):
    """Encoding with a checkpoint needs the method checkpoints and feature encoders of cmhash."""


def _unavailable(what: str) -> ModelNotAvailableError:
    return ModelNotAvailableError(
        f"{what} needs cmhash's checkpoint loader (cmhash.methods.checkpoint) and feature encoders (cmhash.features), "
        "which this build does not include yet. Encode the collection with `cmhash encode` and build the index with "
        "`cmhash index build --codes CODES.npz`; query it with --like ID or --query-codes."
    )


def encode_collection(checkpoint: str | Path, dataset_name: str, data_root, *, split: str = "db", dataset_options=None, progress: bool = True) -> EncodedCollection:
    """Encode the items of a dataset with a trained model (both modalities)."""
    raise _unavailable("`cmhash index build --checkpoint`")


def encode_query(checkpoint: str | Path, text: str | None = None, image: str | Path | None = None) -> tuple[np.ndarray, str]:
    """(+-1 codes of shape (1, bits), query modality) for one text or one image file."""
    raise _unavailable("a --text/--image query")
