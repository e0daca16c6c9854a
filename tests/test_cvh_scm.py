"""CVH and SCM against plain reference computations of their defining equations."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cmhash.errors import CmhashError, DataError
from cmhash.methods.cvh import CVH
from cmhash.methods.scm import SCM, normalised_labels, semantic_cross


@pytest.fixture(scope="module")
def pairs():
    """Correlated image/text features sharing a latent factor, with multi-hot labels."""
    rng = np.random.default_rng(7)
    n = 300
    z = rng.standard_normal((n, 4))
    X = z @ rng.standard_normal((4, 12)) + 0.5 * rng.standard_normal((n, 12)) + 3.0  # offset: centring matters
    Y = z @ rng.standard_normal((4, 9)) + 0.5 * rng.standard_normal((n, 9))
    L = (z[:, :3] + 0.3 * rng.standard_normal((n, 3)) > 0.4).astype(np.int8)
    return SimpleNamespace(image_features=X, text_features=Y, labels=L)


def inv_sqrt(C):
    w, V = np.linalg.eigh(C)
    return V @ np.diag(w**-0.5) @ V.T


def covs(X, Y, reg):
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    n = len(X)
    Cxx, Cyy = Xc.T @ Xc / n, Yc.T @ Yc / n
    Cxx += reg * np.trace(Cxx) / len(Cxx) * np.eye(len(Cxx))
    Cyy += reg * np.trace(Cyy) / len(Cyy) * np.eye(len(Cyy))
    return Xc, Yc, Cxx, Cyy, Xc.T @ Yc / n


def test_cvh_solves_its_generalised_eigenproblem(pairs):
    model = CVH(6, reg=1e-3).fit(pairs)
    X, Y, Cxx, Cyy, Cxy = covs(pairs.image_features, pairs.text_features, 1e-3)
    A, B, lam = model.projections["image"], model.projections["text"], model.eigenvalues
    M = Cxy @ np.linalg.solve(Cyy, Cxy.T)
    np.testing.assert_allclose(M @ A, Cxx @ A * lam, atol=1e-10)  # M a = lam Cxx a
    np.testing.assert_allclose(A.T @ Cxx @ A, np.eye(6), atol=1e-10)  # Cxx-orthonormal
    np.testing.assert_allclose(B.T @ Cyy @ B, np.eye(6), atol=1e-8)
    assert np.all(np.diff(lam) <= 1e-12)
    # the eigenvalues are the squared canonical correlations (SVD of the whitened cross-covariance)
    rho = np.linalg.svd(inv_sqrt(Cxx) @ Cxy @ inv_sqrt(Cyy), compute_uv=False)
    np.testing.assert_allclose(np.sqrt(lam), rho[:6], rtol=1e-9)
    # paired projections reach that correlation
    np.testing.assert_allclose(np.diag(A.T @ Cxy @ B), rho[:6], rtol=1e-8)
    np.testing.assert_allclose(model.means["image"], pairs.image_features.mean(0))
    assert np.all(model.thresholds["image"] == 0)


def test_cvh_bmc_compat_is_the_official_variant(pairs):
    """No centring, unnormalised X'X + reg I, and Cxy Cyy Cyx on the left (BMC-SDNU CVHtrainCCA.m)."""
    model = CVH(5, bmc_compat=True).fit(pairs)
    assert model.hparams["center"] is False and model.hparams["reg_relative"] is False
    X, Y = pairs.image_features, pairs.text_features
    Cxx, Cyy, Cxy = X.T @ X + 1e-4 * np.eye(12), Y.T @ Y + 1e-4 * np.eye(9), X.T @ Y
    A, lam = model.projections["image"], model.eigenvalues
    np.testing.assert_allclose(Cxy @ Cyy @ Cxy.T @ A, Cxx @ A * lam, rtol=1e-7, atol=1e-6 * lam[0])
    B_ref = np.linalg.solve(Cyy, Cxy.T) @ A / np.sqrt(lam)
    np.testing.assert_allclose(model.projections["text"], B_ref, rtol=1e-7)
    assert np.all(model.means["image"] == 0)
    default = CVH(5).fit(pairs)
    assert not np.array_equal(default.encode(X, "image"), model.encode(X, "image"))


def test_cvh_needs_enough_image_dimensions(pairs):
    with pytest.raises(DataError, match="image dimensions"):
        CVH(13).fit(pairs)
    with pytest.raises(CmhashError, match="reg"):
        CVH(8, reg=0)


def test_semantic_cross_equals_the_explicit_product(pairs):
    Lh = normalised_labels(pairs.labels, len(pairs.labels))
    S = 2 * Lh @ Lh.T - 1
    X, Y = pairs.image_features, pairs.text_features
    np.testing.assert_allclose(semantic_cross(X, Y, Lh), X.T @ S @ Y, rtol=1e-10)
    # equal label sets -> +1, disjoint -> -1, unlabelled rows similar to nobody
    labels = np.array([[1, 0, 1], [1, 0, 1], [0, 1, 0], [0, 0, 0]])
    Lh = normalised_labels(labels, 4)
    S = 2 * Lh @ Lh.T - 1
    assert S[0, 1] == pytest.approx(1) and S[0, 2] == pytest.approx(-1) and S[3, 3] == pytest.approx(-1)
    # class indices are one-hot labels
    np.testing.assert_array_equal(normalised_labels(np.array([2, 0, 2]), 3), np.eye(3)[[2, 0, 2]])


def test_scm_orth_solves_its_eigenproblem(pairs):
    model = SCM(3, variant="orth", reg=1e-3).fit(pairs)
    X, Y, Cxx, Cyy, _ = covs(pairs.image_features, pairs.text_features, 1e-3)
    Lh = normalised_labels(pairs.labels, len(X))
    C = X.T @ (2 * Lh @ Lh.T - 1) @ Y / len(X)
    A, B = model.projections["image"], model.projections["text"]
    lam = model.values**2
    np.testing.assert_allclose(C @ np.linalg.solve(Cyy, C.T) @ A, Cxx @ A * lam, atol=1e-9 * lam[0])
    np.testing.assert_allclose(A.T @ Cxx @ A, np.eye(3), atol=1e-10)
    sv = np.linalg.svd(inv_sqrt(Cxx) @ C @ inv_sqrt(Cyy), compute_uv=False)
    np.testing.assert_allclose(model.values, sv[:3], rtol=1e-8)
    np.testing.assert_allclose(np.diag(A.T @ C @ B), sv[:3], rtol=1e-7)


def test_scm_seq_follows_the_residual_recursion(pairs):
    """Each bit is the top pair of X' R_{t-1} Y under the covariance constraints, with
    R_t = R_{t-1} - sgn(X a_t) sgn(Y b_t)' and R_0 = bits * S (explicit n x n reference)."""
    bits = 4
    model = SCM(bits, reg=1e-3).fit(pairs)
    X, Y, Cxx, Cyy, _ = covs(pairs.image_features, pairs.text_features, 1e-3)
    n = len(X)
    Lh = normalised_labels(pairs.labels, n)
    R = bits * (2 * Lh @ Lh.T - 1)
    Wx, Wy = inv_sqrt(Cxx), inv_sqrt(Cyy)
    for t in range(bits):
        a, b = model.projections["image"][:, t], model.projections["text"][:, t]
        C = X.T @ R @ Y / n
        sv = np.linalg.svd(Wx @ C @ Wy, compute_uv=False)
        assert a @ Cxx @ a == pytest.approx(1, rel=1e-8) and b @ Cyy @ b == pytest.approx(1, rel=1e-8)
        assert a @ C @ b == pytest.approx(sv[0], rel=1e-6)  # the maximum of the relaxed bit objective
        assert model.values[t] == pytest.approx(sv[0], rel=1e-6)
        R = R - np.outer(np.where(X @ a >= 0, 1, -1), np.where(Y @ b >= 0, 1, -1))
    # the first bit is SCM-Orth's first direction (same problem, scaled by bits)
    orth = SCM(1, variant="orth", reg=1e-3).fit(pairs)
    a0, o0 = model.projections["image"][:, 0], orth.projections["image"][:, 0]
    assert abs(a0 @ Cxx @ o0) == pytest.approx(1, rel=1e-6)


def test_scm_uses_labels_and_refuses_unlabelled_data(pairs):
    with pytest.raises(DataError, match="needs the training labels"):
        SCM(4).fit(SimpleNamespace(image_features=pairs.image_features, text_features=pairs.text_features, labels=None))
    with pytest.raises(DataError, match="label rows for 300 training pairs"):
        SCM(4).fit(SimpleNamespace(image_features=pairs.image_features, text_features=pairs.text_features, labels=pairs.labels[:5]))
    with pytest.raises(CmhashError, match="variant"):
        SCM(4, variant="fast")
    shuffled = SimpleNamespace(**{**vars(pairs), "labels": pairs.labels[::-1].copy()})
    a = SCM(4).fit(pairs).encode(pairs.image_features, "image")
    b = SCM(4).fit(shuffled).encode(pairs.image_features, "image")
    assert not np.array_equal(a, b)
