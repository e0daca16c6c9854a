"""Model-free text features: min-count vocabulary, BoW/TF-IDF, save/reload; 1,386-d on MIRFlickr."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_subdir

from cmhash.data.text import Vocabulary, tfidf_matrix, tokenize
from cmhash.errors import DataError

TAGS = ["sky, Sea ,sun", "sky,dog", "dog, cat", "sky", "sea,sky,dog", ""]


def test_tokenize_tags_and_sentences():
    assert tokenize(" Sky , sea,,sun ", "tags") == ["sky", "sea", "sun"]
    assert tokenize("A dog's ball, near 2 cats.", "sentence") == ["a", "dog's", "ball", "near", "2", "cats"]


def test_min_count_counts_documents_not_occurrences():
    vocab = Vocabulary.build(TAGS + ["dog,dog,dog"], min_count=3)
    # sky in 4 lines, dog in 4 lines (3 + the repeated one counts once), sea in 2
    assert vocab.tokens == ["dog", "sky"]
    assert vocab.doc_freq.tolist() == [4, 4]
    assert vocab.num_docs == 7
    with pytest.raises(DataError, match="lower min_count"):
        Vocabulary.build(TAGS, min_count=50)


def test_bow_count_and_tfidf_features():
    vocab = Vocabulary.build(TAGS, min_count=2)
    assert vocab.tokens == ["dog", "sea", "sky"]
    bow = vocab.transform(["sky,sky,dog", "cat", ""], "binary")
    np.testing.assert_array_equal(bow, [[1, 0, 1], [0, 0, 0], [0, 0, 0]])
    cnt = vocab.transform(["sky,sky,dog"], "count")
    np.testing.assert_array_equal(cnt, [[1, 0, 2]])
    tf = vocab.transform(["sky,sky,dog", "sea"], "tfidf")
    np.testing.assert_allclose(np.linalg.norm(tf, axis=1), 1.0, rtol=1e-6)
    idf = np.log((1 + 6) / (1 + vocab.doc_freq)) + 1
    expect = np.array([1 * idf[0], 0, 2 * idf[2]])
    np.testing.assert_allclose(tf[0], expect / np.linalg.norm(expect), rtol=1e-6)
    with pytest.raises(DataError, match="weighting"):
        vocab.transform(["x"], "bm25")


def test_vocabulary_save_and_reload(tmp_path):
    vocab = Vocabulary.build(TAGS, min_count=2)
    path = vocab.save(tmp_path / "v.json")
    back = Vocabulary.load(path)
    assert back.tokens == vocab.tokens and back.doc_freq.tolist() == vocab.doc_freq.tolist()
    assert back.num_docs == vocab.num_docs and back.kind == "tags" and back.min_count == 2
    assert back.fingerprint() == vocab.fingerprint()
    np.testing.assert_array_equal(back.transform(TAGS, "tfidf"), vocab.transform(TAGS, "tfidf"))
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(DataError, match="bad.json: not a cmhash vocabulary"):
        Vocabulary.load(tmp_path / "bad.json")


def test_tfidf_matrix_matches_vocabulary_tfidf():
    vocab = Vocabulary.build(TAGS, min_count=1)
    counts = vocab.transform(TAGS, "count")
    np.testing.assert_allclose(tfidf_matrix(counts), vocab.transform(TAGS, "tfidf"), rtol=1e-6)
    with pytest.raises(DataError, match="non-negative"):
        tfidf_matrix(-counts - 1)


def test_mirflickr_tag_vocabulary_has_1386_dimensions():
    root = shared_subdir("mirflickr25k")
    lines = (root / "all_tags.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 20015
    vocab = Vocabulary.build(lines, min_count=15, kind="tags")
    assert len(vocab) == 1386
    assert vocab.doc_freq.min() >= 15
    # This copy's tag lines hold only the 1,386 vocabulary tags (the rarest is in 17 lines), so
    # any min_count up to 17 gives 1,386; a higher threshold must cut the vocabulary.
    assert len(Vocabulary.build(lines, min_count=1, kind="tags")) == 1386
    assert len(Vocabulary.build(lines, min_count=20, kind="tags")) < 1386
