"""Precomputed features onto a dataset, found the same way for every method.

* :func:`attach_features`: image (and text) features from an ``.npz`` or a feature cache folder,
  rows matched on the dataset's pair ids;
* :func:`default_features`: where a dataset's ready-made features are when the user names none:
  ``$CMHASH_FEATURES/<dataset>-<encoder>.npz``, then the cache written by
  ``cmhash features prepare <dataset>`` (``$CMHASH_CACHE/features/<dataset>``). The lookup depends
  on the dataset only (never on the method or its preset), so ``cmhash train djsrh`` and
  ``cmhash train cmfh`` with the same arguments train on the same features.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cmhash.errors import DataError, MissingFileError
from cmhash.io import read_npz


def default_features(ds, encoder: str | None = None) -> str | None:
    """The ready-made features of ``ds`` (a path), or None when there are none.

    ``encoder``: accept only features of this image encoder (default: the encoder of the
    dataset's ready-made set, efficientnet-lite0 for mirflickr/flickr8k/fashion).
    """
    from cmhash.features.prepared import PREPARED_SETS, features_cache_dir

    want = str(encoder).split()[0] if encoder else None
    prepared = PREPARED_SETS.get(ds.name)
    enc = want or (prepared.image[0] if prepared else None)
    folder = os.environ.get("CMHASH_FEATURES")
    if folder and enc:
        cand = Path(folder) / f"{ds.name}-{enc}.npz"
        if cand.exists():
            return str(cand)
    path = features_cache_dir(ds.name)
    if not (path / "manifest.json").exists():
        return None
    try:
        from cmhash.features.cache import FeatureCache

        cache = FeatureCache.load(path)
        name = cache.entries.get("image", {}).get("encoder", {}).get("name")
        complete = cache.complete("image")
    except Exception:  # an unreadable or half-written cache is not "ready-made"
        return None
    if not complete or (want is not None and name != want):
        return None
    return str(path)


def attach_features(ds, features: str | Path | None = None, *, encoder: str | None = None):
    """Dataset with precomputed image features from ``features`` (an ``.npz`` or a feature cache).

    An ``.npz`` needs ``image_features`` (n, d) and ``ids`` in any order (rows are matched on the
    dataset's pair ids); ``text_features`` are taken only when the dataset has none.
    """
    if features is None:
        return ds
    path = Path(features)
    if not path.exists():
        raise MissingFileError(f"{path}: features not found (give an .npz with image_features and ids, or a feature cache folder)")
    if path.is_dir():
        return _from_feature_cache(ds, path, encoder)
    data = read_npz(path)
    if "image_features" not in data:
        raise DataError(f"{path}: no 'image_features' array (found: {', '.join(data)})")
    img = np.asarray(data["image_features"], dtype=np.float32)
    rows = _match_rows(ds, data.get("ids"), img.shape[0], path)
    txt = None
    if ds.text_features is None and "text_features" in data:
        txt = np.asarray(data["text_features"], dtype=np.float32)[rows]
    meta = {"image_features": str(data["encoder"]) if "encoder" in data else (encoder or path.stem), "features_file": str(path)}
    out = ds.with_features(image_features=img[rows], text_features=txt)
    out.meta.update(meta)  # (not as with_features kwargs: "image_features" names the array there)
    return out


def _match_rows(ds, ids, n_rows: int, path: Path) -> np.ndarray:
    if ids is None:
        if n_rows != len(ds):
            raise DataError(f"{path}: {n_rows} feature rows but the dataset has {len(ds)} pairs, and no 'ids' array to match them")
        return np.arange(n_rows)
    ids = np.asarray(ids).astype(str)
    if len(ids) != n_rows:
        raise DataError(f"{path}: {len(ids)} ids for {n_rows} feature rows")
    pos = {i: k for k, i in enumerate(ids)}
    missing = [i for i in ds.ids if i not in pos]
    if missing:
        raise DataError(f"{path}: no features for {len(missing)} of the dataset's {len(ds)} pairs (first: id '{missing[0]}'); re-extract them")
    return np.asarray([pos[i] for i in ds.ids], dtype=np.int64)


def _from_feature_cache(ds, folder: Path, encoder: str | None):
    """Features from a cache folder written by ``cmhash features`` (image, and text when it has it)."""
    manifest = folder / "manifest.json"
    if not manifest.exists():
        npz = sorted(folder.glob("*.npz"))
        if len(npz) == 1:
            return attach_features(ds, npz[0], encoder=encoder)
        raise DataError(f"{folder}: not a feature cache (no manifest.json; create one with `cmhash features extract` or `prepare`)")
    from cmhash.features.cache import FeatureCache

    cache = FeatureCache.load(folder)
    out = cache.apply(ds, text="text" if "text" in cache.entries else None)
    specs = out.meta.get("encoders", {})
    out.meta.update(
        image_features=specs.get("image", {}).get("name", encoder),
        features_file=str(folder),
    )
    if "text" in specs:
        out.meta["text_features"] = f"{specs['text'].get('name')}-{specs['text'].get('dim')}"
    return out



__all__ = ["attach_features", "default_features"]
