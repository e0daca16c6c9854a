"""IMH: Inter-Media Hashing (Song, Yang, Yang, Huang, Shen, SIGMOD 2013), unsupervised, closed form.

Objective (methods-spec 7.2), per modality g with features X_g (n x d_g, centred), a k-NN graph
Laplacian L_g and a ridge regression W_g from features to the relaxed codes F_g (n x bits):

    sum_g lam tr(F_g' L_g F_g) + u ||F_1 - F_2||^2 + sum_g (||X_g W_g - F_g||^2 + beta ||W_g||^2),
    s.t. F_1'F_1 = I

With every training point paired (our case), the official code's closed form is, with
``M_g = X_g'X_g + beta I``, ``A_g = I - X_g M_g^-1 X_g'`` (the regression residual operator, n x n),
``S = A_2 + lam L_2``, ``T = S + u I`` and ``C_2 = u T^-1``:

    D = A_1 + lam L_1 + C_2' S C_2 + u (I - C_2)'(I - C_2)      (= A_1 + lam L_1 + u S T^-1,
                                                                  since S and T commute)
    F_1 = the eigenvectors of D with the ``bits`` smallest eigenvalues, F_2 = C_2 F_1,
    W_g = M_g^-1 X_g' F_g.

Numerical care: ``u = 1e10`` (the official value) makes ``C_2`` and ``I - C_2`` cancellation-prone,
so we form ``Z = T^-1 S`` by one linear solve (``scipy.linalg.solve``, assume_a="pos") and use
``D = A_1 + lam L_1 + u Z`` and ``F_2 = F_1 - Z F_1`` (both exact rewrites, no difference of two
numbers of size u). The eigenvectors come from ``scipy.linalg.eigh`` restricted to the
``bits`` smallest. Graphs: ``k`` nearest neighbours (Euclidean, ``sklearn.neighbors``; k = 1 in
the official demo), binary weights, symmetrised ``(W + W')/2``, ``L = D - W``; the graph is kept
sparse until it is added to the dense matrix.

Feature scale (our fix): the ridge ``beta`` and the graph weight compete with ``X_g'X_g``, so
the official absolute ``beta = 1`` means different things for different encoders. It was set for
CNN fc7 features (entries of order 1); on the official Wiki features (row-normalised SIFT BoW,
mean square 2.8e-4) it swamps ``X'X`` and IMH falls below random codes (Wiki 32 bits, seed 0:
i2t .126 / t2i .169, random ~.17). ``normalize=True`` (default) divides each centred modality by
its training RMS first, which leaves fc7-scale features as they were and gives .201 / .247 there.
``normalize=False`` is the official behaviour.

Codes: ``sign((x - mean) W_g - median_g)``, with the per-bit median of the training projections
stored at fit time, so a single query is coded the same as in a batch. ``bmc_compat=True``
reproduces the official ``IMH_compress.m``: each encoded set is thresholded at the median of its
*own* projections (the code of an item then depends on what it is encoded with; one item alone
gets all +1).

Cost: several dense n x n float64 matrices (O(n^2) memory: about 4 * 8 n^2 bytes, 0.8 GB at
n = 5,000) and O(n^3) time for the solve and the eigen-decomposition. ``max_train`` (default
5,000, the DJSRH training size) caps n: larger training sets are subsampled (seeded) with a
warning in ``fit_info``; ``benchmarks/fit_scaling_bench.py`` shows the growth.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cmhash.errors import CmhashError, DataError
from cmhash.methods import METHODS
from cmhash.methods.linear import LinearShallowMethod


def knn_laplacian(X: np.ndarray, k: int):
    """Sparse Laplacian ``D - W`` of the symmetrised binary k-NN graph (self excluded)."""
    from scipy import sparse
    from sklearn.neighbors import NearestNeighbors

    n = X.shape[0]
    k = min(k, n - 1)
    nn = NearestNeighbors(n_neighbors=k + 1).fit(X)
    idx = nn.kneighbors(X, return_distance=False)
    rows = np.arange(n)
    cols = np.empty((n, k), dtype=np.int64)
    for i in range(n):  # drop self; with duplicates the item itself may not come first
        others = idx[i][idx[i] != i]
        cols[i] = others[:k]
    W = sparse.csr_matrix((np.ones(n * k), (np.repeat(rows, k), cols.ravel())), shape=(n, n))
    W = (W + W.T) * 0.5
    deg = np.asarray(W.sum(axis=1)).ravel()
    return sparse.diags(deg) - W


def add_sparse(D: np.ndarray, L, weight: float) -> None:
    """``D += weight * L`` in place for a dense D and a scipy sparse L (no dense copy of L)."""
    L = L.tocoo()
    np.add.at(D, (L.row, L.col), weight * L.data)


def residual_operator(X: np.ndarray, beta: float):
    """(A, M^-1 X'): ``A = I - X (X'X + beta I)^-1 X'`` (dense n x n) and the ridge map (d x n)."""
    from scipy.linalg import cho_factor, cho_solve

    M = X.T @ X
    M[np.diag_indices_from(M)] += beta
    G = cho_solve(cho_factor(M, lower=True, check_finite=False), X.T, check_finite=False)
    A = -(X @ G)
    A[np.diag_indices_from(A)] += 1.0
    return (A + A.T) * 0.5, G


@METHODS.register("imh")
class IMH(LinearShallowMethod):
    """Inter-Media Hashing; see the module docstring.

    Hyper-parameters (defaults = the official demo): ``beta`` ridge of the regressions, ``lam``
    weight of the graph terms, ``k`` neighbours of the graphs, ``u`` pairing weight (1e10),
    ``center`` (subtract training means), ``normalize`` (divide each modality by its training RMS
    so ``beta`` means the same for any feature scale), ``max_train`` (cap on the training pairs, O(n^2)
    memory), ``seed`` (of that subsample), ``bmc_compat`` (per-set medians at encoding).
    """

    name = "imh"
    DEFAULTS = {
        "beta": 1.0,
        "lam": 1.0,
        "k": 1,
        "u": 1e10,
        "center": True,
        "normalize": True,
        "max_train": 5000,
        "seed": 0,
        "bmc_compat": False,
    }

    def __init__(self, bits: int, **hparams: Any):
        super().__init__(bits, **hparams)
        #: pairs used, subsampling, feature RMS of the last fit (not in the state)
        self.fit_info: dict[str, Any] = {}
        #: training relaxed codes F_1, F_2 of the last fit (for tests and diagnostics; not in the state)
        self.relaxed: dict[str, np.ndarray] = {}

    def check_hparams(self, h: dict[str, Any]) -> None:
        self.positive(h, "beta", "u")
        if float(h["lam"]) < 0:
            raise CmhashError(f"imh: lam must be non-negative, got {h['lam']!r}")
        if int(h["k"]) < 1:
            raise CmhashError(f"imh: k must be at least 1, got {h['k']!r}")
        if h["max_train"] is not None and int(h["max_train"]) < 2:
            raise CmhashError(f"imh: max_train must be at least 2, got {h['max_train']!r}")
        h.update(
            beta=float(h["beta"]),
            lam=float(h["lam"]),
            k=int(h["k"]),
            u=float(h["u"]),
            center=bool(h["center"]),
            normalize=bool(h["normalize"]),
            max_train=None if h["max_train"] is None else int(h["max_train"]),
            seed=None if h["seed"] is None else int(h["seed"]),
            bmc_compat=bool(h["bmc_compat"]),
        )

    @property
    def eigenvalues(self) -> np.ndarray:
        """The ``bits`` smallest eigenvalues of D, ascending."""
        return self.arrays["eigenvalues"]

    def fit_features(self, feats: dict[str, np.ndarray], labels=None, progress=None) -> None:
        from scipy.linalg import eigh, solve

        h = self.hparams
        n = feats["image"].shape[0]
        self.fit_info = {"pairs": n}
        if h["max_train"] is not None and n > h["max_train"]:
            keep = np.sort(np.random.default_rng(h["seed"]).choice(n, h["max_train"], replace=False))
            feats = {m: f[keep] for m, f in feats.items()}
            self.fit_info["subsampled_to"] = h["max_train"]
            n = h["max_train"]
        if self.bits >= n:
            raise DataError(f"imh: {self.bits} bits need more than {self.bits} training pairs, got {n}")
        X, scale = {}, {}
        for m, f in feats.items():
            X[m] = self.centred(f, m)  # training means of all pairs (in arrays, from the base class)
            rms = float(np.sqrt(np.mean(X[m] ** 2))) if h["normalize"] else 1.0
            scale[m] = rms if rms > 0 else 1.0
            X[m] /= scale[m]
        A1, G1 = residual_operator(X["image"], h["beta"])
        S, G2 = residual_operator(X["text"], h["beta"])
        add_sparse(S, knn_laplacian(X["text"], h["k"]), h["lam"])  # S = A_2 + lam L_2 (dense)
        T = S.copy()
        T[np.diag_indices_from(T)] += h["u"]
        Z = solve(T, S, assume_a="pos", check_finite=False)  # T^-1 S
        del T
        D = A1
        add_sparse(D, knn_laplacian(X["image"], h["k"]), h["lam"])
        D += h["u"] * Z
        D += D.T.copy()
        D *= 0.5
        vals, F1 = eigh(D, subset_by_index=[0, self.bits - 1], overwrite_a=True, check_finite=False)
        del D
        F2 = F1 - Z @ F1
        # W_g acts on the scaled features; stored for raw (centred) features: (x - mean) W_g / scale_g
        P = {"image": G1 @ F1 / scale["image"], "text": G2 @ F2 / scale["text"]}
        self.fit_info["feature_rms"] = dict(scale)
        self.relaxed = {"image": F1, "text": F2}
        self.arrays.update(
            P_image=P["image"],
            P_text=P["text"],
            threshold_image=np.median(X["image"] @ P["image"] * scale["image"], axis=0),
            threshold_text=np.median(X["text"] @ P["text"] * scale["text"], axis=0),
            eigenvalues=vals,
        )

    def encode(self, inputs, modality: str) -> np.ndarray:
        """+-1 int8 codes; thresholds are the training medians (or, with bmc_compat, the set's own)."""
        from cmhash.codes import sign

        P = self.project(inputs, modality)
        if self.hparams["bmc_compat"]:
            return sign(P - np.median(P, axis=0)) if len(P) else sign(P)
        return sign(P - self.arrays[f"threshold_{modality}"])
