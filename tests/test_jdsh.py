"""JDSH as a method: training target and loss, variants, DSDW fitting, learning, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cmhash.errors import CmhashError
from cmhash.methods import METHODS, create_method
from cmhash.inference import load_checkpoint
from cmhash.training.checkpoint import save_method
from cmhash.methods.deep import Batch
from cmhash.experiments.settings import resolve_settings
from test_djsrh import _map, clustered

torch.set_num_threads(1)


def _built(ds, bits=16, **hp):
    m = create_method("jdsh", bits, hidden=32, **hp)
    m.setup(m.input_spec_for(ds))
    return m


def _by_hand_target(img, txt, w, mu, c, variant):
    fi = img / img.norm(dim=1, keepdim=True)
    ft = txt / txt.norm(dim=1, keepdim=True)
    si, st = 2 * fi @ fi.T - 1, 2 * ft @ ft.T - 1
    if variant == "head":
        high = (si / si.norm(dim=1, keepdim=True)) @ (st / st.norm(dim=1, keepdim=True)).T
        high = (high + high.T) / 2
    else:
        p = si @ st
        high = p / p.norm(dim=1, keepdim=True)
    s = w[0] * si + w[1] * st + w[2] * high
    out = s.clone()
    m = s.shape[0]
    lo, hi = (c["min"], c["max"]) if variant == "head" else (s.min(), torch.diagonal(s).max())
    for i in range(m):
        for j in range(m):
            if variant != "head" and i == j:
                continue
            v = out[i, j]
            if v < c["left"]:
                v = (1 + c["l1"] * torch.exp(-(v - lo))) * v
            if v > c["right"]:
                v = (1 + c["l2"] * torch.exp(v - hi)) * v
            out[i, j] = v
    return mu * out


@pytest.mark.parametrize("variant", ["head", "v2020_05"])
def test_training_loss_matches_a_plain_recomputation(variant):
    ds = clustered(n=40)
    m = _built(ds, jdsh_variant=variant, batch_size=8)
    m.on_epoch_start(4)
    img, txt = torch.from_numpy(ds.image_features[:8]), torch.from_numpy(ds.text_features[:8])
    batch = Batch(img, txt, torch.arange(8))
    loss, terms = m.training_loss(batch)
    c = {"left": -0.49 - 2 * 0.019, "right": -0.49 + 4 * 0.088, "min": -0.52, "max": 0.68, "l1": 0.1, "l2": 0.2}
    with torch.no_grad():
        target = _by_hand_target(img, txt, (0.5, 0.1, 0.4), 1.4, c, variant)
        assert torch.allclose(m.target(batch), target, atol=1e-5)
        bi = torch.tanh(2.0 * m.nets["image"](img))
        bt = torch.tanh(2.0 * m.nets["text"](txt))
        bi, bt = bi / bi.norm(dim=1, keepdim=True), bt / bt.norm(dim=1, keepdim=True)

        def mse(a, b):
            return ((a @ b.T - target) ** 2).mean()

        want = 0.1 * mse(bi, bi) + mse(bi, bt) + 0.1 * mse(bt, bt)
        if variant == "head":
            want = want + mse(bt, bi) - (bi * bt).sum(1).mean()
    assert float(loss.detach()) == pytest.approx(float(want), rel=1e-5)
    assert ("paired_cosine" in terms) == (variant == "head")
    loss.backward()
    assert all(p.grad is not None for p in m.nets.parameters())


def test_head_image_net_is_one_linear_layer_and_mlp_is_an_option():
    ds = clustered(n=40)
    assert isinstance(_built(ds).nets["image"], torch.nn.Linear)
    assert not isinstance(_built(ds, image_head="mlp").nets["image"], torch.nn.Linear)


def test_dsdw_off_gives_plain_scaled_joint_similarity():
    ds = clustered(n=40)
    m = _built(ds, dsdw="off", batch_size=8)
    img, txt = torch.from_numpy(ds.image_features[:8]), torch.from_numpy(ds.text_features[:8])
    b = Batch(img, txt, torch.arange(8))
    assert torch.allclose(m.target(b), 1.4 * m.joint_similarity(b))
    assert not torch.allclose(_built(ds, batch_size=8).target(b), m.target(b))


def test_dsdw_fit_replaces_constants_from_the_training_pairs_before_training():
    ds = clustered(n=120)
    m = create_method("jdsh", 8, hidden=16, epochs=1, dsdw="fit", dsdw_fit_batches=20, seed=3)
    m.fit(ds, progress=False, tensorboard=False)
    s = m.dsdw_fit_summary
    assert s is not None and s["n_values"] == 20 * 32 * 31
    assert m.hparams["dsdw_loc_left"] == pytest.approx(s["loc_left"]) != -0.49
    assert m.hparams["dsdw_alpha"] == 2.0 and m.hparams["dsdw_beta"] == 4.0
    assert m.hparams["dsdw_min"] < m.hparams["dsdw_loc_left"] < m.hparams["dsdw_max"]


@pytest.mark.parametrize("variant", ["head", "v2020_05"])
def test_jdsh_learns_cross_modal_codes_on_clustered_data(variant):
    ds = clustered(n=300)
    m = create_method("jdsh", 16, hidden=64, epochs=10, jdsh_variant=variant, dsdw="fit", dsdw_fit_batches=20)
    m.fit(ds, progress=False, tensorboard=False)
    i2t, t2i = _map(m, ds)
    assert i2t > 0.8 and t2i > 0.8, (i2t, t2i)  # random codes give ~0.25-0.3 with 4 classes
    assert len(m.history) == 10


def test_presets_hold_the_official_configs_and_variants():
    h, run, prov = resolve_settings("jdsh", "mirflickr")
    assert (h["weight_image"], h["weight_text"], h["weight_high"], h["mu"], h["intra"]) == (0.5, 0.1, 0.4, 1.4, 0.1)
    assert (h["dsdw_loc_left"], h["dsdw_scale_left"], h["dsdw_scale_right"], h["dsdw_min"], h["dsdw_max"]) == (-0.49, 0.019, 0.088, -0.52, 0.68)
    assert (h["lr_image"], h["lr_text"], h["epochs"], h["batch_size"], run["eval_every"]) == (0.01, 0.01, 300, 32, 40)
    assert h["jdsh_variant"] == "head" and "JDSH_MIRFlickr.json" in prov["source"]
    n, _, _ = resolve_settings("jdsh", "nuswide")
    assert (n["weight_image"], n["weight_text"], n["weight_high"]) == (0.4, 0.3, 0.3)
    assert (n["dsdw_loc_left"], n["dsdw_scale_left"], n["dsdw_scale_right"], n["dsdw_min"], n["dsdw_max"], n["dsdw_l1"]) == (
        -0.62,
        0.0128,
        0.086,
        -0.64,
        0.75,
        0.2,
    )
    v, _, _ = resolve_settings("jdsh", "mirflickr", "v2020_05")
    assert (v["jdsh_variant"], v["mu"], v["image_head"]) == ("v2020_05", 1.47, "mlp")
    create_method("jdsh", 16, **h)  # every preset key is a known hyper-parameter


def test_bad_settings_are_clear_errors():
    with pytest.raises(CmhashError, match="jdsh_variant"):
        create_method("jdsh", 16, jdsh_variant="v3")
    with pytest.raises(CmhashError, match="dsdw"):
        create_method("jdsh", 16, dsdw="maybe")
    with pytest.raises(CmhashError, match="DSDW constants"):
        create_method("jdsh", 16, dsdw_min="low")


def test_checkpoint_round_trip_gives_identical_codes(tmp_path):
    ds = clustered(n=64)
    m = _built(ds, bits=32, jdsh_variant="v2020_05", image_head="mlp")
    ck = load_checkpoint(save_method(tmp_path / "m.pt", m))
    assert ck.method_name == "jdsh" and ck.method.hparams == m.hparams
    for mod, x in (("image", ds.image_features), ("text", ds.text_features)):
        np.testing.assert_array_equal(ck.encode(x, mod), m.encode(x, mod))
    assert "jdsh" in METHODS.names()
