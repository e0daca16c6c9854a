"""What a trained model can read in a raw text query, and a refusal that says so.

A tag/word model (bag of words over a vocabulary) sees only the tokens of its vocabulary: a query
with none of them becomes an all-zero vector, whose code is the same for every such query, so
its "results" are a fixed ranking that means nothing. Such a query is refused with
:class:`UnreadableQueryError`, naming the vocabulary size, close tags, and how to get a sentence
model. Sentence models (MiniLM, GloVe, ...) read any text with at least one word.

Tag queries are split on commas *and* whitespace ("dog beach" = "dog, beach"); a comma-separated
piece that is itself a known multi-word token is kept whole.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from cmhash.errors import DataError

VOCAB_ENCODERS = ("bow", "count", "tfidf")
SENTENCE_RECIPE = "docs/search.md#sentence-queries-on-mirflickr"
_HAS_WORD = re.compile(r"\w", re.UNICODE)


class UnreadableQueryError(DataError):
    """A text query carries nothing the model can read (no known tag/word, or no word at all)."""

    def __init__(self, message: str, *, reads: str = "", suggestions: list[str] | None = None):
        super().__init__(message)
        self.reads = reads
        self.suggestions = list(suggestions or [])


def query_tokens(text: str, vocab) -> list[str]:
    """Tokens of ``text`` as ``vocab`` reads them: tags split on commas and whitespace, words as words."""
    from cmhash.data.text import tokenize

    if vocab.kind != "tags":
        return tokenize(text, vocab.kind)
    out: list[str] = []
    for piece in str(text).split(","):
        piece = " ".join(piece.strip().lower().split())
        if not piece:
            continue
        if piece in vocab.index:
            out.append(piece)
        else:
            out.extend(piece.split())
    return out


def text_vocabulary(features: dict[str, Any]):
    """The Vocabulary a checkpoint's text features were made with, or None for sentence encoders."""
    from cmhash.data.text import Vocabulary

    spec = (features.get("encoders") or {}).get("text")
    if spec is not None:
        if spec.get("name") not in VOCAB_ENCODERS:
            return None
        state = spec.get("state") or {}
        if isinstance(state.get("vocabulary"), dict):
            return Vocabulary.from_dict(state["vocabulary"], where="text encoder spec: vocabulary")
        return None
    if features.get("vocabulary"):
        return Vocabulary.from_dict(features["vocabulary"], where="checkpoint: vocabulary")
    return None


def _close_tokens(unknown: list[str], vocab, n: int = 6) -> list[str]:
    close: list[str] = []
    for tok in unknown:
        for c in difflib.get_close_matches(tok, vocab.tokens, n=3, cutoff=0.7):
            if c not in close:
                close.append(c)
    if len(close) < n:  # pad with the most common tokens so the user sees what the model knows
        order = sorted(range(len(vocab)), key=lambda j: (-int(vocab.doc_freq[j]), vocab.tokens[j]))
        close += [vocab.tokens[j] for j in order if vocab.tokens[j] not in close][: n - len(close)]
    return close[:n]


def normalise_text_query(text: str, features: dict[str, Any], vocab=None) -> str:
    """The query as the model's text encoder should see it, or :class:`UnreadableQueryError`.

    ``vocab``: the model's vocabulary (from :func:`text_vocabulary`; None = sentence encoder).
    """
    if text is None or not str(text).strip():
        raise UnreadableQueryError("the text query is empty; type some words", reads="text")
    text = str(text)
    if vocab is None:
        if not _HAS_WORD.search(text):
            raise UnreadableQueryError(f'"{text}" has no word in it; type some words', reads="sentences")
        return text
    tokens = query_tokens(text, vocab)
    known = [t for t in tokens if t in vocab.index]
    if known:
        return ", ".join(known)
    what = "tags" if vocab.kind == "tags" else "words"
    close = _close_tokens(tokens, vocab)
    raise UnreadableQueryError(
        f'this model reads only {what} from its vocabulary of {len(vocab):,} {what}, and no word of "{text}" is one of them '
        f"(try: {', '.join(close)}). For free sentences, train the model on sentence features "
        f"(MiniLM); see {SENTENCE_RECIPE}",
        reads=f"{len(vocab)} {what}",
        suggestions=close,
    )


__all__ = ["UnreadableQueryError", "normalise_text_query", "query_tokens", "text_vocabulary", "SENTENCE_RECIPE"]
