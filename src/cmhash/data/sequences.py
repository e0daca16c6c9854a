"""Token sequences for sequence models (DVSH's LSTMs): the one place that turns texts into word ids.

* tokenisation: :func:`cmhash.data.text.tokenize` with kind ``sentence`` (lower-cased words of
  letters/digits). Tag texts (MIRFlickr) are read as a word sequence in the listed order: the
  commas between tags are not word characters, so ``"new york, beach"`` -> ``new york beach``.
* vocabulary: :class:`SequenceVocabulary` wraps a :class:`~cmhash.data.text.Vocabulary` (words in
  at least ``min_count`` training texts, at most ``max_size`` most frequent, sorted) and reserves
  two ids: ``0`` = padding, ``1`` = unknown word; word ``j`` of the vocabulary is id ``2 + j``.
* padding: :meth:`SequenceVocabulary.encode` returns right-padded ``(n, max_len)`` int64 ids and
  the true lengths. Every text gets at least one id: a text with no known word (empty, or only
  words never seen in training, as free queries often are) becomes ``[UNK]`` of length 1, so a
  query never breaks the model and never yields an empty sequence (which ``pack_padded_sequence``
  rejects).
* packing: :func:`pack` wraps ``torch.nn.utils.rnn.pack_padded_sequence`` (unsorted lengths).
* GloVe: :func:`cmhash.features.text_glove.glove_table` gives an embedding table for a
  vocabulary initialised from GloVe 6B 50-d (the features layer owns the GloVe files).

The vocabulary is saved as JSON (``save``/``load``/``to_dict``), and travels inside checkpoints,
so a raw query sentence is encoded later exactly as in training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from cmhash.data.text import Vocabulary, tokenize
from cmhash.errors import DataError
from cmhash.io import read_json, write_json

PAD, UNK, OFFSET = 0, 1, 2
FORMAT = "cmhash-sequence-vocabulary"
FORMAT_VERSION = 1


def words(text: str | None) -> list[str]:
    """The word sequence of one raw text (sentence or comma-separated tags)."""
    return tokenize(text or "", "sentence")


def pad_sequences(seqs: Sequence[Sequence[int]], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Id lists -> (ids (n, max_len) int64 right-padded with PAD, lengths (n,) int64).

    Longer lists are cut to ``max_len``; an empty list becomes ``[UNK]`` (length 1).
    """
    L = int(max_len)
    if L < 1:
        raise DataError(f"max_len must be at least 1, got {max_len}")
    ids = np.full((len(seqs), L), PAD, dtype=np.int64)
    lengths = np.zeros(len(seqs), dtype=np.int64)
    for i, s in enumerate(seqs):
        s = list(s)[:L] or [UNK]
        ids[i, : len(s)] = s
        lengths[i] = len(s)
    return ids, lengths


class SequenceVocabulary:
    """Word -> id with PAD=0 and UNK=1 reserved; encodes texts into padded id matrices."""

    def __init__(self, vocab: Vocabulary, max_len: int = 32):
        if vocab.kind != "sentence":
            raise DataError(f"sequence vocabulary: needs a word ('sentence') vocabulary, got a '{vocab.kind}' one")
        if int(max_len) < 1:
            raise DataError(f"sequence vocabulary: max_len must be at least 1, got {max_len}")
        self.vocab = vocab
        self.max_len = int(max_len)

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1, max_size: int | None = 20000, max_len: int = 32) -> "SequenceVocabulary":
        """Fit on training texts: words in at least ``min_count`` texts (``max_size`` most frequent)."""
        return cls(Vocabulary.build(list(texts), min_count=int(min_count), kind="sentence", max_size=max_size), max_len=max_len)

    @property
    def size(self) -> int:
        """Rows of the embedding table: vocabulary words + PAD + UNK."""
        return len(self.vocab) + OFFSET

    def __len__(self) -> int:
        return self.size

    def ids(self, text: str | None) -> list[int]:
        """Ids of one text's words (unknown words -> UNK; not cut, not padded; may be empty)."""
        index = self.vocab.index
        return [OFFSET + index[w] if w in index else UNK for w in words(text)]

    def encode(self, texts: Sequence[str], max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Texts -> (ids (n, max_len) int64, lengths (n,) int64); see the module docstring."""
        if isinstance(texts, str):
            raise DataError("sequence vocabulary: encode() takes a list of texts, not one string")
        return pad_sequences([self.ids(t) for t in texts], max_len or self.max_len)

    def unknown_rate(self, texts: Sequence[str]) -> float:
        """Fraction of word occurrences in ``texts`` that are not in the vocabulary."""
        n = unk = 0
        for t in texts:
            s = self.ids(t)
            n += len(s)
            unk += sum(1 for x in s if x == UNK)
        return unk / n if n else 0.0

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Ids -> words (padding skipped, unknown shown as ``<unk>``)."""
        out = []
        for i in ids:
            i = int(i)
            if i == PAD:
                continue
            out.append("<unk>" if i == UNK else self.vocab.tokens[i - OFFSET])
        return out

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": FORMAT_VERSION, "pad": PAD, "unk": UNK, "offset": OFFSET, "max_len": self.max_len, "vocabulary": self.vocab.to_dict()}

    @classmethod
    def from_dict(cls, d: dict, where: str = "sequence vocabulary") -> "SequenceVocabulary":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise DataError(f"{where}: not a cmhash sequence vocabulary (no \"format\": \"{FORMAT}\")")
        if int(d.get("version", 0)) > FORMAT_VERSION:
            raise DataError(f"{where}: sequence vocabulary version {d.get('version')} is newer than this cmhash reads ({FORMAT_VERSION}); upgrade cmhash")
        if (d.get("pad"), d.get("unk"), d.get("offset")) != (PAD, UNK, OFFSET):
            raise DataError(f"{where}: reserved ids pad/unk/offset are {d.get('pad')}/{d.get('unk')}/{d.get('offset')}, expected {PAD}/{UNK}/{OFFSET}")
        if "vocabulary" not in d:
            raise DataError(f"{where}: missing field 'vocabulary'")
        return cls(Vocabulary.from_dict(d["vocabulary"], where=f"{where}: vocabulary"), max_len=int(d.get("max_len", 32)))

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict(), indent=None)

    @classmethod
    def load(cls, path: str | Path) -> "SequenceVocabulary":
        return cls.from_dict(read_json(path), where=str(path))


def pack(embedded, lengths):
    """``pack_padded_sequence`` for batch-first embedded ids with unsorted lengths (torch tensors)."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence

    lengths = torch.as_tensor(lengths, dtype=torch.int64).clamp(min=1).cpu()
    return pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)


__all__ = ["PAD", "UNK", "OFFSET", "words", "pad_sequences", "SequenceVocabulary", "pack", "supervision_labels"]


def supervision_labels(labels: np.ndarray | None, groups: np.ndarray | None, what: str = "dataset") -> np.ndarray:
    """The multi-hot matrix a supervised method learns from: the labels, else pair identity.

    Without labels (Flickr8k), items showing the same image (same ``groups`` value: the five
    captions of one image) are the similar ones: one column per group, so "share a label" means
    "describe the same image".
    """
    if labels is not None:
        return np.asarray(labels, dtype=np.uint8)
    if groups is None:
        raise DataError(f"{what}: a supervised method needs labels or pair groups (captions of the same image); this data has neither")
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    out = np.zeros((len(inverse), int(inverse.max()) + 1 if len(inverse) else 0), dtype=np.uint8)
    out[np.arange(len(inverse)), inverse] = 1
    return out
