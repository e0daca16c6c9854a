"""CMFH: closed-form updates, objective descent, codes, state round trip, errors, presets."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cmhash.data import load_dataset
from cmhash.errors import CmhashError, DataError
from cmhash.methods import METHODS, create_method
from cmhash.methods import cmfh as cmfh_module
from cmhash.methods.cmfh import CMFH
from cmhash.presets import available, load_preset
from retrieval_fixtures import chance_map, cross_maps, synthetic_split


@pytest.fixture(scope="module")
def synth():
    """A small synthetic set with a strong signal, split into train / query / database."""
    return synthetic_split(n=1500, image_dim=64, vocab_size=200, seed=3, num_query=300, num_train=1000)


@pytest.fixture(scope="module")
def fitted(synth):
    train, _, _ = synth
    return CMFH(16, seed=0, iterations=15).fit(train, threads=1)


def direct_objective(model: CMFH, train) -> float:
    """J written out from its definition with dense residuals (independent of the implementation)."""
    h = model.hparams
    a = dict(zip(("image", "text"), h["alpha"]))
    V = model.latent
    total = h["gamma"] * sum(a.values()) * np.sum(V**2)
    for m in ("image", "text"):
        X = getattr(train, f"{m}_features").astype(np.float64)
        X = X - X.mean(axis=0)
        U, P = model.bases[m], model.projections[m]
        total += a[m] * (
            np.sum((X - V @ U) ** 2) + h["mu"] * np.sum((V - X @ P) ** 2) + h["gamma"] * np.sum(U**2) + h["gamma"] * np.sum(P**2)
        )
    return float(total)


def test_registered_and_created_from_every_preset():
    assert "cmfh" in METHODS
    assert set(available("cmfh")) >= {"mirflickr", "wiki", "nuswide", "synthetic"}
    for section in available("cmfh"):
        preset = load_preset("cmfh", section)
        assert preset.source
        model = create_method("cmfh", 32, **preset.hparams)
        assert model.hparams["gamma"] == 0.01 and model.hparams["mu"] == 100.0 and model.hparams["alpha"] == [0.5, 0.5]
        assert model.hparams["iterations"] == 30


def test_beats_random_codes_clearly(synth, fitted):
    _, query, db = synth
    i2t, t2i = cross_maps(fitted, query, db)
    chance = chance_map(query, db)
    assert i2t > chance + 0.15, (i2t, chance)
    assert t2i > chance + 0.15, (t2i, chance)


def test_codes_are_pm1_int8_and_deterministic(synth, fitted):
    train, query, _ = synth
    codes = fitted.encode(query, "image")
    assert codes.dtype == np.int8 and codes.shape == (len(query), 16)
    assert set(np.unique(codes)) <= {-1, 1}
    again = CMFH(16, seed=0, iterations=15).fit(train)
    np.testing.assert_array_equal(again.encode(query, "text"), fitted.encode(query, "text"))
    other = CMFH(16, seed=1, iterations=15).fit(train)
    assert not np.array_equal(other.projections["image"], fitted.projections["image"])
    # arrays work as well as datasets
    np.testing.assert_array_equal(fitted.encode(query.image_features, "image"), codes)


def test_state_round_trip_gives_identical_codes(synth, fitted):
    _, query, db = synth
    state = fitted.state()
    # through plain arrays, as a checkpoint file would store them
    stored = {k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in state.items()}
    clone = CMFH.from_state(stored)
    assert clone.bits == 16 and clone.hparams == fitted.hparams
    for m in ("image", "text"):
        np.testing.assert_array_equal(clone.encode(db, m), fitted.encode(db, m))
        np.testing.assert_array_equal(clone.encode(query, m), fitted.encode(query, m))
    with pytest.raises(CmhashError, match="lacks"):
        CMFH.from_state({k: v for k, v in state.items() if k != "P_text"})
    with pytest.raises(CmhashError, match="belongs to method"):
        CMFH.from_state({**state, "method": "djsrh"})


@pytest.mark.parametrize("order", ["PUV", "UVP"])
def test_objective_never_rises_and_matches_definition(synth, order):
    train, _, _ = synth
    model = CMFH(8, seed=2, iterations=12, order=order).fit(train)
    h = np.asarray(model.history)
    assert len(h) == 12
    assert np.all(np.diff(h) <= 1e-9 * h[0]), h
    assert h[-1] < h[0]
    assert direct_objective(model, train) == pytest.approx(h[-1], rel=1e-7)


@pytest.mark.parametrize("order, block", [("PUV", "V"), ("UVP", "P")])
def test_last_update_is_an_exact_block_minimiser(synth, order, block):
    """The block updated last is the minimiser of J given the others: any perturbation raises J."""
    train, _, _ = synth
    model = CMFH(8, seed=4, iterations=3, order=order).fit(train)
    base = direct_objective(model, train)
    rng = np.random.default_rng(0)
    for _ in range(3):
        for eps in (1e-3, -1e-3):
            if block == "V":
                saved = model.latent
                model.latent = saved + eps * rng.standard_normal(saved.shape) * np.abs(saved).mean()
                moved = direct_objective(model, train)
                model.latent = saved
            else:
                saved = model.projections["text"]
                model.projections["text"] = saved + eps * rng.standard_normal(saved.shape) * np.abs(saved).mean()
                moved = direct_objective(model, train)
                model.projections["text"] = saved
            assert moved > base


def test_bmc_compat_p_is_correct_p_over_mu_squared(synth):
    train, _, _ = synth
    correct = CMFH(8, seed=5, iterations=1, order="UVP").fit(train)
    bmc = CMFH(8, seed=5, iterations=1, bmc_compat=True).fit(train)
    assert bmc.hparams["order"] == "UVP"
    for m in ("image", "text"):
        np.testing.assert_allclose(bmc.projections[m], correct.projections[m] / 100.0**2, rtol=1e-9)


def test_block_path_equals_cached_path(synth, monkeypatch):
    """Large inputs are centred block by block; the result must not depend on it."""
    train, query, _ = synth
    cached = CMFH(8, seed=0, iterations=5).fit(train)
    monkeypatch.setattr(cmfh_module, "CACHE_BYTES", 0)
    monkeypatch.setattr(cmfh_module, "BLOCK_BYTES", 8 * 64 * 37)  # 37-row blocks of the 64-d image side
    blocked = CMFH(8, seed=0, iterations=5).fit(train)
    for m in ("image", "text"):
        np.testing.assert_allclose(blocked.projections[m], cached.projections[m], rtol=1e-6, atol=1e-10)
        np.testing.assert_array_equal(blocked.encode(query, m), cached.encode(query, m))


def test_tol_stops_early(synth):
    train, _, _ = synth
    model = CMFH(8, seed=0, iterations=200, tol=1e-3).fit(train)
    assert 1 < model.iterations_run < 200


def test_progress_callback(synth):
    train, _, _ = synth
    calls = []
    CMFH(8, iterations=4).fit(train, progress=lambda i, n, j: calls.append((i, n, j)))
    assert [c[:2] for c in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_errors_are_clear(synth, fitted):
    train, query, _ = synth
    with pytest.raises(CmhashError, match="not fitted"):
        CMFH(8).encode(query, "image")
    with pytest.raises(DataError, match="trained on 64"):
        fitted.encode(np.zeros((3, 10), np.float32), "image")
    with pytest.raises(CmhashError, match="modality"):
        fitted.encode(query, "audio")
    with pytest.raises(CmhashError, match="unknown hyper-parameter"):
        CMFH(8, lr=0.1)
    with pytest.raises(CmhashError, match="order"):
        CMFH(8, order="VUP")
    with pytest.raises(CmhashError, match="unknown option"):
        CMFH(8).fit(train, epochs=3)
    no_text = train.with_features()
    no_text.text_features = None
    no_text.texts = ["x"] * len(no_text)
    with pytest.raises(DataError, match="no text features"):
        CMFH(8).fit(no_text)
    bad = train.image_features.copy()
    bad[7, 3] = np.nan  # a PairedDataset refuses NaN itself; any object with feature arrays is accepted
    with pytest.raises(DataError, match="row 7"):
        CMFH(8).fit(SimpleNamespace(image_features=bad, text_features=train.text_features))
    with pytest.raises(DataError, match="pairs"):
        CMFH(8).fit(SimpleNamespace(image_features=train.image_features, text_features=train.text_features[:10]))


@pytest.mark.shared_data
def test_reproduces_the_reference_on_real_wiki():
    """Wiki, official split, 32 bits: the independent reference's CMFH row is .248 / .419 (3 seeds)."""
    from conftest import shared_subdir

    ds = load_dataset("wiki", shared_subdir("wikipedia"))
    train, query = ds.subset(ds.official_splits["train"]), ds.subset(ds.official_splits["query"])
    model = create_method("cmfh", 32, seed=0, **load_preset("cmfh", "wiki").hparams).fit(train, threads=1)
    i2t, t2i = cross_maps(model, query, train)  # database = the training set (official protocol)
    assert i2t == pytest.approx(0.248, abs=0.015)
    assert t2i == pytest.approx(0.419, abs=0.02)
