"""Text as token sequences (word ids), for methods that read words in order (DVSH's LSTM).

The one representation, shared by the data layer, the batch sources and the networks:

* ``ids``: int64 array (n, max_len), each row the token ids of one text from the left, padded on
  the right with :data:`PAD` (= 0); real tokens are 1..vocab_size-1 (id 1 is :data:`UNK`, the
  out-of-vocabulary word);
* ``lengths``: int64 array (n,), the number of real tokens of each row (0 for an empty text;
  ``ids[i, lengths[i]:]`` is all PAD);
* ``vocab_size``: number of ids including PAD and UNK (the size of an embedding table).

A :class:`TokenSequences` lives on ``PairedDataset.text_tokens``; a training batch carries the
rows of the batch as a :class:`~cmhash.training.batch.TokenBatch` (torch tensors, padded to the
longest text of the batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from cmhash.errors import DataError

PAD = 0
UNK = 1


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
        """From lists of ids (each truncated to ``max_len`` when given)."""
        rows = [list(s)[:max_len] if max_len else list(s) for s in seqs]
        width = max_len or max((len(r) for r in rows), default=0)
        ids = np.full((len(rows), max(width, 1)), PAD, dtype=np.int64)
        lengths = np.zeros(len(rows), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            lengths[i] = len(r)
        return cls(ids, lengths, vocab_size)

    @classmethod
    def from_texts(cls, texts: Sequence[str], vocabulary: Sequence[str], max_len: int = 64, lower: bool = True) -> "TokenSequences":
        """Whitespace/comma tokenised texts -> ids; ``vocabulary[k]`` gets id ``k + 2`` (0 = PAD, 1 = UNK)."""
        import re

        index = {w: k + 2 for k, w in enumerate(vocabulary)}
        split = re.compile(r"[\s,]+")
        seqs = [[index.get(w, UNK) for w in split.split(t.lower() if lower else t) if w] for t in texts]
        return cls.from_lists(seqs, vocab_size=len(vocabulary) + 2, max_len=max_len)


__all__ = ["PAD", "UNK", "TokenSequences"]
