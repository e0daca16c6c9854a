"""LSSH: Latent Semantic Sparse Hashing (Zhou, Ding, Guo, SIGIR 2014), unsupervised.

Images are described by sparse codes over a learned dictionary, texts by a latent factor model,
and the two are tied by a linear map from sparse codes to the text latent space (methods-spec
7.4). Columns are samples here, as in the paper: X (K x n) = the image features PCA-reduced to
K = ``bits`` dimensions, each column L2-normalised; T (d_t x n) = the text features, each column
L2-normalised; S (m x n) sparse codes over m = ``atoms`` atoms; Y (K x n) the latent semantics.

    J = 1/2 ||X - B S||^2 + sum_i rho_i ||s_i||_1 + lam/2 ||Y - R S||^2 + mu/2 ||T - A Y||^2
        s.t. every column of B (K x m), R (K x m) and A (d_t x K) has norm <= 1

Each outer iteration (``iterations``, 20 in the official code) updates, in the official order,

* ``Y = (A'A + (lam/mu) I)^-1 ((lam/mu) R S + A'T)``   (exact);
* ``A``: least squares with column norms <= 1, by its Lagrange dual (Lee et al., NIPS 2006, as
  the official ``l2ls_learn_basis_dual``) maximised with ``scipy.optimize`` L-BFGS-B;
* ``S``: one lasso per sample, ``min 1/2 ||[x_i; sqrt(lam) y_i] - [B; sqrt(lam) R] s||^2 + rho_i ||s||_1``,
  all samples at once with ``sklearn.linear_model.Lasso`` (coordinate descent, Gram matrix
  precomputed, warm-started from the previous S);
* ``B`` and ``R``: the same dual basis update as A.

``rho_mode="relative"`` (official: SLEP ``LeastR`` with ``rFlag = 1``) sets ``rho_i = rho *
lambda_max,i`` with ``lambda_max,i = ||D' z_i||_inf``, the smallest penalty giving s_i = 0; it is
solved exactly by scaling each target by 1/lambda_max,i, solving with penalty ``rho`` and scaling
back. Then the penalty moves with B, R and Y, so J (recorded in ``history`` with the weights of
that iteration) need not fall monotonically. ``rho_mode="absolute"`` uses ``rho_i = rho``: a fixed
objective that every block update lowers (tested).

Initialisation (the official code's random start is not specified further; ours, seeded): B, R
and A Gaussian with unit columns, S the lasso codes of X over B alone.

Codes: image query ``sign(R s - t_img)`` with s the lasso code of x over B alone; text query
``sign((A'A + (lam/mu) I)^-1 A't - t_txt)``. ``t_*`` are the per-bit means of the training
projections (our choice: the official code thresholds at 0, which unbalances bits because the
latent values are not centred; ``bmc_compat=True`` restores 0). The official protocol codes the
*database* once from both modalities, ``sign((A'A + (lam/mu) I)^-1 ((lam/mu) R s + A't))``, which
:meth:`LSSH.encode_unified` provides; ``encode`` (used by ``cmhash train``/``eval``) codes each
modality on its own, as every other method, so figures are comparable across methods.

Cost: ``iterations`` lasso passes over n samples of size 2K x m, plus m x m solves in the dual;
``max_train`` (10,000, the official cap) subsamples larger training sets (seeded).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cmhash.codes import sign
from cmhash.errors import CmhashError, DataError
from cmhash.methods import METHODS
from cmhash.methods.shallow import ShallowHashMethod

RHO_MODES = ("relative", "absolute")


def _unit_columns(M: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(M, axis=0)
    return M / np.where(norms > 0, norms, 1.0)


def _l2_rows(M: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(M, axis=1, keepdims=True)
    return np.divide(M, norms, out=np.zeros_like(M), where=norms > 0)


def learn_basis(X: np.ndarray, S: np.ndarray, previous: np.ndarray, theta0: np.ndarray | None = None):
    """argmin_B ||X - B S||^2 s.t. ||b_j|| <= 1, by the Lagrange dual over theta >= 0 (L-BFGS-B).

    X (p x n), S (m x n). Returns (B, theta); ``theta0`` (the previous call's multipliers) warm-starts
    the dual, which cuts the solver's iterations several-fold between outer sweeps. Atoms no sample
    uses (zero rows of S) keep their previous column.
    """
    from scipy.linalg import LinAlgError, cho_factor, cho_solve, solve
    from scipy.optimize import minimize

    m = S.shape[0]
    theta_full = np.zeros(m) if theta0 is None else np.asarray(theta0, dtype=np.float64).copy()
    used = np.flatnonzero(np.any(S != 0, axis=1))
    B = previous.copy()
    if used.size == 0:
        return B, theta_full
    Su = S[used]
    SSt = Su @ Su.T
    XSt = X @ Su.T  # p x m'
    jitter = 1e-12 * max(float(np.trace(SSt)) / len(used), 1e-300)

    def basis(theta):
        Mmat = SSt + np.diag(theta + jitter)  # symmetric positive definite for theta >= 0
        try:
            return cho_solve(cho_factor(Mmat, check_finite=False), XSt.T, check_finite=False).T
        except LinAlgError:  # numerically semi-definite: fall back to a general solve
            return solve(Mmat, XSt.T, check_finite=False).T

    def neg_dual(theta):
        Bt = basis(theta)
        # D(theta) = tr(X'X) - tr(XSt (SSt + Theta)^-1 XSt') - sum(theta); tr(X'X) is constant
        val = -float(np.sum(Bt * XSt)) - float(theta.sum())
        grad = np.sum(Bt * Bt, axis=0) - 1.0
        return -val, -grad

    res = minimize(neg_dual, theta_full[used], jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * len(used),
                   options={"maxiter": 500, "ftol": 1e-10, "gtol": 1e-8})
    Bu = basis(res.x)
    # guard against tiny violations left by the solver's tolerance
    norms = np.linalg.norm(Bu, axis=0)
    Bu = Bu / np.maximum(norms, 1.0)
    B[:, used] = Bu
    theta_full[used] = res.x
    return B, theta_full


def lasso_codes(D: np.ndarray, Z: np.ndarray, rho: float, relative: bool, tol: float, init: np.ndarray | None = None):
    """Per-column lasso ``min 1/2 ||z_i - D s||^2 + rho_i ||s||_1`` -> (S (m x n), rho_i (n,)).

    ``relative``: ``rho_i = rho * ||D' z_i||_inf`` (SLEP rFlag = 1), solved by scaling z_i.
    """
    from sklearn.linear_model import Lasso

    p, m = D.shape
    n = Z.shape[1]
    if relative:
        lam_max = np.max(np.abs(D.T @ Z), axis=0)
        scale = np.where(lam_max > 0, lam_max, 1.0)
        rhos = rho * lam_max
    else:
        scale = np.ones(n)
        rhos = np.full(n, rho)
    Zs = Z / scale
    # sklearn's Lasso minimises 1/(2 p) ||z - D s||^2 + alpha ||s||_1, so alpha = rho / p
    model = Lasso(alpha=rho / p, fit_intercept=False, precompute=D.T @ D, max_iter=5000, tol=tol, warm_start=init is not None)
    if init is not None:
        coef0 = np.ascontiguousarray((init / scale).T)
        model.coef_ = coef0 if n > 1 else coef0[0]
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(D, Zs if n > 1 else Zs[:, 0])
    coef = np.atleast_2d(model.coef_).reshape(n, m).T
    S = coef * scale
    S[:, np.all(Z == 0, axis=0)] = 0.0
    return S, rhos


@METHODS.register("lssh")
class LSSH(ShallowHashMethod):
    """Latent Semantic Sparse Hashing; see the module docstring.

    Hyper-parameters (defaults = the official demo): ``mu`` (0.05) text factorisation weight,
    ``rho`` (0.5) sparsity, ``lam`` (0.2) weight of the sparse-code-to-latent map, ``atoms``
    (512) dictionary size, ``iterations`` (20) outer sweeps, ``rho_mode`` ("relative" as SLEP's
    rFlag = 1, or "absolute"), ``max_train`` (10,000) training cap, ``seed``, ``lasso_tol``,
    ``bmc_compat`` (threshold codes at 0 as the official code).
    """

    name = "lssh"
    DEFAULTS = {
        "mu": 0.05,
        "rho": 0.5,
        "lam": 0.2,
        "atoms": 512,
        "iterations": 20,
        "rho_mode": "relative",
        "max_train": 10000,
        "seed": 0,
        "lasso_tol": 1e-4,
        "bmc_compat": False,
    }
    STATE_ARRAYS = ("pca_mean", "pca_components", "B", "R", "A", "threshold_image", "threshold_text")
    #: the contract test's tiny fits: a small dictionary (512 atoms on 96 items is most of a minute)
    TEST_HPARAMS = {"atoms": 32}

    def __init__(self, bits: int, **hparams: Any):
        super().__init__(bits, **hparams)
        self.fit_info: dict[str, Any] = {}

    def check_hparams(self, h: dict[str, Any]) -> None:
        self.positive(h, "mu", "rho", "lam", "lasso_tol")
        if h["rho_mode"] not in RHO_MODES:
            raise CmhashError(f"lssh: rho_mode must be one of {', '.join(RHO_MODES)}, got {h['rho_mode']!r}")
        if h["rho_mode"] == "relative" and float(h["rho"]) >= 1:
            raise CmhashError(f"lssh: a relative rho must be below 1 (rho = 1 makes every code zero), got {h['rho']}")
        if int(h["atoms"]) < 1 or int(h["iterations"]) < 1:
            raise CmhashError(f"lssh: atoms and iterations must be at least 1, got {h['atoms']}, {h['iterations']}")
        h.update(
            mu=float(h["mu"]),
            rho=float(h["rho"]),
            lam=float(h["lam"]),
            atoms=int(h["atoms"]),
            iterations=int(h["iterations"]),
            rho_mode=str(h["rho_mode"]),
            max_train=None if h["max_train"] is None else int(h["max_train"]),
            seed=None if h["seed"] is None else int(h["seed"]),
            lasso_tol=float(h["lasso_tol"]),
            bmc_compat=bool(h["bmc_compat"]),
        )

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The fitted arrays (``self.arrays``): PCA, B, R, A and the thresholds."""
        return self.arrays

    def fit_means(self, feats) -> None:
        """LSSH centres nothing itself (the PCA centres the images), so no means are stored."""

    # ------------------------------------------------------------------ helpers
    def _image_input(self, F: np.ndarray) -> np.ndarray:
        """PCA to ``bits`` dimensions, then unit rows (n x K)."""
        return _l2_rows((F - self.params["pca_mean"]) @ self.params["pca_components"].T)

    def _lasso(self, D, Z, init=None):
        h = self.hparams
        return lasso_codes(D, Z, h["rho"], h["rho_mode"] == "relative", h["lasso_tol"], init)

    def _text_map(self) -> np.ndarray:
        """(A'A + (lam/mu) I)^-1 (K x K)."""
        A, h = self.params["A"], self.hparams
        return np.linalg.inv(A.T @ A + (h["lam"] / h["mu"]) * np.eye(A.shape[1]))

    def objective(self, X, T, S, Y, rhos) -> float:
        h, P = self.hparams, self.params
        return float(
            0.5 * np.sum((X - P["B"] @ S) ** 2)
            + np.sum(rhos * np.abs(S).sum(axis=0))
            + 0.5 * h["lam"] * np.sum((Y - P["R"] @ S) ** 2)
            + 0.5 * h["mu"] * np.sum((T - P["A"] @ Y) ** 2)
        )

    # ------------------------------------------------------------------ training
    def fit_features(self, feats: dict[str, np.ndarray], labels=None, progress=None) -> None:
        """The alternating updates; ``progress(iteration, iterations, objective)`` is optional."""
        from sklearn.decomposition import PCA

        h, K = self.hparams, self.bits
        feats = {m: np.asarray(f, dtype=np.float64) for m, f in feats.items()}
        n = feats["image"].shape[0]
        self.fit_info = {"pairs": n}
        rng = np.random.default_rng(h["seed"])
        if h["max_train"] is not None and n > h["max_train"]:
            keep = np.sort(rng.choice(n, h["max_train"], replace=False))
            feats = {m: f[keep] for m, f in feats.items()}
            self.fit_info["subsampled_to"] = n = h["max_train"]
        if K > min(n, feats["image"].shape[1]):
            raise DataError(
                f"lssh: {K} bits need the image PCA to keep {K} dimensions, but there are {n} pairs and "
                f"{feats['image'].shape[1]} image dimensions"
            )
        pca = PCA(n_components=K, svd_solver="full").fit(feats["image"])
        self.arrays.update(pca_mean=pca.mean_.astype(np.float64), pca_components=pca.components_.astype(np.float64))
        X = self._image_input(feats["image"]).T  # K x n
        T = _l2_rows(feats["text"]).T  # d_t x n
        m, lam, ratio = h["atoms"], h["lam"], h["lam"] / h["mu"]
        P = self.arrays
        P["B"] = _unit_columns(rng.standard_normal((K, m)))
        P["R"] = _unit_columns(rng.standard_normal((K, m)))
        P["A"] = _unit_columns(rng.standard_normal((T.shape[0], K)))
        S, rhos = self._lasso(P["B"], X)
        sl = np.sqrt(lam)
        self.history = []
        theta: dict[str, np.ndarray | None] = {"A": None, "B": None, "R": None}  # dual warm starts
        for it in range(1, h["iterations"] + 1):
            A = P["A"]
            Y = np.linalg.solve(A.T @ A + ratio * np.eye(K), ratio * (P["R"] @ S) + A.T @ T)
            P["A"], theta["A"] = learn_basis(T, Y, A, theta["A"])
            S, rhos = self._lasso(np.vstack([P["B"], sl * P["R"]]), np.vstack([X, sl * Y]), init=S)
            P["B"], theta["B"] = learn_basis(X, S, P["B"], theta["B"])
            P["R"], theta["R"] = learn_basis(Y, S, P["R"], theta["R"])
            self.history.append(self.objective(X, T, S, Y, rhos))
            if progress is not None:
                progress(it, h["iterations"], self.history[-1])
        #: training sparse codes and latent semantics (for tests and diagnostics; not in the state)
        self.sparse_codes, self.latent = S, Y
        if h["bmc_compat"]:
            P["threshold_image"] = np.zeros(K)
            P["threshold_text"] = np.zeros(K)
        else:
            P["threshold_image"] = (P["R"] @ self._lasso(P["B"], X)[0]).mean(axis=1)
            P["threshold_text"] = (self._text_map() @ (P["A"].T @ T)).mean(axis=1)

    # ------------------------------------------------------------------ coding
    def _inputs(self, inputs, modality: str) -> np.ndarray:
        F = self.query_features(inputs, modality, width_from="pca_mean" if modality == "image" else "A")
        self.check_finite(F, modality, "input")
        return np.asarray(F, dtype=np.float64)

    def project(self, inputs, modality: str) -> np.ndarray:
        """Real-valued latent projections (n x bits) before the threshold and the sign."""
        F = self._inputs(inputs, modality)
        P = self.params
        if modality == "image":
            S, _ = self._lasso(P["B"], self._image_input(F).T)
            return (P["R"] @ S).T
        return (self._text_map() @ (P["A"].T @ _l2_rows(F).T)).T

    def encode(self, inputs, modality: str) -> np.ndarray:
        """+-1 int8 codes of one modality (0 maps to +1)."""
        return sign(self.project(inputs, modality) - self.params[f"threshold_{modality}"])

    def encode_unified(self, inputs) -> np.ndarray:
        """The official database code from both modalities of each pair:
        ``sign((A'A + (lam/mu) I)^-1 ((lam/mu) R s + A't))`` (thresholded like text codes)."""
        h, P = self.hparams, self.params
        Fi, Ft = self._inputs(inputs, "image"), self._inputs(inputs, "text")
        if len(Fi) != len(Ft):
            raise DataError(f"lssh: {len(Fi)} image rows but {len(Ft)} text rows; unified codes need pairs")
        S, _ = self._lasso(P["B"], self._image_input(Fi).T)
        Y = self._text_map() @ ((h["lam"] / h["mu"]) * (P["R"] @ S) + P["A"].T @ _l2_rows(Ft).T)
        return sign(Y.T - P["threshold_text"])

    # ------------------------------------------------------------------ state
    def check_state(self) -> None:
        """Shapes of the loaded arrays against ``bits`` and ``atoms``."""
        K, m, P = self.bits, self.hparams["atoms"], self.arrays
        expect = {"B": (K, m), "R": (K, m), "threshold_image": (K,), "threshold_text": (K,)}
        for key, shape in expect.items():
            if P[key].shape != shape:
                raise CmhashError(f"lssh: saved {key} has shape {P[key].shape}, expected {shape}")
        if P["A"].ndim != 2 or P["A"].shape[1] != K or P["pca_components"].shape != (K, P["pca_mean"].shape[0]):
            raise CmhashError("lssh: saved A / PCA shapes do not match the code length")


__all__ = ["LSSH", "learn_basis", "lasso_codes"]
