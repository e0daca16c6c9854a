"""From a checkpoint back to its inputs: the dataset it was trained on, its split, and new queries.

A checkpoint records how its training inputs were made (dataset, source options, feature file or
cache, encoder specs, text vocabulary, split protocol and seed). `cmhash encode`, the index
builder and the search service all need the same three things from it, so they live here once:

* :func:`checkpoint_dataset`: reload the dataset with the same options and features;
* :func:`checkpoint_split`: recompute the recorded split, refusing data that changed;
* :class:`QueryFeaturizer`: featurise one raw text or image file the way the training data was.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from cmhash.errors import CmhashError, DataError, MissingFileError


def labels_from_groups(ds):
    """Pair-identity data (Flickr8k): relevance = same group, as one-hot labels."""
    from cmhash.data.dataset import supervision_labels

    labels = supervision_labels(None, ds.groups, ds.name)
    meta = dict(ds.meta, relevance="same group (pair identity)")
    return dataclasses.replace(ds, labels=labels, meta=meta)


def checkpoint_dataset(ckpt, dataset: str | None = None, data_root=None, *, dataset_options: dict | None = None, features=None):
    """The dataset a checkpoint was trained on (or ``dataset``/``data_root`` instead), features attached.

    Source options recorded at training time are reused when the dataset is the same one;
    ``dataset_options`` override them. Precomputed image features come from ``features`` or the
    file/cache recorded in the checkpoint (feature-mode models only).
    """
    from cmhash.data import load_dataset
    from cmhash.features.attach import attach_features

    rec = ckpt.meta.get("dataset", {})
    name = dataset or rec.get("name")
    root = data_root if data_root is not None else rec.get("root")
    if not name:
        raise CmhashError(f"{ckpt.path}: the checkpoint does not name its dataset; pass the dataset name and its data root")
    if name != "synthetic" and not root:
        raise CmhashError(f"pass the data root of dataset '{name}' (the checkpoint records none)")
    options = dict(rec.get("source_options") or {}) if name == rec.get("name") else {}
    options.update(dataset_options or {})
    ds = load_dataset(name, root, **options)
    spec = getattr(ckpt.method, "spec", None)
    feats = features or rec.get("features_file")
    if feats and (spec is None or spec.image_mode == "features"):
        if features is None and not Path(feats).exists():
            raise MissingFileError(
                f"{ckpt.path}: the model was trained on the image features in {feats}, which no longer exist; "
                "pass the features again (--features) or re-create them with `cmhash features prepare`"
            )
        ds = attach_features(ds, feats)
    if ds.labels is None and ds.groups is not None:
        ds = labels_from_groups(ds)
    return ds


def checkpoint_split(ckpt, ds, split_file=None):
    """The split the model was trained with (recomputed from protocol, parameters and seed), or a saved one."""
    from cmhash.data.splits import PROTOCOLS, Split, make_split

    if split_file:
        return Split.load(split_file, dataset=ds)
    rec = ckpt.meta.get("split")
    if not rec:
        raise CmhashError(f"{ckpt.path}: no split recorded in the checkpoint; pass a split file or encode all pairs")
    # The record holds every parameter, defaults included. Passing a default back explicitly would
    # turn it into a request (a default num_train=5000 on a 240-pair database is clipped; an
    # explicit one is refused), so only the parameters that differ from the defaults are replayed:
    # the protocol fills the rest with the same values, giving the same split.
    defaults = PROTOCOLS[rec["protocol"]][1] if rec.get("protocol") in PROTOCOLS else {}
    params = {k: v for k, v in (rec.get("params") or {}).items() if k not in defaults or defaults[k] != v}
    split = make_split(ds, rec["protocol"], seed=rec.get("seed"), **params)
    want = (rec.get("dataset") or {}).get("fingerprint")
    have = split.dataset.get("fingerprint")
    if want and want != have:
        raise CmhashError(
            f"{ckpt.path}: the model was trained on a different version of '{ds.name}' "
            f"({(rec.get('dataset') or {}).get('pairs')} pairs, fingerprint {want}; now {len(ds)} pairs, {have}); "
            "pass a split file or encode all pairs"
        )
    return split


class QueryFeaturizer:
    """Featurise a raw text or image exactly as the checkpoint's training inputs were featurised.

    Text: the encoder spec stored from a feature cache (MiniLM, TF-IDF, ...), else the tag/word
    vocabulary recorded by the data source with its weighting. Image: the stored image-encoder
    spec, else the registered encoder named by the training features (e.g. efficientnet-lite0);
    end-to-end (backbone) models take the image itself.
    """

    def __init__(self, ckpt):
        self.ckpt = ckpt
        self.features = dict(ckpt.meta.get("features") or {})
        self.spec = getattr(ckpt.method, "spec", None)
        self._encoders: dict[str, Any] = {}

    # ------------------------------------------------------------------ text
    def _text_encoder(self):
        if "text" in self._encoders:
            return self._encoders["text"]
        specs = self.features.get("encoders") or {}
        if "text" in specs:
            from cmhash.features import encoder_from_spec

            enc = encoder_from_spec(specs["text"])
            fn = lambda texts: enc.encode(list(texts))  # noqa: E731
        elif self.features.get("vocabulary"):
            from cmhash.data.text import Vocabulary

            vocab = Vocabulary.from_dict(self.features["vocabulary"], where=f"{self.ckpt.path}: vocabulary")
            recipe = str(self.features.get("text_features", ""))
            weighting = "tfidf" if "-tfidf-" in recipe else "count" if "-count-" in recipe else "binary"
            fn = lambda texts: vocab.transform(list(texts), weighting=weighting)  # noqa: E731
        else:
            raise DataError(
                f"{self.ckpt.path}: the checkpoint does not record how its text features were made "
                f"({self.features.get('text_features') or 'unknown'}), so a raw text cannot be encoded; "
                "train on a feature cache (`cmhash features extract`) or a dataset with a tag/word vocabulary"
            )
        self._encoders["text"] = fn
        return fn

    @property
    def reads_tokens(self) -> bool:
        """True for models that read word sequences (DVSH): they tokenise raw text with their own vocabulary."""
        return self.spec is not None and getattr(self.spec, "text_mode", "features") == "tokens"

    def text(self, texts):
        """(n, text_dim) float32 features of raw texts; for token models the texts themselves (the model tokenises)."""
        if isinstance(texts, str):
            texts = [texts]
        if self.reads_tokens:
            return list(texts)
        return np.asarray(self._text_encoder()(texts), dtype=np.float32)

    def text_is_empty(self, feats) -> bool:
        """True when a vocabulary text query matched no known token (token models: every word unknown)."""
        if self.reads_tokens:
            vocab = getattr(self.ckpt.method, "vocabulary", None)
            return vocab is not None and all(vocab.unknown_rate([t]) == 1.0 or not t.strip() for t in feats)
        return "text" not in (self.features.get("encoders") or {}) and not np.any(feats)

    def vocabulary_size(self, feats) -> str:
        """How many words/tags the model knows (for messages)."""
        if self.reads_tokens:
            vocab = getattr(self.ckpt.method, "vocabulary", None)
            return f"{len(vocab.vocab) if vocab is not None else 0} words"
        return f"{feats.shape[1]} tags/words"

    # ------------------------------------------------------------------ image
    def _image_encoder(self):
        if "image" in self._encoders:
            return self._encoders["image"]
        from cmhash.features import IMAGE_ENCODERS, create_image_encoder, encoder_from_spec

        specs = self.features.get("encoders") or {}
        if "image" in specs:
            enc = encoder_from_spec(specs["image"])
        else:
            name = str(self.features.get("image_features") or "").split()[0] if self.features.get("image_features") else ""
            if name not in IMAGE_ENCODERS:
                raise DataError(
                    f"{self.ckpt.path}: the model was trained on image features '{name or 'unknown'}', which is not an image "
                    "encoder cmhash can rebuild; train on a feature cache made by `cmhash features extract` so the encoder is recorded"
                )
            enc = create_image_encoder(name)
        self._encoders["image"] = enc
        return enc

    def image(self, paths) -> Any:
        """Features (feature-mode models) or PIL images (backbone models) of image files."""
        from cmhash.data.imageio import open_rgb

        if isinstance(paths, (str, Path)):
            paths = [paths]
        images = []
        for p in paths:
            p = Path(p)
            if not p.exists():
                raise MissingFileError(f"{p}: image not found")
            images.append(open_rgb(p))
        if self.spec is not None and self.spec.image_mode == "backbone":
            return images
        feats = self._image_encoder().encode(images)
        want = getattr(self.spec, "image_dim", None)
        if want and feats.shape[1] != want:
            raise DataError(f"{self.ckpt.path}: the image encoder gives {feats.shape[1]}-d features but the model takes {want}-d")
        return feats


__all__ = ["QueryFeaturizer", "checkpoint_dataset", "checkpoint_split", "labels_from_groups"]
