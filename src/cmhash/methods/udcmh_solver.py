"""The whole-training-set step of UDCMH (Wu et al., IJCAI 2018), as reconstructed in methods-spec 5.

No public UDCMH code exists and only the abstract is available, so the objective is a
reconstruction (documented in ``docs/udcmh.md``)::

    min  sum_m a_m ||F_m - U_m B||^2 + beta sum_m ||B - H_m||^2 + gamma tr(B L B^T) + nu sum_m ||U_m||^2
    s.t. B in {-1, +1}^(K x n)

with F_m (d_m x n) the features of modality m, H_m (K x n) the networks' relaxed codes, and
L = D - W the Laplacian of a signed neighbour graph: W_ij = +1 for the k nearest and -1 for the
k farthest neighbours of i ("preserves both nearest and farthest neighbours", the abstract).

Pieces (numpy/scipy; W is sparse, so memory is O(n k) apart from row chunks of the similarity):

* :func:`signed_knn_graph` / :func:`build_affinity`: W from a similarity matrix or from features;
* :func:`update_factors`: closed-form U_m;
* :func:`update_codes`: discrete cyclic coordinate descent on B, one bit (row) at a time;
* :func:`objective`: the value above, for tests and logs.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from cmhash.errors import CmhashError


def signed_knn_rows(s: np.ndarray, k_near: int, k_far: int, row_offset: int = 0):
    """(rows, cols, values) of W for the rows of the similarity block ``s`` (rows x n).

    Row r describes item ``row_offset + r``; the item itself is never its own neighbour.
    Nearest = largest similarity (+1), farthest = smallest (-1).
    """
    s = np.array(s, dtype=np.float64, copy=True)
    n_rows, n = s.shape
    self_cols = np.arange(n_rows) + int(row_offset)
    if np.any(self_cols >= n):
        raise CmhashError("signed_knn_rows: row_offset + rows exceeds the number of columns")
    rows_idx = np.arange(n_rows)
    k_near, k_far = int(k_near), int(k_far)
    if k_near + k_far > n - 1:
        raise CmhashError(f"UDCMH graph: k_near + k_far = {k_near + k_far} exceeds the other items ({n - 1})")
    rows, cols, vals = [], [], []
    if k_near:
        s_near = s.copy()
        s_near[rows_idx, self_cols] = -np.inf
        near = np.argpartition(-s_near, k_near - 1, axis=1)[:, :k_near]
        rows.append(np.repeat(rows_idx + row_offset, k_near))
        cols.append(near.ravel())
        vals.append(np.ones(near.size))
    if k_far:
        s_far = s.copy()
        s_far[rows_idx, self_cols] = np.inf
        far = np.argpartition(s_far, k_far - 1, axis=1)[:, :k_far]
        rows.append(np.repeat(rows_idx + row_offset, k_far))
        cols.append(far.ravel())
        vals.append(-np.ones(far.size))
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def signed_knn_graph(s: np.ndarray, k_near: int, k_far: int) -> sp.csr_matrix:
    """Symmetric W = (W0 + W0^T) / 2 of a full similarity matrix ``s`` (n x n)."""
    n = s.shape[0]
    r, c, v = signed_knn_rows(s, k_near, k_far)
    w0 = sp.csr_matrix((v, (r, c)), shape=(n, n))
    return ((w0 + w0.T) * 0.5).tocsr()


def fused_similarity_rows(image: np.ndarray, text: np.ndarray, rows: slice, beta: float) -> np.ndarray:
    """DJSRH-style ``beta (2 cos_I - 1) + (1 - beta)(2 cos_T - 1)`` for a block of rows (inputs row-normalised)."""
    return beta * (2.0 * image[rows] @ image.T - 1.0) + (1.0 - beta) * (2.0 * text[rows] @ text.T - 1.0)


def _l2_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def build_affinity(image: np.ndarray, text: np.ndarray, *, beta: float, k_near: int, k_far: int, chunk: int = 1024) -> sp.csr_matrix:
    """Signed kNN graph W of the whole training set on the fused cosine similarity, built in row chunks."""
    img, txt = _l2_rows(image), _l2_rows(text)
    n = img.shape[0]
    parts = [signed_knn_rows(fused_similarity_rows(img, txt, slice(s, min(s + chunk, n)), beta), k_near, k_far, s) for s in range(0, n, chunk)]
    r = np.concatenate([p[0] for p in parts])
    c = np.concatenate([p[1] for p in parts])
    v = np.concatenate([p[2] for p in parts])
    w0 = sp.csr_matrix((v, (r, c)), shape=(n, n))
    return ((w0 + w0.T) * 0.5).tocsr()


def laplacian(w: sp.spmatrix) -> sp.csr_matrix:
    """``L = D - W`` with ``D = diag(W 1)``; then ``tr(B L B^T) = 1/2 sum_ij W_ij ||b_i - b_j||^2``."""
    deg = np.asarray(w.sum(axis=1)).ravel()
    return (sp.diags(deg) - w).tocsr()


def update_factors(f: np.ndarray, b: np.ndarray, reg: float) -> np.ndarray:
    """Closed-form ``U = F B^T (B B^T + reg I)^-1`` (d x K) minimising ``||F - U B||^2 + reg ||U||^2``."""
    k = b.shape[0]
    gram = b @ b.T + float(reg) * np.eye(k)
    return np.linalg.solve(gram, b @ f.T).T  # gram is symmetric


def objective(b, features, factors, weights, relaxed, beta, gamma, nu, lap, rho: float = 0.0) -> float:
    """The UDCMH objective (module docstring) for codes ``b`` (K x n), plus ``rho ||B 1||^2 / n``."""
    val = rho * float(np.sum(b.sum(axis=1) ** 2)) / b.shape[1]
    for f, u, a in zip(features, factors, weights):
        val += a * float(np.sum((f - u @ b) ** 2)) + nu * float(np.sum(u**2))
    for h in relaxed:
        val += beta * float(np.sum((b - h) ** 2))
    val += gamma * float(np.sum(b * (lap @ b.T).T))
    return val


def update_codes(
    b: np.ndarray,
    features,
    factors,
    weights,
    relaxed,
    *,
    beta: float,
    gamma: float,
    lap: sp.spmatrix,
    sweeps: int = 1,
    inner: int = 3,
    rho: float = 0.0,
) -> np.ndarray:
    """Discrete cyclic coordinate descent on B (K x n), one bit row at a time; returns the new codes.

    With ``Q = sum_m a_m U_m^T F_m + beta sum_m H_m`` and ``A = sum_m a_m U_m^T U_m``, the objective in
    bit row k (others fixed) is ``f(b) = 2 b.(A_k,-k B_-k - q_k) + gamma b L b^T`` (+ constants).
    Without the Laplacian the minimiser is ``sign(q_k - A_k,-k B_-k)``; with it there is no closed
    form, so each inner step flips the entries whose sign disagrees with the negative gradient at
    the current row (the Laplacian linearised), largest gradients first, halving the number of
    flips until f decreases (backtracking): the objective never rises.
    ``rho > 0`` adds the bit-balance penalty ``rho (b.1)^2 / n`` to each row (a cmhash addition:
    without it the alternation drifts towards constant bits).
    """
    b = np.array(b, dtype=np.float64, copy=True)
    k_bits = b.shape[0]
    q = np.zeros_like(b)
    a_mat = np.zeros((k_bits, k_bits))
    for f, u, a in zip(features, factors, weights):
        q += a * (u.T @ f)
        a_mat += a * (u.T @ u)
    for h in relaxed:
        q += beta * h

    n = b.shape[1]

    def f_row(k: int, row: np.ndarray, lin: np.ndarray) -> float:
        return 2.0 * float(row @ lin) + gamma * float(row @ (lap @ row)) + rho * float(row.sum()) ** 2 / n

    for _ in range(int(sweeps)):
        for k in range(k_bits):
            others = a_mat[k] @ b - a_mat[k, k] * b[k]  # A_k,-k B_-k
            lin = others - q[k]
            cur = b[k]
            best = f_row(k, cur, lin)
            for _ in range(int(inner)):
                grad = lin + gamma * (lap @ cur) + rho * float(cur.sum()) / n
                wrong = np.flatnonzero(grad * cur > 0)  # entries whose sign the gradient wants flipped
                if wrong.size == 0:
                    break
                order = wrong[np.argsort(-np.abs(grad[wrong]))]
                take, moved = order.size, False
                while take >= 1:  # backtracking on the number of flips, largest gradients first
                    cand = cur.copy()
                    cand[order[:take]] *= -1.0
                    val = f_row(k, cand, lin)
                    if val < best - 1e-12:
                        cur, best, moved = cand, val, True
                        break
                    take //= 2
                if not moved:
                    break
            b[k] = cur
    return b


__all__ = [
    "build_affinity",
    "fused_similarity_rows",
    "laplacian",
    "objective",
    "signed_knn_graph",
    "signed_knn_rows",
    "update_codes",
    "update_factors",
]
