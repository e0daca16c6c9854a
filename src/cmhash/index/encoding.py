"""The model side of search: turn a collection, or one text / one image, into codes with a checkpoint.

This is the only place where the index touches models and feature encoders, so that the index
and the CLI stay independent of how a method is stored:

* :func:`encode_collection` -> :class:`EncodedCollection` (ids, image/text codes, metadata)
* :func:`encode_query` -> one row of +-1 codes for a text or an image

The checkpoint (``cmhash.training.checkpoint``) records how its inputs were made;
``cmhash.inference.inputs`` turns that record back into the dataset, the split and a featuriser
for new queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cmhash.errors import DataError


@dataclass
class EncodedCollection:
    """Codes of every item of a collection, both modalities, with per-item metadata."""

    ids: np.ndarray
    codes: dict[str, np.ndarray]  # modality -> (n, bits) +-1
    bits: int
    metadata: list[dict[str, Any]] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    groups: np.ndarray | None = None  # caption datasets: the image of each row


SPLITS = ("db", "query", "all")


def encode_collection(checkpoint: str | Path, dataset_name: str | None, data_root, *, split: str = "db", dataset_options=None, features=None, progress: bool = True) -> EncodedCollection:
    """Encode the items of a dataset with a trained model (both modalities).

    ``split``: ``db`` (the database of the split the model was trained with, the default),
    ``query`` (its queries) or ``all`` (every pair). ``dataset_name``/``data_root`` default to the
    ones recorded in the checkpoint.
    """
    from cmhash.index.idmap import dataset_metadata, is_caption_dataset
    from cmhash.inference import load_checkpoint
    from cmhash.inference.inputs import checkpoint_dataset, checkpoint_split

    if split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    ckpt = load_checkpoint(checkpoint)
    ds = checkpoint_dataset(ckpt, dataset_name, data_root, dataset_options=dataset_options, features=features)
    if split != "all":
        s = checkpoint_split(ckpt, ds)
        ds = ds.subset(s.database if split == "db" else s.query)
    codes = {}
    for modality in ("image", "text"):
        if progress:
            print(f"encoding {len(ds)} {modality}s with {ckpt.method_name} ({ckpt.bits} bits)", flush=True)
        codes[modality] = ckpt.encode(ds, modality)
    ids = np.asarray(ds.ids).astype(str)
    root = ckpt.meta.get("dataset", {}).get("root") if data_root is None else data_root
    info = {"dataset": ds.name, "data_root": None if root is None else str(Path(root).resolve()), "method": ckpt.method_name, "bits": ckpt.bits, "features": {k: v for k, v in ckpt.meta.get("features", {}).items() if k not in ("vocabulary", "encoders")}}
    groups = np.asarray(ds.groups).astype(str) if is_caption_dataset(ds) else None
    return EncodedCollection(ids=ids, codes=codes, bits=ckpt.bits, metadata=dataset_metadata(ds), info=info, groups=groups)


def encode_query(checkpoint: str | Path, text: str | None = None, image: str | Path | None = None, info: dict | None = None) -> tuple[np.ndarray, str]:
    """(+-1 codes of shape (1, bits), query modality) for one text or one image file.

    A text the model cannot read raises :class:`cmhash.inference.queries.UnreadableQueryError`; with the
    index ``info``, a checkpoint whose content changed since the index was built is refused.
    """
    from cmhash.inference.model import load
    from cmhash.inference.provenance import check_query_model

    if (text is None) == (image is None):
        raise DataError("give exactly one of text or image")
    if info is not None:
        check_query_model(info, checkpoint)
    model = load(checkpoint)
    if text is not None:
        return model.encode_text(str(text)), "text"
    return model.encode_image(image), "image"
