"""DBRC and UDCMH as methods: losses recomputed by hand, learning, optimiser contract, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_djsrh import _map, clustered

from cmhash.errors import CmhashError
from cmhash.methods import create_method
from cmhash.inference import load_checkpoint
from cmhash.training.checkpoint import save_method
from cmhash.methods.deep import Batch, TrainingSet
from cmhash.methods.losses import dbrc_reconstruction_loss, inverse_scale_penalty

torch.set_num_threads(1)


def test_dbrc_loss_pieces_hand_checked():
    s = torch.tensor([1.0, 2.0, 0.5])
    assert inverse_scale_penalty(s).item() == pytest.approx(1 + 0.25 + 4)
    ri, rt = torch.zeros(2, 2), torch.ones(2, 3)
    x, y = torch.tensor([[1.0, 0], [0, 1]]), torch.zeros(2, 3)
    loss, terms = dbrc_reconstruction_loss(ri, rt, x, y)
    assert terms["recon_image"].item() == pytest.approx(0.5) and terms["recon_text"].item() == pytest.approx(1.0)
    assert loss.item() == pytest.approx(1.5)


def _dbrc(ds, **hp):
    m = create_method("dbrc", 8, enc_hidden=16, joint_hidden=16, **hp)
    m.setup(m.input_spec_for(ds))
    return m


def test_dbrc_loss_is_three_views_plus_scale_penalty_and_zeroed_modality_codes():
    ds = clustered(n=20)
    m = _dbrc(ds, scale_penalty=0.5)
    fusion, ei, et = m.nets["fusion"], m.nets["image"].fc, m.nets["text"].fc
    img, txt = torch.from_numpy(ds.image_features[:6]), torch.from_numpy(ds.text_features[:6])
    loss, _ = m.training_loss(Batch(img, txt, torch.arange(6)))
    with torch.no_grad():
        want = 0.0
        for a, b in ((img, txt), (img, torch.zeros_like(txt)), (torch.zeros_like(img), txt)):
            z = fusion.hash(torch.relu(fusion.joint(torch.cat([torch.relu(ei(a)), torch.relu(et(b))], 1))))
            code = torch.tanh(fusion.scale * z)
            want += ((fusion.dec_image(code) - img) ** 2).mean() + ((fusion.dec_text(code) - txt) ** 2).mean()
        want += 0.5 * (1 / fusion.scale**2).sum()
        # single-modality coding = the joint net with the other modality zeroed
        zi = fusion.hash(torch.relu(fusion.joint(torch.cat([torch.relu(ei(img)), torch.relu(et(torch.zeros_like(txt)))], 1))))
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    np.testing.assert_allclose(m.hash_outputs(ds.image_features[:6], "image"), zi.numpy(), rtol=1e-5, atol=1e-6)
    loss.backward()
    assert fusion.scale.grad is not None


def test_dbrc_uses_one_rmsprop_including_the_learnable_scales_and_they_grow():
    ds = clustered(n=200)
    m = create_method("dbrc", 16, epochs=15, batch_size=32)
    m.fit(ds, progress=False, tensorboard=False)
    opts = m.make_optimizers()
    assert list(opts) == ["all"] and isinstance(opts["all"], torch.optim.RMSprop)
    params = {id(p) for g in opts["all"].param_groups for p in g["params"]}
    assert params == {id(p) for p in m.nets.parameters()} and id(m.nets["fusion"].scale) in params
    assert float(m.nets["fusion"].scale.detach().mean()) > 1.0  # the ||1/scale||^2 penalty pushes them up
    i2t, t2i = _map(m, ds)
    assert i2t > 0.7 and t2i > 0.7, (i2t, t2i)  # random codes: ~0.25-0.3 with 4 classes


def test_dbrc_checkpoint_round_trip_keeps_the_scales(tmp_path):
    ds = clustered(n=30)
    m = _dbrc(ds)
    with torch.no_grad():
        m.nets["fusion"].scale.fill_(3.0)
    assert "scale" in m.state()["nets"]["fusion"]
    ck = load_checkpoint(save_method(tmp_path / "d.pt", m))
    assert torch.equal(ck.method.nets["fusion"].scale, m.nets["fusion"].scale)
    for mod, x in (("image", ds.image_features), ("text", ds.text_features)):
        np.testing.assert_array_equal(ck.encode(x, mod), m.encode(x, mod))


def test_udcmh_epoch_step_builds_codes_for_every_pair_and_batch_loss_regresses_them():
    ds = clustered(n=80)
    m = create_method("udcmh", 8, hidden=16, k_near=5, k_far=5)
    m.setup(m.input_spec_for(ds))
    train = TrainingSet(image=torch.from_numpy(ds.image_features), text=torch.from_numpy(ds.text_features))
    logs = m.on_epoch_start(1, train)
    b = m.codes_b
    assert b.shape == (80, 8) and set(torch.unique(b).tolist()) <= {-1.0, 1.0}
    assert np.isfinite(logs["objective"])
    saved = m.training_state()["codes_b"]
    fresh = create_method("udcmh", 8, hidden=16, k_near=5, k_far=5)
    fresh.load_training_state({"codes_b": saved})
    assert torch.equal(fresh.codes_b, b)  # --resume continues from the same B
    idx = torch.tensor([3, 7, 11])
    img, txt = torch.from_numpy(ds.image_features[idx.numpy()]), torch.from_numpy(ds.text_features[idx.numpy()])
    loss, _ = m.training_loss(Batch(img, txt, idx))
    with torch.no_grad():
        want = ((torch.tanh(m.nets["image"](img)) - b[idx]) ** 2).mean() + ((torch.tanh(m.nets["text"](txt)) - b[idx]) ** 2).mean()
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)


def test_udcmh_learns_cross_modal_codes_and_round_trips(tmp_path):
    ds = clustered(n=300)
    m = create_method("udcmh", 16, hidden=64, epochs=8, k_near=10, k_far=10)
    m.fit(ds, progress=False, tensorboard=False)
    i2t, t2i = _map(m, ds)
    assert i2t > 0.6 and t2i > 0.6, (i2t, t2i)
    ck = load_checkpoint(save_method(tmp_path / "u.pt", m))
    np.testing.assert_array_equal(ck.encode(ds.text_features, "text"), m.encode(ds.text_features, "text"))


def test_bad_settings_are_clear_errors():
    with pytest.raises(CmhashError, match="views"):
        create_method("dbrc", 16, views="some")
    with pytest.raises(CmhashError, match="graph_beta"):
        create_method("udcmh", 16, graph_beta=2)
    with pytest.raises(CmhashError, match="feature mode"):
        create_method("udcmh", 16, image_mode="backbone")
    with pytest.raises(CmhashError, match="whole training set"):
        create_method("udcmh", 16).on_epoch_start(1, None)
