"""LSSH: its sub-solvers against plain references, objective descent, coding, compat flag."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cmhash.errors import CmhashError, DataError
from cmhash.methods.lssh import LSSH, lasso_codes, learn_basis


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(3)
    n = 160
    z = rng.standard_normal((n, 3))
    X = np.abs(z @ rng.standard_normal((3, 20)) + 0.3 * rng.standard_normal((n, 20)))
    T = (z @ rng.standard_normal((3, 30)) + 0.5 * rng.standard_normal((n, 30)) > 0.8).astype(np.float32)
    return SimpleNamespace(image_features=X, text_features=T)


def test_learn_basis_matches_a_constrained_reference_solver():
    """min ||X - B S||^2 s.t. ||b_j|| <= 1, against scipy's SLSQP on the primal."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(0)
    X, S = 3 * rng.standard_normal((3, 25)), rng.standard_normal((4, 25))
    S[2] = 0  # an unused atom keeps its previous column
    prev = rng.standard_normal((3, 4))
    B, theta = learn_basis(X, S, prev)
    assert np.all(theta >= 0) and theta[2] == 0
    np.testing.assert_array_equal(B[:, 2], prev[:, 2])
    assert np.all(np.linalg.norm(B, axis=0)[[0, 1, 3]] <= 1 + 1e-9)
    used = [0, 1, 3]

    def f(b):
        return np.sum((X - b.reshape(3, 3) @ S[used]) ** 2)

    cons = [{"type": "ineq", "fun": (lambda b, j=j: 1 - np.sum(b.reshape(3, 3)[:, j] ** 2))} for j in range(3)]
    ref = minimize(f, np.zeros(9), constraints=cons, method="SLSQP", options={"ftol": 1e-12, "maxiter": 500})
    assert f(B[:, used].ravel()) <= ref.fun + 1e-6
    assert f(B[:, used].ravel()) == pytest.approx(ref.fun, rel=1e-5)
    # a warm start from the optimal multipliers gives the same basis
    again, _ = learn_basis(X, S, prev, theta)
    np.testing.assert_allclose(again, B, atol=1e-6)
    # an inactive constraint gives plain least squares
    small, theta_small = learn_basis(0.01 * X, S, prev)
    np.testing.assert_allclose(theta_small, 0, atol=1e-9)  # no constraint binds
    ls = np.linalg.lstsq(S[used].T, 0.01 * X.T, rcond=None)[0].T
    np.testing.assert_allclose(small[:, used], ls, atol=1e-6)


@pytest.mark.parametrize("relative", [True, False])
def test_lasso_codes_satisfy_the_lasso_optimality_conditions(relative):
    rng = np.random.default_rng(1)
    D = rng.standard_normal((10, 15))
    D /= np.linalg.norm(D, axis=0)
    Z = rng.standard_normal((10, 6))
    Z[:, 4] = 0
    S, rhos = lasso_codes(D, Z, 0.3, relative, tol=1e-10)
    if relative:  # SLEP rFlag = 1: rho_i = rho * ||D' z_i||_inf
        np.testing.assert_allclose(rhos, 0.3 * np.abs(D.T @ Z).max(0))
    else:
        np.testing.assert_allclose(rhos, 0.3)
    assert np.all(S[:, 4] == 0)
    for i in range(6):
        g = D.T @ (Z[:, i] - D @ S[:, i])  # subgradient condition of 1/2||z - Ds||^2 + rho ||s||_1
        on = S[:, i] != 0
        assert np.all(np.abs(g) <= rhos[i] + 1e-6)
        np.testing.assert_allclose(g[on], rhos[i] * np.sign(S[on, i]), atol=1e-6)


def test_absolute_rho_objective_never_rises(pairs):
    model = LSSH(6, atoms=24, iterations=8, rho_mode="absolute", rho=0.05, lasso_tol=1e-9).fit(pairs)
    h = np.asarray(model.history)
    assert len(h) == 8 and h[-1] < h[0]
    assert np.all(np.diff(h) <= 1e-6 * h[0]), h
    # the recorded objective is the definition evaluated at the final blocks
    P = model.params
    X = model._image_input(pairs.image_features).T
    T = pairs.text_features.T / np.maximum(np.linalg.norm(pairs.text_features, axis=1), 1e-300)
    S, Y = model.sparse_codes, model.latent
    J = 0.5 * np.sum((X - P["B"] @ S) ** 2) + 0.05 * np.abs(S).sum() + 0.5 * 0.2 * np.sum((Y - P["R"] @ S) ** 2) + 0.5 * 0.05 * np.sum((T - P["A"] @ Y) ** 2)
    assert J == pytest.approx(h[-1], rel=1e-9)
    for M in (P["B"], P["R"], P["A"]):
        assert np.all(np.linalg.norm(M, axis=0) <= 1 + 1e-9)


def test_coding_follows_the_latent_model(pairs):
    model = LSSH(6, atoms=24, iterations=3).fit(pairs)
    P, h = model.params, model.hparams
    T = pairs.text_features[:5].astype(np.float64)
    t = T / np.linalg.norm(T, axis=1, keepdims=True)
    y = np.linalg.solve(P["A"].T @ P["A"] + (h["lam"] / h["mu"]) * np.eye(6), P["A"].T @ t.T).T
    np.testing.assert_allclose(model.project(T, "text"), y, rtol=1e-9, atol=1e-12)
    codes = model.encode(pairs.text_features, "text")
    # thresholds are the training means -> every bit takes both values on the training set
    assert np.all(np.abs(codes.mean(0)) < 1)
    unified = model.encode_unified(pairs)
    assert unified.shape == (160, 6) and unified.dtype == np.int8
    with pytest.raises(DataError, match="pairs"):
        model.encode_unified(SimpleNamespace(image_features=pairs.image_features[:3], text_features=pairs.text_features[:4]))


def test_bmc_compat_thresholds_at_zero(pairs):
    model = LSSH(6, atoms=24, iterations=3, bmc_compat=True).fit(pairs)
    assert np.all(model.params["threshold_text"] == 0) and np.all(model.params["threshold_image"] == 0)
    default = LSSH(6, atoms=24, iterations=3).fit(pairs)
    assert not np.all(default.params["threshold_text"] == 0)
    np.testing.assert_array_equal(
        model.encode(pairs.text_features, "text"), np.where(model.project(pairs.text_features, "text") >= 0, 1, -1)
    )


def test_hyper_parameter_and_size_errors(pairs):
    with pytest.raises(CmhashError, match="relative rho"):
        LSSH(8, rho=1.0)
    with pytest.raises(CmhashError, match="rho_mode"):
        LSSH(8, rho_mode="ratio")
    with pytest.raises(DataError, match="PCA"):
        LSSH(21, atoms=8, iterations=1).fit(pairs)
    model = LSSH(4, atoms=8, iterations=1, max_train=100).fit(pairs)
    assert model.fit_info == {"pairs": 160, "subsampled_to": 100}
