"""LDA topic proportions (scikit-learn), the text feature of the Wikipedia benchmark (10 topics).

Fitting builds a word vocabulary on the training texts (English stop words removed, tokens in at
least ``min_count`` texts, at most ``max_size`` most frequent), then fits
``LatentDirichletAllocation(n_topics)`` on the sparse word counts with a fixed ``random_state``.
``encode`` returns each text's topic proportions (rows sum to 1). The vocabulary and the topic-word
matrix travel inline in the spec (base64), so a raw query is encoded identically later.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from cmhash.data.text import Vocabulary
from cmhash.errors import DataError
from cmhash.features.base import TEXT_ENCODERS, decode_array, encode_array
from cmhash.features.text_bow import VocabularyEncoder, sparse_counts


class LdaEncoder(VocabularyEncoder):
    name = "lda"
    version = "1"

    def __init__(
        self,
        n_topics: int = 10,
        min_count: int = 2,
        max_size: int | None = 5000,
        kind: str = "auto",
        stop_words: bool = True,
        max_iter: int = 50,
        learning_method: str = "batch",
        seed: int = 0,
        doc_topic_prior: float | None = None,
        topic_word_prior: float | None = None,
        use_dataset_vocabulary: bool = False,
    ):
        if use_dataset_vocabulary:
            raise DataError("lda: builds its own word vocabulary; use_dataset_vocabulary is not supported")
        if int(n_topics) < 2:
            raise DataError(f"lda: n_topics must be at least 2, got {n_topics}")
        if learning_method not in ("batch", "online"):
            raise DataError(f"lda: learning_method must be batch or online, got '{learning_method}'")
        super().__init__(
            min_count=min_count, max_size=max_size, kind=kind, use_dataset_vocabulary=False,
            n_topics=int(n_topics), stop_words=bool(stop_words), max_iter=int(max_iter),
            learning_method=learning_method, seed=int(seed), doc_topic_prior=doc_topic_prior, topic_word_prior=topic_word_prior,
        )
        self.dim = int(n_topics)
        self.lda = None

    @property
    def fitted(self) -> bool:
        return self.lda is not None

    def _model(self):
        from sklearn.decomposition import LatentDirichletAllocation

        o = self.options
        return LatentDirichletAllocation(
            n_components=o["n_topics"], max_iter=o["max_iter"], learning_method=o["learning_method"], random_state=o["seed"],
            doc_topic_prior=o["doc_topic_prior"], topic_word_prior=o["topic_word_prior"],
        )

    def build_vocabulary(self, texts, text_kind, meta) -> Vocabulary:
        vocab = super().build_vocabulary(texts, text_kind, None)
        if self.options["stop_words"] and vocab.kind != "tags":
            from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

            keep = [i for i, t in enumerate(vocab.tokens) if t not in ENGLISH_STOP_WORDS and not t.isdigit()]
            if not keep:
                raise DataError("lda: every vocabulary word is a stop word; set stop_words=False")
            vocab = Vocabulary([vocab.tokens[i] for i in keep], vocab.doc_freq[keep], vocab.num_docs, vocab.kind, vocab.min_count)
        return vocab

    def fit(self, texts: Sequence[str], text_kind: str | None = None, meta: dict | None = None) -> "LdaEncoder":
        texts = list(texts)
        self.vocab = self.build_vocabulary(texts, text_kind, meta)
        counts = sparse_counts(self.vocab, texts)
        if counts.nnz == 0:
            raise DataError("lda: no training text contains a vocabulary word; lower min_count")
        self.lda = self._model().fit(counts)
        return self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self._check_fitted()
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.lda.transform(sparse_counts(self.vocab, texts)).astype(np.float32)

    def top_words(self, k: int = 10) -> list[list[str]]:
        """The ``k`` most probable words of each topic (to check that topics make sense)."""
        self._check_fitted()
        return [[self.vocab.tokens[j] for j in np.argsort(-row)[:k]] for row in self.lda.components_]

    def get_state(self) -> dict[str, Any] | None:
        if self.lda is None:
            return None
        return {
            "vocabulary": self.vocab.to_dict(),
            "components": encode_array(self.lda.components_.astype(np.float64)),
            "doc_topic_prior": float(self.lda.doc_topic_prior_),
            "topic_word_prior": float(self.lda.topic_word_prior_),
            "n_iter": int(self.lda.n_iter_),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        from sklearn.decomposition._lda import _dirichlet_expectation_2d

        super().set_state(state)
        comps = decode_array(state["components"]).astype(np.float64)
        if comps.shape != (self.options["n_topics"], len(self.vocab)):
            raise DataError(f"lda: spec state has a {comps.shape} topic matrix for {self.options['n_topics']} topics x {len(self.vocab)} words")
        lda = self._model()
        lda.components_ = comps
        lda.exp_dirichlet_component_ = np.exp(_dirichlet_expectation_2d(comps))
        lda.doc_topic_prior_ = float(state["doc_topic_prior"])
        lda.topic_word_prior_ = float(state["topic_word_prior"])
        lda.n_features_in_ = comps.shape[1]
        lda.n_iter_ = int(state.get("n_iter", 0))
        lda.n_batch_iter_ = 1
        lda.random_state_ = np.random.RandomState(self.options["seed"])
        self.lda = lda
        self.dim = int(self.options["n_topics"])


@TEXT_ENCODERS.register("lda")
def make_lda(**options: Any) -> LdaEncoder:
    """lda: topic proportions of a scikit-learn LDA fitted on the training texts (default 10 topics)."""
    return LdaEncoder(**options)
