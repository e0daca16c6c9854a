"""SCM: Semantic Correlation Maximization (Zhang & Li, AAAI 2014), supervised, closed form.

SCM uses the training labels: with ``L^`` the row-normalised label matrix, the semantic
similarity is ``S = 2 L^ L^' - 1`` (cosine of label vectors mapped to [-1, 1]; +1 for equal
label sets, -1 for disjoint ones). It seeks linear hash functions whose cross-modal code inner
products reconstruct ``bits * S``. Relaxed, with X, Y centred (rows = samples), ``Cxx = X'X/n + rI``,
``Cyy = Y'Y/n + rI`` and ``C = X' S Y / n`` (computed as ``2 (X'L^)(L^'Y) - (X'1)(1'Y)``, never
forming the n x n matrix S):

* ``variant="orth"`` (SCM-Orth): maximise ``tr(A' C B)`` s.t. ``A' Cxx A = I``, ``B' Cyy B = I``,
  i.e. the generalised eigenproblem ``C Cyy^-1 C' a = lam Cxx a`` (``scipy.linalg.eigh``), as CCA
  with C in place of the cross-covariance. C has rank at most the number of labels, so bits past
  it carry no semantic signal.
* ``variant="seq"`` (SCM-Seq, default; the stronger one in the paper): bits one at a time. With
  ``R_0 = bits * S``, bit t maximises ``a' X' R_{t-1} Y b / n`` under the same constraints (the top
  singular pair of ``Lx^-1 C_t Ly^-T``, ``Lx Lx' = Cxx``: ``scipy.sparse.linalg.svds``), then the
  residual drops the bit's code product, ``R_t = R_{t-1} - sgn(X a) sgn(Y b)'``. Only
  ``C_t = X' R_t Y / n`` is kept, updated by a rank-one term, so memory is O(d_x d_y), not O(n^2).

Codes are ``sign((x - mean_x) A)`` and ``sign((y - mean_y) B)``.

Reconstruction notes (no official code was read; the paper is not in ../shared): the residual
with signed codes and the per-bit constraint ``a' Cxx a = 1`` follow the paper's description as
recalled; the ridge ``r = reg * mean(diag(Cxx))`` is ours (the paper regularises implicitly).
Items without any label get an all-zero row of ``L^`` (similar to nobody: S = -1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cmhash.errors import CmhashError, DataError
from cmhash.methods import METHODS
from cmhash.methods.linear import LinearShallowMethod, paired_projections, regularised_cov

VARIANTS = ("seq", "orth")


def normalised_labels(labels, n: int) -> np.ndarray:
    """Row-normalised label matrix L^ (n x c) from multi-hot labels, or class indices (n,)."""
    if labels is None:
        raise DataError("scm: the training set has no labels; SCM is supervised (use a labelled dataset)")
    L = np.asarray(labels)
    if L.ndim == 1:  # class indices -> one-hot
        if L.dtype.kind not in "iu" or (L.size and L.min() < 0):
            raise DataError("scm: 1-D labels must be non-negative class indices")
        L = np.eye(int(L.max()) + 1 if L.size else 0)[L]
    if L.ndim != 2 or L.shape[0] != n:
        raise DataError(f"scm: labels must have one row per training pair ({n}), got shape {L.shape}")
    L = L.astype(np.float64)
    if not np.isfinite(L).all() or (L < 0).any():
        row = int(np.argwhere(~np.isfinite(L) | (L < 0))[0][0])
        raise DataError(f"scm: label row {row} has a negative or non-finite entry")
    norms = np.linalg.norm(L, axis=1, keepdims=True)
    return np.divide(L, norms, out=np.zeros_like(L), where=norms > 0)


def semantic_cross(X: np.ndarray, Y: np.ndarray, Lh: np.ndarray) -> np.ndarray:
    """``X' S Y`` with ``S = 2 L^ L^' - 1``, without forming S."""
    return 2.0 * (X.T @ Lh) @ (Lh.T @ Y) - np.outer(X.sum(axis=0), Y.sum(axis=0))


def _top_pair(K: np.ndarray, v0: np.ndarray):
    """Top singular triplet of K, deterministic (fixed start vector, sign: largest |u_i| > 0)."""
    from scipy.sparse.linalg import svds

    if min(K.shape) <= 2:  # ARPACK needs k < min(shape); tiny problems go dense
        U, s, Vt = np.linalg.svd(K)
        u, sig, v = U[:, 0], s[0], Vt[0]
    else:
        u, s, vt = svds(K, k=1, v0=v0, tol=1e-10, maxiter=10000)
        u, sig, v = u[:, 0], s[0], vt[0]
    flip = 1.0 if u[np.argmax(np.abs(u))] >= 0 else -1.0
    return u * flip, float(sig), v * flip


@METHODS.register("scm")
class SCM(LinearShallowMethod):
    """Semantic Correlation Maximization; see the module docstring.

    Hyper-parameters: ``variant`` ("seq" or "orth"), ``reg`` relative ridge on both covariances,
    ``center`` (subtract training means; default).
    """

    name = "scm"
    uses_labels = True
    DEFAULTS = {"variant": "seq", "reg": 1e-4, "center": True}

    def check_hparams(self, h: dict[str, Any]) -> None:
        if h["variant"] not in VARIANTS:
            raise CmhashError(f"scm: variant must be one of {', '.join(VARIANTS)}, got {h['variant']!r}")
        self.positive(h, "reg")
        h.update(variant=str(h["variant"]), reg=float(h["reg"]), center=bool(h["center"]))

    def fit_features(self, feats: dict[str, np.ndarray], labels=None, progress=None) -> None:
        h = self.hparams
        n = feats["image"].shape[0]
        Lh = normalised_labels(labels, n)
        X, Y = self.centred(feats["image"], "image"), self.centred(feats["text"], "text")
        Cxx, Cyy = regularised_cov(X, h["reg"], True), regularised_cov(Y, h["reg"], True)
        C = semantic_cross(X, Y, Lh) / n
        if h["variant"] == "orth":
            if self.bits > X.shape[1]:
                raise DataError(f"scm: {self.bits} bits need at least {self.bits} image dimensions, the features have {X.shape[1]}")
            A, B, lam = paired_projections(Cxx, Cyy, C, self.bits, "scm")
            values = np.sqrt(np.maximum(lam, 0.0))
        else:
            A, B, values = self._sequential(X, Y, Cxx, Cyy, self.bits * C)
        self.arrays.update(P_image=A, P_text=B, threshold_image=np.zeros(self.bits), threshold_text=np.zeros(self.bits), values=values)

    @property
    def values(self) -> np.ndarray:
        """Per bit: the correlation ``a' C_t b`` reached (seq) or the singular value (orth)."""
        return self.arrays["values"]

    def _sequential(self, X, Y, Cxx, Cyy, C):
        from scipy.linalg import cho_factor, solve_triangular

        try:
            Lx = cho_factor(Cxx, lower=True, check_finite=False)[0]
            Ly = cho_factor(Cyy, lower=True, check_finite=False)[0]
        except np.linalg.LinAlgError:
            raise CmhashError("scm: a feature covariance is not positive definite; increase `reg`") from None
        Lx, Ly = np.tril(Lx), np.tril(Ly)
        n = X.shape[0]
        # K_t = Lx^-1 C_t Ly^-T, updated in place by the rank-one residual terms
        K = solve_triangular(Lx, solve_triangular(Ly, C.T, lower=True).T, lower=True)
        A = np.empty((X.shape[1], self.bits))
        B = np.empty((Y.shape[1], self.bits))
        values = np.empty(self.bits)
        v0 = np.ones(min(K.shape))
        for t in range(self.bits):
            u, sig, v = _top_pair(K, v0)
            a = solve_triangular(Lx.T, u, lower=False)
            b = solve_triangular(Ly.T, v, lower=False)
            A[:, t], B[:, t], values[t] = a, b, sig
            bx = np.where(X @ a >= 0, 1.0, -1.0)
            by = np.where(Y @ b >= 0, 1.0, -1.0)
            gx = solve_triangular(Lx, X.T @ bx, lower=True)
            gy = solve_triangular(Ly, Y.T @ by, lower=True)
            K -= np.outer(gx, gy) / n
        return A, B, values
