"""``input_norm``: standardised network inputs for DJSRH, JDSH and UDCMH (issue 10, Wiki collapse).

Wiki's official image features are l1-normalised 128-bin SIFT histograms (entries ~0.008) and its text
features 10-d LDA topic vectors summing to 1. Fed as given, an MLP's output hardly depends on such
inputs, and DJSRH, JDSH and UDCMH end with a handful of distinct codes (mAP of one fixed ranking).
The fixture below builds the same kind of input from clustered pairs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_djsrh import _map, clustered
from trainer_fixtures import fit_interrupted

from cmhash.errors import CmhashError
from cmhash.inference import load_checkpoint
from cmhash.methods import create_method
from cmhash.nets.heads import MLPHashNet, StandardizedInput
from cmhash.training.checkpoint import save_method

#: the published settings each method trains with on Wiki, shrunk to tiny nets and 8 epochs
SETTINGS = {
    "djsrh": dict(beta=0.3, lambda1=0.3, lambda2=0.3, lr_image=0.01, lr_text=0.01),
    "jdsh": dict(dsdw="fit", dsdw_fit_batches=5),
    "udcmh": dict(k_near=10, k_far=10),
}


def histograms(seed: int = 0):
    """Clustered pairs as l1-normalised histograms: 128-bin image rows, 16-topic text rows (Wiki-like)."""
    ds = clustered(n=300, di=128, dt=16, seed=seed, sparse_text=False)
    ds.image_features = (ds.image_features / ds.image_features.sum(1, keepdims=True)).astype(np.float32)
    t = ds.text_features + 0.01
    ds.text_features = (t / t.sum(1, keepdims=True)).astype(np.float32)
    return ds


def _fit(name, ds, norm, seed=0, epochs=8):
    m = create_method(name, 16, seed=seed, hidden=64, epochs=epochs, input_norm=norm, **SETTINGS[name])
    return m.fit(ds, progress=False, tensorboard=False)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_small_norm_histograms_collapse_as_given_and_train_when_standardised(name):
    ds = histograms()
    plain, std = _fit(name, ds, "none"), _fit(name, ds, "standardize")
    distinct_plain = len(np.unique(plain.encode(ds.image_features, "image"), axis=0))
    distinct_std = len(np.unique(std.encode(ds.image_features, "image"), axis=0))
    # as given: (nearly) one code for 300 items of 4 clusters, retrieval near chance (0.25-0.35)
    assert distinct_plain <= 4 and max(_map(plain, ds)) < 0.6, (distinct_plain, _map(plain, ds))
    # standardised: the clusters get their own codes and retrieve each other
    assert distinct_std >= 4 and min(_map(std, ds)) > 0.9, (distinct_std, _map(std, ds))


def test_statistics_are_the_training_mean_and_rms_and_checkpoints_keep_them(tmp_path):
    ds = histograms()
    m = _fit("djsrh", ds, "standardize", epochs=1)
    for modality, x in (("image", ds.image_features), ("text", ds.text_features)):
        net = m.nets[modality]
        assert isinstance(net, StandardizedInput)
        x = x.astype(np.float64)
        np.testing.assert_allclose(net.shift.numpy(), x.mean(0), rtol=1e-5, atol=1e-7)
        rms = np.sqrt(((x - x.mean(0)) ** 2).mean())
        assert float(net.scale) == pytest.approx(rms, rel=1e-5)
        # the wrapped net sees centred inputs of unit RMS
        z = (torch.from_numpy(x).float() - net.shift) / net.scale
        assert float(z.pow(2).mean()) == pytest.approx(1.0, rel=1e-4)
    ck = load_checkpoint(save_method(tmp_path / "d.pt", m))
    for modality, x in (("image", ds.image_features), ("text", ds.text_features)):
        np.testing.assert_array_equal(ck.encode(x, modality), m.encode(x, modality))


def test_default_is_the_published_method_and_bad_values_are_clear_errors():
    ds = histograms()
    for name in SETTINGS:
        m = _fit(name, ds, "none", epochs=1)
        assert m.hparams["input_norm"] == "none"
        assert not any(isinstance(net, StandardizedInput) for net in m.nets.values())
        assert create_method(name, 16).hparams["input_norm"] == "none"
    assert isinstance(_fit("djsrh", ds, "none", epochs=1).nets["image"], MLPHashNet)
    # `--set input_norm=none` arrives as None (the KEY=VALUE typing rule): it means "none"
    assert create_method("djsrh", 16, input_norm=None).hparams["input_norm"] == "none"
    for name in SETTINGS:
        with pytest.raises(CmhashError, match="input_norm"):
            create_method(name, 16, input_norm="zscore")


def test_jdsh_linear_image_head_is_standardised_too():
    ds = histograms()
    m = _fit("jdsh", ds, "standardize", epochs=1)
    assert isinstance(m.nets["image"], StandardizedInput) and isinstance(m.nets["image"].net, torch.nn.Linear)


def test_an_interrupted_standardised_run_resumes_to_the_same_networks(tmp_path):
    from cmhash.training.trainer import TrainConfig, Trainer

    ds = histograms()

    def cfg(run_dir, **kw):
        return TrainConfig(epochs=3, batch_size=32, seed=0, run_dir=str(run_dir), progress=False, tensorboard=False, device="cpu", **kw)

    def method():
        return create_method("udcmh", 16, seed=0, hidden=32, input_norm="standardize", **SETTINGS["udcmh"])

    full = method()
    Trainer(full, ds, cfg(tmp_path / "full"), spec=full.input_spec_for(ds)).fit()
    stopper = method()
    fit_interrupted(Trainer(stopper, ds, cfg(tmp_path / "stop"), spec=stopper.input_spec_for(ds)), 3)
    resumed = method()
    Trainer(resumed, ds, cfg(tmp_path / "stop", resume=True), spec=resumed.input_spec_for(ds)).fit()
    sa, sb = full.nets.state_dict(), resumed.nets.state_dict()
    assert any(k.endswith("shift") for k in sa)  # the statistics are part of the networks' state
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
