"""UDCMH's whole-training-set step against brute-force references on tiny problems."""

import itertools

import numpy as np
import pytest

from cmhash.methods.udcmh_solver import (
    build_affinity,
    fused_similarity_rows,
    laplacian,
    objective,
    signed_knn_graph,
    update_codes,
    update_factors,
)


def test_signed_knn_hand_checked():
    s = np.array(
        [
            [1.0, 0.9, 0.1, -0.5],
            [0.9, 1.0, 0.2, -0.1],
            [0.1, 0.2, 1.0, 0.3],
            [-0.5, -0.1, 0.3, 1.0],
        ]
    )
    w = signed_knn_graph(s, k_near=1, k_far=1).toarray()
    # item 0: nearest 1, farthest 3; item 1: nearest 0, farthest 3; item 2: nearest 3, farthest 0;
    # item 3: nearest 2, farthest 0; W = (W0 + W0^T) / 2
    w0 = np.zeros((4, 4))
    for i, (near, far) in enumerate([(1, 3), (0, 3), (3, 0), (2, 0)]):
        w0[i, near], w0[i, far] = 1, -1
    assert np.array_equal(w, (w0 + w0.T) / 2)
    assert np.all(np.diag(w) == 0)


def test_laplacian_quadratic_form_is_half_weighted_pair_distances():
    rng = np.random.default_rng(0)
    s = rng.random((7, 7))
    s = (s + s.T) / 2
    w = signed_knn_graph(s, 2, 2)
    lap = laplacian(w)
    b = np.sign(rng.standard_normal((3, 7)))
    wd = w.toarray()
    want = 0.5 * sum(wd[i, j] * np.sum((b[:, i] - b[:, j]) ** 2) for i in range(7) for j in range(7))
    assert np.sum(b * (lap @ b.T).T) == pytest.approx(want)


def test_build_affinity_chunks_match_full_matrix():
    rng = np.random.default_rng(1)
    img, txt = rng.random((23, 5)), rng.random((23, 4))
    w_chunked = build_affinity(img, txt, beta=0.7, k_near=3, k_far=2, chunk=5).toarray()
    ni = img / np.linalg.norm(img, axis=1, keepdims=True)
    nt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    s = fused_similarity_rows(ni, nt, slice(0, 23), 0.7)
    assert np.allclose(s, 0.7 * (2 * ni @ ni.T - 1) + 0.3 * (2 * nt @ nt.T - 1))
    assert np.array_equal(w_chunked, signed_knn_graph(s, 3, 2).toarray())


def test_update_factors_is_the_regularised_least_squares_minimiser():
    rng = np.random.default_rng(2)
    f, b = rng.standard_normal((5, 30)), np.sign(rng.standard_normal((4, 30)))
    u = update_factors(f, b, reg=0.3)
    grad = -2 * (f - u @ b) @ b.T + 2 * 0.3 * u  # d/dU of ||F - UB||^2 + reg ||U||^2
    assert np.allclose(grad, 0, atol=1e-9)


def _problem(seed, n=6, k=2):
    rng = np.random.default_rng(seed)
    feats = [rng.standard_normal((3, n)), rng.standard_normal((4, n))]
    b0 = np.sign(rng.standard_normal((k, n)))
    factors = [update_factors(f, b0, 0.1) for f in feats]
    relaxed = [np.tanh(rng.standard_normal((k, n))) for _ in range(2)]
    s = rng.random((n, n))
    lap = laplacian(signed_knn_graph((s + s.T) / 2, 2, 1))
    return feats, factors, relaxed, b0, lap


def test_update_codes_without_laplacian_reaches_the_brute_force_bit_optimum():
    feats, factors, relaxed, b0, lap = _problem(3)
    b = update_codes(b0, feats, factors, [0.5, 0.5], relaxed, beta=1.0, gamma=0.0, lap=lap, sweeps=1, inner=1)
    # after updating bit 0 then bit 1, bit 1 is optimal given bit 0 (exhaustive over 2^6 rows)
    def obj(bb):
        return objective(bb, feats, factors, [0.5, 0.5], relaxed, 1.0, 0.0, 0.1, lap)

    best = min(itertools.product([-1.0, 1.0], repeat=6), key=lambda row: obj(np.vstack([b[0], row])))
    assert obj(b) == pytest.approx(obj(np.vstack([b[0], best])))


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_update_codes_never_increases_the_objective(seed):
    feats, factors, relaxed, b0, lap = _problem(seed, n=8, k=3)
    args = (feats, factors, [1.0, 0.5], relaxed)
    before = objective(b0, *args, 0.7, 2.0, 0.1, lap)
    b = update_codes(b0, *args, beta=0.7, gamma=2.0, lap=lap, sweeps=3)
    after = objective(b, *args, 0.7, 2.0, 0.1, lap)
    assert after <= before + 1e-9
    assert set(np.unique(b)) <= {-1.0, 1.0}


def test_laplacian_term_groups_neighbours():
    # two clear clusters; random relaxed codes carry no signal, the graph must split the clusters
    rng = np.random.default_rng(7)
    centres = np.array([[1.0, 0, 0, 0], [0, 0, 0, 1.0]])
    x = np.vstack([centres[0] + 0.05 * rng.random((10, 4)), centres[1] + 0.05 * rng.random((10, 4))])
    w = build_affinity(x, x, beta=0.5, k_near=4, k_far=4)
    lap = laplacian(w)
    b0 = np.sign(rng.standard_normal((1, 20)))
    zero = [np.zeros((1, 20))]
    b = update_codes(b0, [], [], [], zero, beta=0.0, gamma=1.0, lap=lap, sweeps=5, inner=10)
    assert len(set(b[0, :10])) == 1 and len(set(b[0, 10:])) == 1 and b[0, 0] != b[0, 10]
