"""CVH, IMH, LSSH, SCM: the method contract (codes, state, checkpoint, presets, errors, retrieval)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cmhash.errors import CmhashError, DataError
from cmhash.methods import METHODS, create_method
from cmhash.inference import load_checkpoint
from cmhash.training.checkpoint import save_method
from cmhash.presets import available, load_preset
from retrieval_fixtures import chance_map, cross_maps, synthetic_split

#: small settings so every method fits in about a second on the fixture
FAST = {"cvh": {}, "imh": {}, "scm": {}, "lssh": {"atoms": 48, "iterations": 4}}
NAMES = sorted(FAST)


@pytest.fixture(scope="module")
def synth():
    return synthetic_split(n=900, image_dim=40, vocab_size=120, seed=5, num_query=200, num_train=500)


@pytest.fixture(scope="module")
def fitted(synth):
    train, _, _ = synth
    return {name: create_method(name, 16, **FAST[name]).fit(train, threads=1) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_presets_citing_sources(name):
    assert name in METHODS
    sections = available(name)
    assert {"mirflickr", "wiki"} <= set(sections)
    for section in sections:
        preset = load_preset(name, section)
        assert preset.source
        model = create_method(name, 32, **preset.hparams)  # every preset value is a known hyper-parameter
        assert model.bits == 32


@pytest.mark.parametrize("name", NAMES)
def test_codes_are_pm1_int8_of_the_right_length(name, synth, fitted):
    _, query, _ = synth
    for m in ("image", "text"):
        codes = fitted[name].encode(query, m)
        assert codes.dtype == np.int8 and codes.shape == (len(query), 16)
        assert set(np.unique(codes)) <= {-1, 1}
        # arrays and datasets give the same codes
        np.testing.assert_array_equal(fitted[name].encode(getattr(query, f"{m}_features"), m), codes)


@pytest.mark.parametrize("name", NAMES)
def test_beats_random_codes_clearly(name, synth, fitted):
    _, query, db = synth
    chance = chance_map(query, db)
    i2t, t2i = cross_maps(fitted[name], query, db)
    assert i2t > chance + 0.05 and t2i > chance + 0.05, (name, i2t, t2i, chance)


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip_gives_identical_codes(name, synth, fitted, tmp_path):
    _, query, _ = synth
    model = fitted[name]
    path = save_method(tmp_path / "checkpoint.pt", model, meta={"dataset": "synthetic"})
    clone = load_checkpoint(path).method
    assert type(clone) is type(model) and clone.bits == 16 and clone.hparams == model.hparams
    for m in ("image", "text"):
        np.testing.assert_array_equal(clone.encode(query, m), model.encode(query, m))
    with pytest.raises(CmhashError, match="belongs to method"):
        type(model).from_state({**model.state(), "method": "djsrh"})


@pytest.mark.parametrize("name", NAMES)
def test_fit_is_deterministic(name, synth, fitted):
    train, query, _ = synth
    again = create_method(name, 16, **FAST[name]).fit(train, threads=1)
    for m in ("image", "text"):
        np.testing.assert_array_equal(again.encode(query, m), fitted[name].encode(query, m))


@pytest.mark.parametrize("name", NAMES)
def test_errors_are_clear(name, synth, fitted):
    train, query, _ = synth
    with pytest.raises(CmhashError, match="not fitted"):
        create_method(name, 8).encode(query, "image")
    with pytest.raises(DataError, match="trained on 40"):
        fitted[name].encode(np.zeros((3, 7), np.float32), "image")
    with pytest.raises(CmhashError, match="modality"):
        fitted[name].encode(query, "audio")
    with pytest.raises(CmhashError, match="unknown hyper-parameter"):
        create_method(name, 8, lr=0.1)
    with pytest.raises(CmhashError, match="unknown option"):
        create_method(name, 8).fit(train, epochs=3)
    bad = train.image_features.astype(np.float64)
    bad[7, 3] = np.nan
    with pytest.raises(DataError, match="row 7"):
        create_method(name, 8).fit(SimpleNamespace(image_features=bad, text_features=train.text_features, labels=train.labels))
    with pytest.raises(DataError, match="pairs"):
        create_method(name, 8).fit(SimpleNamespace(image_features=train.image_features, text_features=train.text_features[:10], labels=train.labels))
    nan_query = query.image_features[:4].astype(np.float64)
    nan_query[2, 0] = np.inf
    with pytest.raises(DataError, match="input row 2"):
        fitted[name].encode(nan_query, "image")
    with pytest.raises(DataError, match="2-D"):
        fitted[name].encode(np.zeros(40), "image")
