"""IMH against a literal transcription of the official closed form (methods-spec 7.2)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cmhash.methods.imh import IMH, knn_laplacian


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(11)
    n = 70
    z = rng.standard_normal((n, 3))
    X = z @ rng.standard_normal((3, 8)) + 0.3 * rng.standard_normal((n, 8)) + 2.0
    Y = z @ rng.standard_normal((3, 6)) + 0.3 * rng.standard_normal((n, 6))
    return SimpleNamespace(image_features=X, text_features=Y)


def dense_knn_laplacian(X, k):
    """Brute-force k-NN graph: binary, symmetrised (W + W')/2, L = D - W."""
    n = len(X)
    d = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    W = np.zeros((n, n))
    for i in range(n):
        W[i, np.argsort(d[i], kind="stable")[:k]] = 1
    W = (W + W.T) / 2
    return np.diag(W.sum(1)) - W


def reference_imh(X1, X2, bits, beta, lam, k, u):
    """The official formulas written out literally, dense, with U = u I."""
    n = len(X1)
    I = np.eye(n)
    A = [I - Xg @ np.linalg.solve(Xg.T @ Xg + beta * np.eye(Xg.shape[1]), Xg.T) for Xg in (X1, X2)]
    L1, L2 = dense_knn_laplacian(X1, k), dense_knn_laplacian(X2, k)
    U = u * I
    C2 = np.linalg.solve(A[1] + lam * L2 + U, U)
    D = A[0] + C2.T @ A[1] @ C2 + (I - C2).T @ U @ (I - C2) + lam * L1 + lam * C2.T @ L2 @ C2
    D = (D + D.T) / 2
    w, V = np.linalg.eigh(D)
    return w[:bits], V[:, :bits], C2, D


@pytest.mark.parametrize("u", [1e10, 30.0])
def test_matches_the_official_closed_form(pairs, u):
    """Same eigenvalues and code subspace as the literal formulas; at u = 30 the two relaxed codes
    differ, which checks the cancellation-free rewrite D = A1 + lam L1 + u (S + uI)^-1 S."""
    bits = 4
    model = IMH(bits, beta=1.0, lam=0.5, k=2, u=u, normalize=False).fit(pairs)
    X1 = pairs.image_features - pairs.image_features.mean(0)
    X2 = pairs.text_features - pairs.text_features.mean(0)
    w, F1_ref, C2, D = reference_imh(X1, X2, bits, 1.0, 0.5, 2, u)
    np.testing.assert_allclose(model.eigenvalues, w, rtol=1e-7, atol=1e-9)
    F1, F2 = model.relaxed["image"], model.relaxed["text"]
    np.testing.assert_allclose(F1 @ F1.T, F1_ref @ F1_ref.T, atol=1e-7)  # same subspace (eigenvalues are simple)
    np.testing.assert_allclose(F1.T @ F1, np.eye(bits), atol=1e-10)  # F'F = I
    np.testing.assert_allclose(D @ F1, F1 * model.eigenvalues, atol=1e-7 * max(1.0, abs(D).max()))
    np.testing.assert_allclose(F2, C2 @ F1, atol=1e-8)
    W1_ref = np.linalg.solve(X1.T @ X1 + np.eye(8), X1.T @ F1)
    np.testing.assert_allclose(model.projections["image"], W1_ref, atol=1e-9)
    if u < 1e3:
        assert np.abs(F1 - F2).max() > 1e-3


def test_knn_graph_is_symmetric_binary_and_excludes_self():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    X[5] = X[9]  # a duplicate: its own index need not come first among distance-0 neighbours
    L = knn_laplacian(X, 1).toarray()
    np.testing.assert_allclose(L, L.T)
    np.testing.assert_allclose(L.sum(1), 0, atol=1e-12)
    W = -L.copy()
    np.fill_diagonal(W, 0)
    assert set(np.unique(W)) <= {0.0, 0.5, 1.0}
    assert np.all((W > 0).sum(1) >= 1)
    assert W[5, 9] > 0 and W[9, 5] > 0
    # equal to the brute-force graph away from the tie
    ref = dense_knn_laplacian(np.delete(X, 5, axis=0), 1)
    ours = knn_laplacian(np.delete(X, 5, axis=0), 1).toarray()
    np.testing.assert_allclose(ours, ref)


def test_training_medians_make_codes_independent_of_the_batch(pairs):
    model = IMH(4).fit(pairs)
    X = pairs.image_features
    batch = model.encode(X, "image")
    one = model.encode(X[3:4], "image")
    np.testing.assert_array_equal(one[0], batch[3])
    # training codes are balanced by the median
    assert np.all(np.abs(batch.astype(float).mean(0)) <= 2 / len(X) + 1e-12)


def test_bmc_compat_thresholds_each_set_at_its_own_median(pairs):
    """IMH_compress.m: the code of an item depends on the set it is encoded with."""
    model = IMH(4, bmc_compat=True).fit(pairs)
    X = pairs.image_features
    np.testing.assert_array_equal(model.encode(X[3:4], "image"), np.ones((1, 4), np.int8))
    half = model.encode(X[:20] + 5.0, "image")  # shifted set: own median -> still balanced
    assert np.all(np.abs(half.astype(float).mean(0)) <= 0.1)
    default = IMH(4).fit(pairs).encode(X[:20] + 5.0, "image")
    assert not np.array_equal(default, half)


def test_normalize_makes_beta_scale_free(pairs):
    scaled = SimpleNamespace(image_features=pairs.image_features * 1e-3, text_features=pairs.text_features)
    a = IMH(4).fit(pairs).encode(pairs.image_features, "image")
    b = IMH(4).fit(scaled).encode(scaled.image_features, "image")
    np.testing.assert_array_equal(a, b)
    # without it the official absolute beta weighs differently against the rescaled X'X
    raw_scaled, raw = IMH(4, normalize=False).fit(scaled), IMH(4, normalize=False).fit(pairs)
    assert not np.allclose(raw_scaled.eigenvalues, raw.eigenvalues, rtol=1e-3)


def test_max_train_subsamples(pairs):
    model = IMH(4, max_train=50, seed=1).fit(pairs)
    assert model.fit_info == {"pairs": 70, "subsampled_to": 50, "feature_rms": model.fit_info["feature_rms"]}
    assert model.relaxed["image"].shape == (50, 4)
