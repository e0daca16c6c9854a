"""The synthetic source: shape, realism, determinism, and a signal knob that really works."""

from __future__ import annotations

import numpy as np
import pytest

from cmhash.data import SOURCES, load_dataset
from cmhash.data.sources import synthetic
from cmhash.data.splits import make_split, random_split
from cmhash.data.text import Vocabulary
from cmhash.errors import DataError
from cmhash.metrics import mean_average_precision


@pytest.fixture(scope="module")
def ds():
    return load_dataset("synthetic", n=3000, seed=0)


def test_registered_and_root_ignored():
    assert "synthetic" in SOURCES
    a = load_dataset("synthetic", "/no/such/folder", n=300)
    b = SOURCES.get("synthetic")(None, strict=True, n=300)
    np.testing.assert_array_equal(a.image_features, b.image_features)


def test_shape_like_mirflickr(ds):
    assert len(ds) == 3000 and ds.name == "synthetic"
    assert ds.image_features.shape == (3000, 512) and ds.image_features.dtype == np.float32
    assert ds.text_features.shape == (3000, 1000)
    assert ds.labels.shape == (3000, 24) and ds.labels.dtype == np.uint8
    assert len(ds.label_names) == 24 and ds.text_kind == "tags"
    assert len(set(ds.ids)) == len(ds)
    per_pair = ds.labels.sum(axis=1)
    assert per_pair.min() == 1 and per_pair.max() == 5
    freq = ds.labels.mean(axis=0)
    assert freq.min() > 0 and freq.max() > 0.3 and freq.max() / freq.min() > 8  # skewed like MIRFlickr


def test_labels_co_occur(ds):
    L = ds.labels.astype(float)
    f = L.mean(axis=0)
    lift = (L.T @ L / len(L)) / np.outer(f, f)
    np.fill_diagonal(lift, 1.0)
    assert lift.max() > 3  # some classes go together...
    assert lift.min() < 0.3  # ...and some rarely do


def test_image_features_cnn_like(ds):
    x = ds.image_features
    assert x.min() >= 0  # post-ReLU
    zeros = (x == 0).mean()
    assert 0.3 < zeros < 0.8  # sparse-ish
    assert np.isfinite(x).all()


def test_texts_and_bag_of_words_agree(ds):
    assert all(isinstance(t, str) and t for t in ds.texts)
    assert ds.texts[0].startswith("tag_") and ", " in ",".join(ds.texts[:20])
    assert set(np.unique(ds.text_features)) <= {0.0, 1.0}
    # the BoW is exactly what the tag pipeline builds from the raw strings
    vocab = Vocabulary(ds.meta["vocabulary"]["tokens"], ds.meta["vocabulary"]["doc_freq"], len(ds))
    np.testing.assert_array_equal(vocab.transform(ds.texts), ds.text_features)
    rebuilt = Vocabulary.build(ds.texts, min_count=1)  # alphabetical order == column order (zero padding)
    used = ds.text_features.sum(axis=0) > 0
    np.testing.assert_array_equal(rebuilt.transform(ds.texts), ds.text_features[:, used])
    tags_per_pair = ds.text_features.sum(axis=1)
    assert tags_per_pair.min() >= 1 and 3 < tags_per_pair.mean() < 9


def test_meta_says_synthetic_and_records_parameters(ds):
    assert ds.meta["synthetic"] is True and ds.meta["source"] == "synthetic"
    assert "SYNTHETIC" in ds.meta["description"]
    params = ds.meta["params"]
    for key in synthetic.DEFAULTS:
        assert key in params
    assert params["n"] == 3000 and params["seed"] == 0 and params["signal"] == synthetic.DEFAULTS["signal"]
    assert any("SYNTHETIC" in note for note in ds.report.notes)


def test_deterministic_for_a_seed():
    a = load_dataset("synthetic", n=500, seed=7)
    b = load_dataset("synthetic", n=500, seed=7)
    c = load_dataset("synthetic", n=500, seed=8)
    np.testing.assert_array_equal(a.image_features, b.image_features)
    np.testing.assert_array_equal(a.text_features, b.text_features)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.texts == b.texts and list(a.ids) == list(b.ids)
    assert not np.array_equal(a.labels, c.labels)
    assert not np.array_equal(a.image_features, c.image_features)


def test_values_do_not_depend_on_the_generation_block(monkeypatch):
    whole = load_dataset("synthetic", n=300, image_dim=64, seed=4)
    monkeypatch.setattr(synthetic, "IMAGE_BLOCK_VALUES", 7 * 64)
    blocked = load_dataset("synthetic", n=300, image_dim=64, seed=4)
    np.testing.assert_array_equal(whole.image_features, blocked.image_features)


def test_signal_changes_features_not_labels():
    weak = load_dataset("synthetic", n=800, seed=1, signal=0.0)
    strong = load_dataset("synthetic", n=800, seed=1, signal=1.0)
    np.testing.assert_array_equal(weak.labels, strong.labels)  # same labels -> same splits
    assert make_split(weak, "djsrh", seed=0, num_query=200, num_train=400).to_dict()["query"] == make_split(
        strong, "djsrh", seed=0, num_query=200, num_train=400
    ).to_dict()["query"]
    assert not np.array_equal(weak.image_features, strong.image_features)
    assert not np.array_equal(weak.text_features, strong.text_features)


def _pair_regression_map(ds, bits=32):
    """A simple cross-modal baseline: image codes = sign(PCA), text codes = ridge text -> PCA scores."""
    query, db, train = random_split(len(ds), seed=0, num_query=400, num_train=1200)
    x, t = ds.image_features.astype(np.float64), ds.text_features.astype(np.float64)
    mx, mt = x[train].mean(0), t[train].mean(0)
    _, _, vt = np.linalg.svd(x[train] - mx, full_matrices=False)
    proj = vt[:bits].T
    target = (x[train] - mx) @ proj
    tc = t[train] - mt
    w = np.linalg.solve(tc.T @ tc + 1.0 * np.eye(tc.shape[1]), tc.T @ target)
    img = lambda idx: np.where((x[idx] - mx) @ proj >= 0, 1, -1)  # noqa: E731
    txt = lambda idx: np.where((t[idx] - mt) @ w >= 0, 1, -1)  # noqa: E731
    lq, ld = ds.labels[query], ds.labels[db]
    i2t = mean_average_precision(img(query), txt(db), lq, ld, topk=50)
    t2i = mean_average_precision(txt(query), img(db), lq, ld, topk=50)
    rng = np.random.default_rng(0)
    chance = mean_average_precision(rng.choice([-1, 1], (len(query), bits)), rng.choice([-1, 1], (len(db), bits)), lq, ld, topk=50)
    return i2t, t2i, chance


def test_map_rises_with_signal():
    results = {s: _pair_regression_map(load_dataset("synthetic", n=2000, image_dim=128, vocab_size=300, signal=s, seed=2)) for s in (0.0, 0.6, 1.0)}
    i2t0, t2i0, chance = results[0.0]
    assert abs(i2t0 - chance) < 0.03 and abs(t2i0 - chance) < 0.03  # no signal: chance level
    for direction in (0, 1):
        assert results[0.0][direction] < results[0.6][direction] < results[1.0][direction]
    assert min(results[1.0][:2]) > chance + 0.15


@pytest.mark.parametrize(
    "options, message",
    [
        ({"signal": 1.5}, "signal"),
        ({"n": 1}, "n="),
        ({"num_labels": 0}, "num_labels"),
        ({"vocab_size": 5}, "vocab_size"),
        ({"colour": "red"}, "unknown option"),
        ({"noisy_pairs": -0.1}, "noisy_pairs"),
        ({"n": 10.5}, "integer"),
        ({"signal": "strong"}, "number"),
    ],
)
def test_bad_options_raise_clear_errors(options, message):
    with pytest.raises(DataError, match=message):
        load_dataset("synthetic", **options)


def test_numbers_given_as_strings_are_accepted():
    a = load_dataset("synthetic", n="300", signal="0.7", seed="2")
    b = load_dataset("synthetic", n=300, signal=0.7, seed=2)
    np.testing.assert_array_equal(a.image_features, b.image_features)
    assert a.meta["params"]["n"] == 300 and a.meta["params"]["signal"] == 0.7


def test_small_label_counts_and_sizes_work():
    ds = load_dataset("synthetic", n=50, num_labels=3, image_dim=8, vocab_size=30, seed=0)
    assert ds.labels.shape == (50, 3) and ds.labels.sum(axis=1).max() <= 3 and ds.labels.sum(axis=1).min() >= 1
    assert ds.image_features.shape == (50, 8) and ds.text_features.shape == (50, 30)
