"""JDSH's joint-modal similarity, DSDW and loss against plain loop references; the DSDW fitter."""

import math

import numpy as np
import pytest
import torch

from cmhash.methods.dsdw_fit import SHIPPED, fit_dsdw_constants, fit_split_normal, pooled_joint_similarities
from cmhash.methods.losses import jdsh_loss
from cmhash.methods.similarity import DSDWConstants, dsdw_weighting, jdsh_joint_similarity

MIR = SHIPPED["mirflickr"]


def _cos(u, v):
    nu = math.sqrt(sum(x * x for x in u))
    nv = math.sqrt(sum(x * x for x in v))
    return sum(a * b for a, b in zip(u, v)) / (nu * nv)


def _rand_sym(m, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(m, 5, generator=g, dtype=torch.float64)
    xn = x / x.norm(dim=1, keepdim=True)
    return 2 * xn @ xn.t() - 1


def test_joint_similarity_head_matches_loop_reference():
    s_i, s_t = _rand_sym(6, 0), _rand_sym(6, 1)
    got = jdsh_joint_similarity(s_i, s_t, 0.5, 0.1, 0.4, "head")
    rows_i, rows_t = s_i.tolist(), s_t.tolist()
    for i in range(6):
        for j in range(6):
            high = 0.5 * (_cos(rows_i[i], rows_t[j]) + _cos(rows_i[j], rows_t[i]))
            want = 0.5 * rows_i[i][j] + 0.1 * rows_t[i][j] + 0.4 * high
            assert got[i, j].item() == pytest.approx(want, abs=1e-12)
    assert torch.allclose(got, got.t())


def test_joint_similarity_v2020_matches_loop_reference():
    s_i, s_t = _rand_sym(5, 2), _rand_sym(5, 3)
    got = jdsh_joint_similarity(s_i, s_t, 0.5, 0.1, 0.4, "v2020_05")
    a, b = s_i.tolist(), s_t.tolist()
    prod = [[sum(a[i][k] * b[k][j] for k in range(5)) for j in range(5)] for i in range(5)]
    for i in range(5):
        norm = math.sqrt(sum(v * v for v in prod[i]))
        for j in range(5):
            want = 0.5 * a[i][j] + 0.1 * b[i][j] + 0.4 * prod[i][j] / norm
            assert got[i, j].item() == pytest.approx(want, abs=1e-12)
    assert not torch.allclose(got, got.t())  # not symmetrised in the May-2020 code


def test_shipped_thresholds_are_the_spec_arithmetic():
    assert MIR.left == pytest.approx(-0.528)
    assert MIR.right == pytest.approx(-0.138)
    assert SHIPPED["nuswide"].left == pytest.approx(-0.6456)
    assert SHIPPED["nuswide"].right == pytest.approx(-0.276)


def test_dsdw_head_hand_checked_values():
    s = torch.tensor([[-0.6, -0.3], [0.5, 1.0]], dtype=torch.float64)
    got = dsdw_weighting(s, MIR, "head")
    # -0.6 < left (-0.528): (1 + 0.1 exp(-(-0.6 + 0.52))) * -0.6
    assert got[0, 0].item() == pytest.approx((1 + 0.1 * math.exp(0.08)) * -0.6)
    assert got[0, 1].item() == pytest.approx(-0.3)  # between left and right: unchanged
    assert got[1, 0].item() == pytest.approx((1 + 0.2 * math.exp(0.5 - 0.68)) * 0.5)
    assert got[1, 1].item() == pytest.approx((1 + 0.2 * math.exp(1.0 - 0.68)) * 1.0)  # diagonal included
    # the quirk kept for faithfulness: "similar" entries in (right, 0) become more negative
    q = dsdw_weighting(torch.tensor([[-0.1]], dtype=torch.float64), MIR, "head")
    assert q.item() < -0.1


def _dsdw_loop(s, c, variant):
    m = len(s)
    out = [row[:] for row in s]
    if variant == "head":
        lo, hi = c.min, c.max
    else:
        lo = min(min(r) for r in s)
        hi = max(s[i][i] for i in range(m))
    for i in range(m):
        for j in range(m):
            if variant == "v2020_05" and i == j:
                continue
            v = out[i][j]
            if v < c.left:
                v = (1 + c.l1 * math.exp(-(v - lo))) * v
            if v > c.right:
                v = (1 + c.l2 * math.exp(v - hi)) * v
            out[i][j] = v
    return out


@pytest.mark.parametrize("variant", ["head", "v2020_05"])
def test_dsdw_matches_loop_reference(variant):
    g = torch.Generator().manual_seed(4)
    s = (torch.rand(7, 7, generator=g, dtype=torch.float64) * 1.6 - 0.8)
    got = dsdw_weighting(s, MIR, variant)
    want = _dsdw_loop(s.tolist(), MIR, variant)
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), atol=1e-12)
    if variant == "v2020_05":
        assert torch.equal(torch.diagonal(got), torch.diagonal(s))
    assert torch.equal(s, s.clone())  # input untouched


def test_jdsh_loss_head_and_v2020_against_loops():
    g = torch.Generator().manual_seed(5)
    bi = torch.nn.functional.normalize(torch.randn(4, 3, generator=g, dtype=torch.float64), dim=1)
    bt = torch.nn.functional.normalize(torch.randn(4, 3, generator=g, dtype=torch.float64), dim=1)
    t = _rand_sym(4, 6) * 1.4
    I, T, S = bi.tolist(), bt.tolist(), t.tolist()

    def mse(a, b):
        return sum((sum(x * y for x, y in zip(a[i], b[j])) - S[i][j]) ** 2 for i in range(4) for j in range(4)) / 16

    paired = sum(sum(x * y for x, y in zip(I[i], T[i])) for i in range(4)) / 4
    head, terms = jdsh_loss(bi, bt, t, 0.1, "head")
    want = 0.1 * mse(I, I) + mse(I, T) + mse(T, I) - paired + 0.1 * mse(T, T)
    assert head.item() == pytest.approx(want, abs=1e-12)
    assert terms["paired_cosine"].item() == pytest.approx(paired)
    v2, _ = jdsh_loss(bi, bt, t, 0.1, "v2020_05")
    assert v2.item() == pytest.approx(0.1 * mse(I, I) + mse(I, T) + 0.1 * mse(T, T), abs=1e-12)


def test_split_normal_fit_recovers_known_parameters():
    rng = np.random.default_rng(0)
    n = 200_000
    mode, sl, sr = -0.49, 0.02, 0.09
    # split normal sample: pick a side with probability sl/(sl+sr), then a half-normal on it
    left = rng.random(n) < sl / (sl + sr)
    z = np.abs(rng.standard_normal(n))
    x = np.where(left, mode - sl * z, mode + sr * z)
    m, a, b = fit_split_normal(x)
    assert m == pytest.approx(mode, abs=0.003)
    assert a == pytest.approx(sl, rel=0.08)
    assert b == pytest.approx(sr, rel=0.05)


def test_fit_constants_keeps_multipliers_and_reports_shares():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-0.5, 0.02, 5000), -0.5 + np.abs(rng.normal(0, 0.1, 5000))])
    c, summary = fit_dsdw_constants(x, MIR)
    assert (c.alpha, c.beta, c.l1, c.l2) == (MIR.alpha, MIR.beta, MIR.l1, MIR.l2)
    assert c.min == pytest.approx(x.min()) and c.max == pytest.approx(x.max())
    assert c.left < c.loc_left < c.right
    assert summary["share_dissimilar"] == pytest.approx(np.mean(x < c.left))
    assert 0 < summary["share_similar"] < 0.5


def test_pooled_similarities_are_offdiagonal_entries_of_real_batches():
    rng = np.random.default_rng(2)
    img = rng.random((40, 6)).astype(np.float32)
    txt = (rng.random((40, 9)) < 0.3).astype(np.float32)
    vals = pooled_joint_similarities(img, txt, alpha=0.5, beta=0.1, lamb=0.4, batch_size=8, num_batches=3, seed=0)
    assert vals.shape == (3 * 8 * 7,)
    assert np.all(vals <= 1.0 + 1e-5) and np.all(vals >= -1.0 - 1e-5)
    again = pooled_joint_similarities(img, txt, alpha=0.5, beta=0.1, lamb=0.4, batch_size=8, num_batches=3, seed=0)
    assert np.array_equal(vals, again)


def test_dsdw_constants_from_hparams():
    h = {f"dsdw_{k}": v for k, v in MIR.__dict__.items()}
    assert DSDWConstants.from_hparams(h) == MIR
