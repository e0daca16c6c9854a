"""On the real data in ../shared/data: EfficientNet-Lite0 features predict MIRFlickr's 24 labels; BoW is the standard vector."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_subdir

from cmhash.data import load_dataset
from cmhash.features import encoder_from_spec, extract_features

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def mirflickr():
    return load_dataset("mirflickr", shared_subdir("mirflickr25k"))


@pytest.mark.slow
def test_mirflickr_image_features_predict_the_labels_far_above_chance(mirflickr, tmp_path, monkeypatch):
    """Linear probe (logistic regression per label) on EfficientNet-Lite0 features of 480 pairs."""
    pytest.importorskip("efficientnet_lite_pytorch")
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score

    monkeypatch.setenv("CMHASH_CACHE", str(tmp_path / "models"))
    sub = mirflickr.subset(np.arange(480))
    cache = extract_features(sub, "efficientnet-lite0", "bow", tmp_path / "cache", batch_size=32, progress=False)
    ds = cache.apply(sub)
    assert ds.image_features.shape == (480, 1280) and ds.text_features.shape == (480, 1386)
    x, y = ds.image_features, ds.labels
    train, test = np.arange(336), np.arange(336, 480)
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
    xs = (x - mu) / sd
    aps, chance = [], []
    for j in range(y.shape[1]):
        if len(np.unique(y[train, j])) < 2 or y[test, j].sum() == 0:
            continue
        clf = LogisticRegression(C=0.01, max_iter=500).fit(xs[train], y[train, j])
        aps.append(average_precision_score(y[test, j], clf.decision_function(xs[test])))
        chance.append(y[test, j].mean())  # AP of a random ranking = label frequency
    m_ap, m_chance = float(np.mean(aps)), float(np.mean(chance))
    print(f"linear probe, {len(aps)} labels: mAP {m_ap:.3f} vs chance {m_chance:.3f}")
    assert len(aps) >= 20
    assert m_ap > 3 * m_chance and m_ap > m_chance + 0.35


def test_mirflickr_bow_spec_reproduces_the_standard_1386_vector_from_raw_tags(mirflickr, tmp_path):
    cache = extract_features(mirflickr, None, "bow", tmp_path / "cache", progress=False)
    assert cache.text_features.shape == (len(mirflickr), 1386)
    np.testing.assert_array_equal(cache.text_features, mirflickr.text_features)
    enc = encoder_from_spec(cache.encoder_spec("text"))
    np.testing.assert_array_equal(enc.encode(mirflickr.texts[:500]), mirflickr.text_features[:500])
