"""Text features that need no model: tag/word bag-of-words with a min-count vocabulary, TF-IDF.

The vocabulary keeps tokens whose *document frequency* (number of texts containing them) is at
least ``min_count``, sorted alphabetically, so it is deterministic. On MIRFlickr's 20,015 tag
lines, ``min_count=15`` gives the standard 1,386-d tag vector.

Tokenisation: ``"tags"`` texts are split on commas (each tag is one token, stripped and
lower-cased); ``"sentence"``/``"document"`` texts are lower-cased words of letters/digits.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from cmhash.errors import DataError
from cmhash.io import read_json, write_json

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
FORMAT_VERSION = 1


def tokenize(text: str, kind: str = "tags") -> list[str]:
    """Split one raw text into tokens (see module docstring)."""
    if text is None:
        return []
    if kind == "tags":
        return [t.strip().lower() for t in text.split(",") if t.strip()]
    return _WORD.findall(text.lower())


class Vocabulary:
    """Token -> column mapping plus document frequencies (for TF-IDF); saved as JSON."""

    def __init__(self, tokens: Sequence[str], doc_freq: Sequence[int], num_docs: int, kind: str = "tags", min_count: int = 1):
        if len(tokens) != len(doc_freq):
            raise DataError("vocabulary: tokens and doc_freq differ in length")
        self.tokens = list(tokens)
        self.doc_freq = np.asarray(doc_freq, dtype=np.int64)
        self.num_docs = int(num_docs)
        self.kind = kind
        self.min_count = int(min_count)
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 15, kind: str = "tags", max_size: int | None = None) -> "Vocabulary":
        """Keep tokens in at least ``min_count`` texts; ``max_size`` keeps the most frequent (ties by token)."""
        df: Counter = Counter()
        n = 0
        for text in texts:
            n += 1
            df.update(set(tokenize(text, kind)))
        kept = [(t, c) for t, c in df.items() if c >= min_count]
        if max_size is not None and len(kept) > max_size:
            kept = sorted(kept, key=lambda tc: (-tc[1], tc[0]))[:max_size]
        kept.sort(key=lambda tc: tc[0])
        if not kept:
            raise DataError(f"vocabulary: no token occurs in at least {min_count} of the {n} texts; lower min_count")
        return cls([t for t, _ in kept], [c for _, c in kept], n, kind, min_count)

    def transform(self, texts: Sequence[str], weighting: str = "binary") -> np.ndarray:
        """Texts -> float32 (n, V). ``weighting``: 'binary' (presence), 'count' or 'tfidf' (l2-normalised)."""
        if weighting not in ("binary", "count", "tfidf"):
            raise DataError(f"unknown text weighting '{weighting}' (use binary, count or tfidf)")
        out = np.zeros((len(texts), len(self)), dtype=np.float32)
        for i, text in enumerate(texts):
            for tok in tokenize(text, self.kind):
                j = self.index.get(tok)
                if j is not None:
                    if weighting == "binary":
                        out[i, j] = 1.0
                    else:
                        out[i, j] += 1.0
        if weighting == "tfidf":
            idf = np.log((1.0 + self.num_docs) / (1.0 + self.doc_freq)) + 1.0
            out *= idf.astype(np.float32)
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            np.divide(out, norms, out=out, where=norms > 0)
        return out

    def to_dict(self) -> dict:
        return {
            "format": "cmhash-vocabulary",
            "version": FORMAT_VERSION,
            "kind": self.kind,
            "min_count": self.min_count,
            "num_docs": self.num_docs,
            "tokens": self.tokens,
            "doc_freq": self.doc_freq.tolist(),
        }

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict(), indent=None)

    @classmethod
    def from_dict(cls, d: dict, where: str = "vocabulary") -> "Vocabulary":
        """Rebuild a vocabulary from :meth:`to_dict` output (e.g. ``dataset.meta["vocabulary"]``)."""
        if not isinstance(d, dict) or d.get("format") != "cmhash-vocabulary":
            raise DataError(f"{where}: not a cmhash vocabulary (no \"format\": \"cmhash-vocabulary\")")
        if int(d.get("version", 0)) > FORMAT_VERSION:
            raise DataError(f"{where}: vocabulary format version {d.get('version')} is newer than this cmhash reads ({FORMAT_VERSION}); upgrade cmhash")
        for key in ("tokens", "doc_freq", "num_docs"):
            if key not in d:
                raise DataError(f"{where}: missing field '{key}'")
        if len(set(d["tokens"])) != len(d["tokens"]):
            raise DataError(f"{where}: duplicate tokens")
        return cls(d["tokens"], d["doc_freq"], d["num_docs"], d.get("kind", "tags"), d.get("min_count", 1))

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        return cls.from_dict(read_json(path), where=str(path))

    def fingerprint(self) -> str:
        import hashlib

        return hashlib.sha256("\n".join(self.tokens).encode()).hexdigest()[:16]


def idf_weights(vocab: Vocabulary) -> np.ndarray:
    """Smoothed IDF as used by ``transform(..., 'tfidf')``."""
    return (np.log((1.0 + vocab.num_docs) / (1.0 + vocab.doc_freq)) + 1.0).astype(np.float32)


def tfidf_matrix(counts: np.ndarray) -> np.ndarray:
    """TF-IDF of a ready-made bag-of-words matrix (e.g. ``YAll`` from a .mat file), rows l2-normalised.

    Document frequencies are taken from the matrix itself (its rows are the documents), with the
    same smoothed IDF as :meth:`Vocabulary.transform`.
    """
    counts = np.asarray(counts, dtype=np.float32)
    if counts.ndim != 2:
        raise DataError(f"tfidf: expected a 2-D (texts x words) matrix, got shape {counts.shape}")
    if (counts < 0).any():
        raise DataError("tfidf: bag-of-words counts must be non-negative")
    df = (counts > 0).sum(axis=0)
    idf = (np.log((1.0 + counts.shape[0]) / (1.0 + df)) + 1.0).astype(np.float32)
    out = counts * idf
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


__all__ = ["tokenize", "Vocabulary", "idf_weights", "tfidf_matrix"]
