"""The text layer for methods that read words in order (DVSH's LSTMs, :class:`~cmhash.nets.text.TokenHashNet`).

Every text becomes word ids here and nowhere else:

* tokenisation: :func:`words`, i.e. :func:`cmhash.data.text.tokenize` with kind ``sentence``
  (lower-cased words of letters/digits). Tag texts (MIRFlickr) are read as a word sequence in the
  listed order: the commas between tags are not word characters, so ``"new york, beach"`` ->
  ``new york beach``.
* ids: ``0`` = :data:`PAD` (padding), ``1`` = :data:`UNK` (a word not in the vocabulary), word
  ``j`` of a vocabulary = ``OFFSET + j`` (:data:`OFFSET` = 2).
* vocabulary: :class:`SequenceVocabulary` wraps a :class:`~cmhash.data.text.Vocabulary` (words in
  at least ``min_count`` training texts, at most ``max_size`` most frequent, sorted); saved as JSON
  (``save``/``load``/``to_dict``) and carried inside checkpoints, so a raw query sentence is
  encoded later exactly as in training.
* padding: :func:`pad_sequences` returns right-padded ``(n, max_len)`` int64 ids and the true
  lengths. :meth:`SequenceVocabulary.encode` gives every text at least one id: a text with no
  known word (empty, or only words never seen in training, as free queries often are) becomes
  ``[UNK]`` of length 1, so a query never breaks the model and never yields an empty sequence
  (which ``pack_padded_sequence`` rejects). :meth:`TokenSequences.from_lists` keeps empty rows
  (length 0) for callers that build ids themselves.
* packing: :func:`pack` wraps ``torch.nn.utils.rnn.pack_padded_sequence`` (unsorted lengths).
* the dataset/batch representation: :class:`TokenSequences` on ``PairedDataset.text_tokens``:
  ``ids`` int64 (n, max_len) right-padded with PAD, ``lengths`` int64 (n,) (0 allowed;
  ``ids[i, lengths[i]:]`` is all PAD), ``vocab_size`` (ids including PAD and UNK: the size of an
  embedding table). A training batch carries its rows as a
  :class:`~cmhash.training.batch.TokenBatch` (torch tensors, padded to the longest text of the batch).
* GloVe: :func:`cmhash.features.text_glove.glove_table` gives an embedding table for a
  vocabulary initialised from GloVe 6B 50-d (the features layer owns the GloVe files).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from cmhash.data.text import Vocabulary, tokenize
from cmhash.errors import DataError
from cmhash.io import read_json, write_json

PAD, UNK, OFFSET = 0, 1, 2
FORMAT = "cmhash-sequence-vocabulary"
FORMAT_VERSION = 1


# ----------------------------------------------------------------------------- tokenisation + padding
def words(text: str | None) -> list[str]:
    """The word sequence of one raw text (sentence or comma-separated tags)."""
    return tokenize(text or "", "sentence")


def pad_sequences(seqs: Sequence[Iterable[int]], max_len: int | None, *, empty_as_unk: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Id lists -> (ids (n, width) int64 right-padded with PAD, lengths (n,) int64).

    Longer lists are cut to ``max_len`` (``width = max_len``; ``None``: the longest list, at
    least 1). ``empty_as_unk``: an empty list becomes ``[UNK]`` (length 1); otherwise it stays
    empty (length 0, all PAD).
    """
    if max_len is not None and int(max_len) < 1:
        raise DataError(f"max_len must be at least 1, got {max_len}")
    rows = [list(s) if max_len is None else list(s)[: int(max_len)] for s in seqs]
    if empty_as_unk:
        rows = [r or [UNK] for r in rows]
    width = int(max_len) if max_len is not None else max(1, max((len(r) for r in rows), default=0))
    ids = np.full((len(rows), width), PAD, dtype=np.int64)
    lengths = np.zeros(len(rows), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        lengths[i] = len(r)
    return ids, lengths


def pack(embedded, lengths):
    """``pack_padded_sequence`` for batch-first embedded ids with unsorted lengths (torch tensors)."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence

    lengths = torch.as_tensor(lengths, dtype=torch.int64).clamp(min=1).cpu()
    return pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)


# ----------------------------------------------------------------------------- vocabulary
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

    @classmethod
    def from_words(cls, vocabulary: Sequence[str], max_len: int = 32) -> "SequenceVocabulary":
        """A given word list, in its order: ``vocabulary[j]`` gets id ``OFFSET + j``."""
        tokens = [str(w) for w in vocabulary]
        return cls(Vocabulary(tokens, [0] * len(tokens), 0, kind="sentence"), max_len=max_len)

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


# ----------------------------------------------------------------------------- dataset representation
@dataclass
class TokenSequences:
    """Padded token ids (n, max_len) + lengths (n,) + vocabulary size; see the module docstring."""

    ids: np.ndarray
    lengths: np.ndarray
    vocab_size: int

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=np.int64)
        self.lengths = np.asarray(self.lengths, dtype=np.int64)
        self.vocab_size = int(self.vocab_size)
        if self.ids.ndim != 2:
            raise DataError(f"token ids must be 2-D (texts x max_len), got shape {self.ids.shape}")
        if self.lengths.shape != (self.ids.shape[0],):
            raise DataError(f"token lengths have shape {self.lengths.shape}; expected ({self.ids.shape[0]},)")
        if self.lengths.size and (self.lengths.min() < 0 or self.lengths.max() > self.ids.shape[1]):
            row = int(np.argmax((self.lengths < 0) | (self.lengths > self.ids.shape[1])))
            raise DataError(f"token lengths: row {row} has length {self.lengths[row]} outside 0..{self.ids.shape[1]}")
        if self.ids.size and (self.ids.min() < 0 or self.ids.max() >= self.vocab_size):
            row = int(np.argwhere((self.ids < 0) | (self.ids >= self.vocab_size))[0][0])
            raise DataError(f"token ids: row {row} has an id outside 0..{self.vocab_size - 1}")
        pad_mask = np.arange(self.ids.shape[1])[None, :] >= self.lengths[:, None]
        if np.any(self.ids[pad_mask] != PAD):
            row = int(np.argwhere(pad_mask & (self.ids != PAD))[0][0])
            raise DataError(f"token ids: row {row} has non-PAD ids after its length {self.lengths[row]}")

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def max_len(self) -> int:
        return int(self.ids.shape[1])

    def subset(self, indices) -> "TokenSequences":
        idx = np.asarray(indices, dtype=np.int64)
        return TokenSequences(self.ids[idx], self.lengths[idx], self.vocab_size)

    @classmethod
    def from_lists(cls, seqs: Sequence[Iterable[int]], vocab_size: int, max_len: int | None = None) -> "TokenSequences":
        """From lists of ids (each cut to ``max_len`` when given; width: ``max_len`` or the longest); empty lists stay empty."""
        ids, lengths = pad_sequences(seqs, max_len, empty_as_unk=False)
        return cls(ids, lengths, vocab_size)

    @classmethod
    def from_texts(cls, texts: Sequence[str], vocabulary: "SequenceVocabulary | Sequence[str]", max_len: int | None = None) -> "TokenSequences":
        """Raw texts -> ids through :meth:`SequenceVocabulary.encode` (the one tokeniser, id rule and padding).

        ``vocabulary``: a :class:`SequenceVocabulary`, or a word list (``vocabulary[j]`` -> id
        ``OFFSET + j``); ``max_len`` defaults to the vocabulary's (64 for a word list).
        """
        if not isinstance(vocabulary, SequenceVocabulary):
            vocabulary = SequenceVocabulary.from_words(vocabulary, max_len=64 if max_len is None else max_len)
        ids, lengths = vocabulary.encode(list(texts), max_len)
        return cls(ids, lengths, vocabulary.size)


__all__ = ["FORMAT", "OFFSET", "PAD", "UNK", "SequenceVocabulary", "TokenSequences", "pack", "pad_sequences", "words"]
