"""Build a :class:`CrossModalIndex` of a collection: from a codes file, or from a model + dataset.

* :func:`build_from_codes` reads the file written by ``cmhash encode`` (``db_image``, ``db_text``,
  ``db_ids``, ``db_labels``) and, given the dataset, attaches each item's text, image path and
  label names so search results can show them.
* :func:`build_from_checkpoint` encodes the dataset with a trained model
  (:func:`cmhash.index.encoding.encode_collection`) and indexes the codes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cmhash.errors import DataError
from cmhash.index.crossmodal import MODALITIES, CrossModalIndex
from cmhash.index.idmap import dataset_metadata, is_caption_dataset, show_ids  # noqa: F401 (re-exported)

SPLITS = ("db", "query", "all")
ADD_BATCH = 100_000


def group_items(ids, groups, metadata: list[dict] | None) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """One image item per group: (first row of each group, group names, metadata with all its texts)."""
    groups = np.asarray(groups).astype(str)
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    order = np.argsort(first)  # groups in order of first appearance
    first = first[order]
    texts: dict[str, list[str]] = {}
    for row, g in enumerate(groups.tolist()):
        if metadata is not None and metadata[row].get("text") is not None:
            texts.setdefault(g, []).append(metadata[row]["text"])
    metas = []
    for row in first.tolist():
        g = groups[row]
        m = {k: v for k, v in (metadata[row] if metadata is not None else {}).items() if k != "text"}
        m.update(group=str(g), texts=texts.get(str(g), []), text=(texts.get(str(g)) or [None])[0])
        metas.append(m)
    return first, groups[first], metas


def _add_in_batches(index: CrossModalIndex, ids, codes: dict[str, np.ndarray], metadata, progress: bool) -> None:
    n = len(ids)
    bar = None
    if progress and n > ADD_BATCH:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="item", desc="indexing")
    for start in range(0, n, ADD_BATCH):
        stop = min(start + ADD_BATCH, n)
        index.add(
            ids[start:stop],
            image_codes=codes["image"][start:stop] if "image" in codes else None,
            text_codes=codes["text"][start:stop] if "text" in codes else None,
            metadata=metadata[start:stop] if metadata is not None else None,
        )
        if bar is not None:
            bar.update(stop - start)
    if bar is not None:
        bar.close()


def build_index(
    ids,
    codes: dict[str, np.ndarray],
    *,
    bits: int,
    backend: str = "faiss",
    metadata: list | None = None,
    info: dict[str, Any] | None = None,
    progress: bool = False,
    groups=None,
    **options: Any,
) -> CrossModalIndex:
    """A CrossModalIndex over ``codes`` ({"image": (n, bits), "text": (n, bits)}, either or both).

    ``groups`` (one image name per row, caption datasets): one image item per group and one text
    item per row (per-modality items), so each image is found once.
    """
    modalities = [m for m in MODALITIES if codes.get(m) is not None]
    if not modalities:
        raise DataError("no codes to index: give image codes, text codes or both")
    if groups is not None and "image" in modalities:
        info = {**(info or {}), "items": "per_modality"}
    index = CrossModalIndex.create(backend, bits, modalities=modalities, info=info, **options)
    if groups is not None and "image" in modalities:
        rows, names, metas = group_items(ids, groups, metadata)
        index.add_modality("image", names, codes["image"][rows], metadata=metas)
        if "text" in modalities:
            for start in range(0, len(ids), ADD_BATCH):
                stop = min(start + ADD_BATCH, len(ids))
                index.add_modality("text", ids[start:stop], codes["text"][start:stop], metadata=metadata[start:stop] if metadata is not None else None)
    else:
        _add_in_batches(index, ids, {m: codes[m] for m in modalities}, metadata, progress)
    index.flush()  # Milvus: sealed and indexed before anyone searches it
    return index


def select_split(data: dict[str, Any], split: str, source: str = "codes file") -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None]:
    """(ids, {modality: codes}, labels) of the ``db``, ``query`` or ``all`` (query + db) items of a codes file."""
    if split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    parts = ["query", "db"] if split == "all" else [split]
    ids_parts, code_parts, label_parts = [], {m: [] for m in MODALITIES}, []
    for part in parts:
        present = [m for m in MODALITIES if f"{part}_{m}" in data]
        if not present:
            raise DataError(f"{source}: no {part}_image or {part}_text codes (keys: {', '.join(sorted(k for k in data if k not in ('meta', 'bits')))})")
        n = len(data[f"{part}_{present[0]}"])
        ids_parts.append(data[f"{part}_ids"].astype(str) if f"{part}_ids" in data else np.asarray([f"{part}{i}" for i in range(n)]))
        for m in MODALITIES:
            code_parts[m].append(data.get(f"{part}_{m}"))
        label_parts.append(data.get(f"{part}_labels"))
    codes = {}
    for m, lst in code_parts.items():
        if all(c is not None for c in lst):
            codes[m] = np.concatenate(lst) if len(lst) > 1 else lst[0]
        elif any(c is not None for c in lst):
            raise DataError(f"{source}: {m} codes exist for some splits but not for all of {', '.join(parts)}")
    ids = np.concatenate(ids_parts)
    labels = None if any(lab is None for lab in label_parts) else np.concatenate(label_parts)
    return ids, codes, labels


def build_from_codes(
    codes_path: str | Path,
    *,
    backend: str = "faiss",
    split: str = "db",
    dataset=None,
    info: dict[str, Any] | None = None,
    progress: bool = False,
    **options: Any,
) -> CrossModalIndex:
    """Index the codes of a codes file; ``dataset`` (a PairedDataset) adds text/image/labels to each item."""
    from cmhash.codes_io import load_codes

    data = load_codes(codes_path)
    ids, codes, labels = select_split(data, split, str(codes_path))
    parts = ["query", "db"] if split == "all" else [split]
    groups = None
    if all(f"{p}_groups" in data for p in parts):  # caption codes (cmhash encode on Flickr8k): one image item per image
        groups = np.concatenate([np.asarray(data[f"{p}_groups"]).astype(str) for p in parts])
        if split == "all":  # query and database may hold the same pairs (official protocol): keep each id once
            _, first = np.unique(ids, return_index=True)
            keep = np.sort(first)
            ids, groups, labels = ids[keep], groups[keep], None if labels is None else labels[keep]
            codes = {m: c[keep] for m, c in codes.items()}
    if dataset is not None:
        metadata = dataset_metadata(dataset, ids)
    elif groups is not None:
        metadata = [{"group": str(g)} for g in groups]
    elif labels is not None:
        metadata = [{"labels": np.flatnonzero(row).tolist()} for row in labels]
    else:
        metadata = None
    meta = data["meta"]
    full_info = {
        "source": "codes",
        "codes_file": str(Path(codes_path).resolve()),
        "split": split,
        **{k: meta[k] for k in ("method", "dataset", "checkpoint", "protocol") if k in meta},
        **(info or {}),
    }
    return build_index(ids, codes, bits=data["bits"], backend=backend, metadata=metadata, info=full_info, progress=progress, groups=groups, **options)


def build_from_checkpoint(
    checkpoint: str | Path,
    dataset_name: str,
    data_root: str | Path | None,
    *,
    backend: str = "faiss",
    split: str = "db",
    dataset_options: dict[str, Any] | None = None,
    features: str | Path | None = None,
    info: dict[str, Any] | None = None,
    progress: bool = True,
    **options: Any,
) -> CrossModalIndex:
    """Encode a dataset (by default the one the model was trained on) with a trained model and index its image and text codes."""
    from cmhash.index.encoding import encode_collection
    from cmhash.inference.provenance import checkpoint_file, checkpoint_sha256

    sha = checkpoint_sha256(checkpoint)
    coll = encode_collection(checkpoint, dataset_name, data_root, split=split, dataset_options=dataset_options, features=features, progress=progress)
    full_info = {
        "source": "checkpoint",
        "checkpoint": str(checkpoint_file(checkpoint).resolve()),
        "checkpoint_sha256": sha,
        "dataset": coll.info.get("dataset", dataset_name),
        "data_root": coll.info.get("data_root") if data_root is None else str(Path(data_root).resolve()),
        "dataset_options": dataset_options or {},
        "split": split,
        **coll.info,
        **(info or {}),
    }
    return build_index(
        coll.ids, coll.codes, bits=coll.bits, backend=backend, metadata=coll.metadata, info=full_info, progress=progress, groups=coll.groups, **options
    )
