"""Bag-of-words text encoders (``bow`` binary, ``count``, ``tfidf``) over a fitted Vocabulary.

The vocabulary is :class:`cmhash.data.text.Vocabulary` (tokens kept when in at least
``min_count`` texts, sorted). Fitting:

* when the dataset ships a vocabulary in ``dataset.meta["vocabulary"]`` (MIRFlickr: the standard
  1,386 tags seen at least 15 times over all 20,015 listed lines) it is reused, so ``bow``
  reproduces the standard vector exactly (``use_dataset_vocabulary=False`` refits);
* otherwise it is built on the training texts given to ``fit``.

The fitted vocabulary travels inline in the spec, so a raw query is encoded the same way later.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from cmhash.data.text import Vocabulary, tokenize
from cmhash.errors import DataError
from cmhash.features.base import TEXT_ENCODERS, TextEncoder, texts_sha256

WEIGHTINGS = {"bow": "binary", "count": "count", "tfidf": "tfidf"}
KINDS = ("auto", "tags", "sentence", "document")


def token_kind(kind: str, text_kind: str | None) -> str:
    """The tokenizer kind: 'tags' splits on commas, anything else gives words."""
    if kind != "auto":
        return kind
    return "tags" if text_kind == "tags" else "sentence"


def sparse_counts(vocab: Vocabulary, texts: Sequence[str], binary: bool = False):
    """Texts -> scipy CSR (n, V) token counts (memory stays proportional to the tokens present)."""
    import scipy.sparse as sp

    indptr, indices, data = [0], [], []
    for text in texts:
        counts: dict[int, int] = {}
        for tok in tokenize(text, vocab.kind):
            j = vocab.index.get(tok)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        cols = sorted(counts)
        indices.extend(cols)
        data.extend(1 if binary else counts[c] for c in cols)
        indptr.append(len(indices))
    return sp.csr_matrix((np.asarray(data, dtype=np.float32), np.asarray(indices, dtype=np.int64), np.asarray(indptr, dtype=np.int64)), shape=(len(texts), len(vocab)))


class VocabularyEncoder(TextEncoder):
    """Shared fitting of a Vocabulary (dataset vocabulary or built on training texts)."""

    needs_fit = True

    def __init__(self, min_count: int = 15, max_size: int | None = None, kind: str = "auto", use_dataset_vocabulary: bool = True, **extra: Any):
        if kind not in KINDS:
            raise DataError(f"text encoder {self.name}: kind must be one of {', '.join(KINDS)}, got '{kind}'")
        if int(min_count) < 1:
            raise DataError(f"text encoder {self.name}: min_count must be at least 1, got {min_count}")
        super().__init__(min_count=int(min_count), max_size=max_size, kind=kind, use_dataset_vocabulary=bool(use_dataset_vocabulary), **extra)
        self.vocab: Vocabulary | None = None

    @property
    def fitted(self) -> bool:
        return self.vocab is not None

    def _dataset_vocabulary(self, text_kind: str | None, meta: dict | None) -> Vocabulary | None:
        if not self.options["use_dataset_vocabulary"] or not meta or not isinstance(meta.get("vocabulary"), dict):
            return None
        d = meta["vocabulary"]
        v = Vocabulary(d["tokens"], d["doc_freq"], d["num_docs"], d.get("kind", "tags"), d.get("min_count", 1))
        if self.options["kind"] != "auto" and v.kind != self.options["kind"]:
            return None
        return v

    def fit_key(self, texts: Sequence[str], text_kind: str | None = None, meta: dict | None = None) -> dict[str, Any]:
        """What the fitted state depends on (for cache keys) without fitting."""
        v = self._dataset_vocabulary(text_kind, meta)
        if v is not None:
            return {"vocabulary": "dataset", "fingerprint": v.fingerprint(), "size": len(v), "num_docs": v.num_docs}
        return {"vocabulary": "fitted", "texts_sha256": texts_sha256(texts), "n": len(texts), "kind": token_kind(self.options["kind"], text_kind)}

    def build_vocabulary(self, texts: Sequence[str], text_kind: str | None, meta: dict | None) -> Vocabulary:
        v = self._dataset_vocabulary(text_kind, meta)
        if v is not None:
            return v
        kind = token_kind(self.options["kind"], text_kind)
        return Vocabulary.build(texts, min_count=self.options["min_count"], kind=kind, max_size=self.options["max_size"])

    def fit(self, texts: Sequence[str], text_kind: str | None = None, meta: dict | None = None) -> "VocabularyEncoder":
        self.vocab = self.build_vocabulary(list(texts), text_kind, meta)
        self.dim = len(self.vocab)
        return self

    def get_state(self) -> dict[str, Any] | None:
        return None if self.vocab is None else {"vocabulary": self.vocab.to_dict()}

    def set_state(self, state: dict[str, Any]) -> None:
        d = state.get("vocabulary")
        if not isinstance(d, dict) or d.get("format") != "cmhash-vocabulary":
            raise DataError(f"text encoder {self.name}: spec state has no valid vocabulary")
        self.vocab = Vocabulary(d["tokens"], d["doc_freq"], d["num_docs"], d.get("kind", "tags"), d.get("min_count", 1))
        self.dim = len(self.vocab)


class BowEncoder(VocabularyEncoder):
    """Binary / count / TF-IDF bag of words (float32, TF-IDF rows l2-normalised)."""

    version = "1"

    def __init__(self, weighting: str = "bow", min_count: int = 15, max_size: int | None = None, kind: str = "auto", use_dataset_vocabulary: bool = True):
        if weighting not in WEIGHTINGS:
            raise DataError(f"unknown weighting '{weighting}' (use {', '.join(WEIGHTINGS)})")
        self.name = weighting
        super().__init__(min_count=min_count, max_size=max_size, kind=kind, use_dataset_vocabulary=use_dataset_vocabulary)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self._check_fitted()
        return self.vocab.transform(list(texts), weighting=WEIGHTINGS[self.name])


def _factory(weighting: str, doc: str):
    def make(**options: Any) -> BowEncoder:
        return BowEncoder(weighting=weighting, **options)

    make.__doc__ = doc
    return make


TEXT_ENCODERS.register("bow")(_factory("bow", "bow: binary bag of words/tags (MIRFlickr: the standard 1,386-d tag vector)."))
TEXT_ENCODERS.register("count")(_factory("count", "count: token counts over the vocabulary."))
TEXT_ENCODERS.register("tfidf")(_factory("tfidf", "tfidf: smoothed TF-IDF over the vocabulary, rows l2-normalised."))
