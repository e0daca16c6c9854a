"""Split protocols: sizes, disjointness, determinism, save/load round trip, dataset check."""

from __future__ import annotations

import numpy as np
import pytest

from cmhash.data.dataset import PairedDataset
from cmhash.data.splits import Split, djsrh_split, make_split, random_split, validation_split
from cmhash.errors import DataError


def make_ds(n=3000, c=6, seed=0, name="toy"):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, c)) < 0.25).astype(np.uint8)
    labels[labels.sum(1) == 0, 0] = 1
    return PairedDataset(name=name, ids=[f"p{i}" for i in range(n)], image_features=rng.random((n, 4)), text_features=rng.random((n, 3)), labels=labels)


def test_djsrh_split_sizes_and_disjointness():
    ds = make_ds()
    q, d, t = djsrh_split(ds.labels, seed=1, num_query=500, num_train=1000)
    assert len(q) == 500 and len(t) == 1000 and len(d) == len(ds) - 500
    assert not set(q) & set(d)
    assert set(t) <= set(d)  # training pairs come from the database, as in DJSRH
    assert len(np.unique(t)) == len(t)


def test_djsrh_split_follows_the_greedy_per_label_rule():
    # 2 labels, plenty of positives: label 0 gives 160/400, label 1 gives 80/200 from unused pairs
    n = 5000
    labels = np.zeros((n, 2), np.uint8)
    labels[:2500, 0] = 1
    labels[2000:, 1] = 1
    q, d, t = djsrh_split(labels, seed=0, num_query=240, num_train=600)
    assert len(q) == 240 and len(t) == 600
    assert labels[q[:160], 0].all() and labels[q[160:], 1].all()
    assert labels[t[:400], 0].all() and labels[t[400:], 1].all()


def test_djsrh_split_tops_up_when_labels_are_rare():
    labels = np.zeros((1000, 3), np.uint8)
    labels[:, 0] = 1
    labels[:20, 1] = 1  # rare label: cannot give 80 queries
    q, d, t = djsrh_split(labels, seed=3, first_query=10, first_train=10, per_label_query=80, per_label_train=200, num_query=300, num_train=400)
    assert len(q) == 300 and len(t) == 400 and not set(q) & set(t)


def test_seeded_split_is_repeatable_and_seed_dependent():
    ds = make_ds()
    a = make_split(ds, "djsrh", seed=5, num_query=300, num_train=800)
    b = make_split(ds, "djsrh", seed=5, num_query=300, num_train=800)
    c = make_split(ds, "djsrh", seed=6, num_query=300, num_train=800)
    assert np.array_equal(a.query, b.query) and np.array_equal(a.train, b.train)
    assert not np.array_equal(a.query, c.query)


def test_split_round_trip_and_dataset_check(tmp_path):
    ds = make_ds()
    s = make_split(ds, "random", seed=2, num_query=100, num_train=200)
    path = s.save(tmp_path / "split.json")
    back = Split.load(path, dataset=ds)
    assert back.protocol == "random" and back.seed == 2 and back.params["num_query"] == 100
    assert np.array_equal(back.query, s.query) and np.array_equal(back.database, s.database)
    other = make_ds(seed=1, name="other", n=2999)
    with pytest.raises(DataError, match="different dataset"):
        Split.load(path, dataset=other)


def test_unknown_protocol_or_parameter_is_a_clear_error():
    ds = make_ds()
    with pytest.raises(DataError, match="unknown split protocol"):
        make_split(ds, "nope")
    with pytest.raises(DataError, match="no parameter"):
        make_split(ds, "djsrh", num_queries=3)


def test_random_split_keeps_groups_together():
    groups = np.repeat(np.arange(100), 5)
    q, d, t = random_split(len(groups), seed=0, num_query=20, num_train=50, groups=groups)
    assert len(np.unique(groups[q])) == 20 and len(q) == 100
    assert not set(groups[q]) & set(groups[d])


def test_validation_is_carved_from_the_database_only():
    ds = make_ds()
    s = make_split(ds, "djsrh", seed=0, num_query=300, num_train=800)
    vq, vd = validation_split(s, num_val=200, seed=0)
    assert len(vq) == 200 and not set(vq) & set(s.query) and not set(vq) & set(vd)
    assert set(vq) | set(vd) == set(s.database)


def test_nuswide_sized_split_is_fast():
    # not a timing assertion: it must simply finish (the legacy Python loop took minutes)
    rng = np.random.default_rng(0)
    labels = (rng.random((186577, 10)) < 0.15).astype(np.uint8)
    q, d, t = djsrh_split(labels, seed=0, first_query=200, first_train=500, per_label_query=200, per_label_train=500)
    assert (len(q), len(d), len(t)) == (2000, 184577, 5000)
