"""KDH: the global target, the CMFH teacher and its distillation term, options and ablation variants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cmhash import metrics
from cmhash.errors import CmhashError
from cmhash.methods import create_method
from cmhash.experiments.settings import available_variants, resolve_settings
from cmhash.methods.kdh import cmfh_teacher_codes, global_target
from test_trainer import tiny

torch.set_num_threads(1)


def test_global_target_is_djsrh_joint_semantics_over_the_whole_training_set():
    rng = np.random.default_rng(0)
    fi, ft = rng.random((9, 5)), rng.random((9, 3))
    got = global_target(torch.tensor(fi), torch.tensor(ft), beta=0.7, eta=0.4, mu=1.5).numpy()
    cos = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T  # noqa: E731
    s = 0.7 * (2 * cos(fi) - 1) + 0.3 * (2 * cos(ft) - 1)
    want = 1.5 * (0.6 * s + 0.4 * s @ s.T / 9)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_teacher_codes_are_the_signs_of_cmfh_latent_codes():
    from cmhash.methods.cmfh import CMFH

    ds = tiny(64)
    codes = cmfh_teacher_codes(ds.image_features, ds.text_features, 8, seed=3)
    ref = CMFH(8, seed=3).fit(ds)
    np.testing.assert_array_equal(codes, np.where(ref.latent >= 0, 1.0, -1.0))


def test_teacher_alone_makes_the_nets_reproduce_the_teacher_codes():
    ds = tiny(192)
    m = create_method("kdh", 16, hidden=64, reconstruction=0.0, distill=1.0, batch_size=32, epochs=8, lr_image=3e-3, lr_text=3e-3)
    m.fit(ds, progress=False, seed=0)
    teacher = m.teacher.numpy()
    for mod in ("image", "text"):
        agree = float(np.mean(m.encode(ds, mod) == teacher))
        assert agree > 0.9, (mod, agree)
    assert "distill" in m.history[-1]


def test_kdh_learns_both_directions_and_uses_adam_or_sgd():
    ds = tiny(256)
    m = create_method("kdh", 16, hidden=64, batch_size=32, epochs=6, lr_image=3e-3, lr_text=3e-3)
    m.fit(ds, progress=False, seed=0)
    assert all(isinstance(o, torch.optim.Adam) for o in m.make_optimizers().values())
    qi, qt = m.encode(ds, "image"), m.encode(ds, "text")
    assert metrics.mean_average_precision(qi, qt, ds.labels, ds.labels, topk=50) > 0.8
    assert metrics.mean_average_precision(qt, qi, ds.labels, ds.labels, topk=50) > 0.8
    sgd = create_method("kdh", 16, hidden=16, optimizer="sgd", distill=0.0, target_scope="batch", batch_size=32, epochs=1)
    sgd.fit(ds, progress=False, seed=0)
    assert all(isinstance(o, torch.optim.SGD) for o in sgd.make_optimizers().values())


def test_bad_options_are_refused_by_name():
    for kw, msg in ((dict(target_scope="local"), "target_scope"), (dict(optimizer="rmsprop"), "optimizer"), (dict(distill=-1), "distill"),
                    (dict(distill=0, reconstruction=0), "nothing to train")):  # fmt: skip
        with pytest.raises(CmhashError, match=msg):
            create_method("kdh", 16, **kw)


def test_every_ablation_variant_removes_one_ingredient():
    names = available_variants("kdh")
    assert {"kdh-noteacher", "kdh-teacheronly", "kdh-global", "kdh-eta"} <= set(names)
    base, _, _ = resolve_settings("kdh", "mirflickr")
    for name in names:
        hp, _, _ = resolve_settings("kdh", "mirflickr", name)
        changed = {k for k in hp if k != "variant" and hp[k] != base.get(k)}
        assert len(changed) == 1, (name, changed)
