"""CMFH: Collective Matrix Factorization Hashing (Ding, Guo, Zhou, CVPR 2014), unsupervised.

Both modalities of a training pair are factorised onto one shared latent matrix ``V`` (n x bits),
and a linear projection ``P_t`` per modality maps features into that space, so that a query of
either modality is coded as ``sign((x - mean_t) P_t)``.

With rows as samples, ``X_t`` (n x d_t) centred on the training means, ``U_t`` (bits x d_t) and
``P_t`` (d_t x bits), the closed forms of methods-spec section 7.3 are

* ``U_t = (V'V + gamma I)^-1 V' X_t``
* ``V   = [sum_t a_t X_t (U_t' + mu P_t)] [sum_t a_t (U_t U_t' + (mu + gamma) I)]^-1``
* ``P_t = (X_t' X_t + (gamma / mu) I)^-1 X_t' V``

They are the exact block minimisers of

    J = sum_t a_t (||X_t - V U_t||^2 + mu ||V - X_t P_t||^2 + gamma ||U_t||^2 + gamma ||P_t||^2)
        + gamma (sum_t a_t) ||V||^2

(the regulariser of the original header, weighted by ``a_t`` as those closed forms imply; with
``a = [.5, .5]`` they differ from the unweighted header only by a factor 2 on gamma), so every
sweep lowers ``J``; :attr:`CMFH.history` records it after each iteration.

Initialisation and order: V is drawn uniformly in [0, 1) (seeded) and each sweep updates P, then
U, then V, so P and U are derived from the random V before they are used. The official code
instead draws U, V *and* P at random and sweeps U -> V -> P (``order="UVP"``). With the correct
P-update that start converges slowly: the random P (entries ~0.5 over d dimensions) enters the
first V-update through ``mu X_t P_t``, and this component decays only by about the canonical
correlation of the two modalities per sweep. Measured on MIRFlickr (EfficientNet-Lite0 + tag
BoW, 32 bits, seed 0, mAP@50 i2t/t2i): UVP .594/.564 after 30 sweeps, .838/.784 after 150;
PUV .840/.784 after 10, .847/.784 after 30, .842/.783 after 100. Both reach the same kind of
solution; PUV gets there within the official iteration budget (25-30).

``bmc_compat=True`` reproduces the BMC-SDNU MATLAB code, whose P-update evaluates to ``1/mu^2``
times the correct ``P_t`` (methods-spec 7.3, "Bug"): codes are scale invariant, but the smaller
``P_t`` nearly switches off the ``mu X_t P_t`` term of the next V-update. It is offered only to
compare with numbers produced by that code; the objective then need not decrease.

Memory: the features stay in their float32 arrays. A centred float64 copy is kept only while it
fits in ``CACHE_BYTES`` (256 MiB); larger inputs are centred in row blocks on every product, so
the extra memory is then the d x d Gram matrix per modality (128 MiB at d = 4096), one block and
O(n * bits), whatever n is.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import numpy as np

from cmhash.errors import CmhashError
from cmhash.methods import METHODS
from cmhash.methods.base import MODALITIES
from cmhash.methods.shallow import BLOCK_BYTES, ShallowHashMethod, block_rows, centred_blocks  # BLOCK_BYTES: read by _Centred (tests shrink it)

#: Orders of the block updates within one sweep (see the module docstring).
UPDATE_ORDERS = ("PUV", "UVP")

#: Largest centred training matrix kept in memory as float64 (above it: block by block).
CACHE_BYTES = 256 * 2**20


class _Centred:
    """Products with ``X - mean`` in float64, from the float32 features.

    The centred float64 matrix is kept when it fits in ``CACHE_BYTES``; larger inputs are centred
    block by block on every product, so memory stays O(block + d^2) whatever n is.
    """

    def __init__(self, X: np.ndarray, mean: np.ndarray, cache: bool = True):
        self.X = X
        self.mean = mean
        self.shape = X.shape
        self.rows = block_rows(X.shape[1], BLOCK_BYTES)
        self.cached = X.astype(np.float64) - mean if cache and X.size * 8 <= CACHE_BYTES else None

    def _blocks(self):
        if self.cached is not None:
            yield 0, self.cached
            return
        yield from centred_blocks(self.X, self.mean, self.rows)

    def gram(self) -> np.ndarray:
        """X'X (d x d)."""
        d = self.X.shape[1]
        out = np.zeros((d, d))
        for _, b in self._blocks():
            out += b.T @ b
        return out

    def t_dot(self, V: np.ndarray) -> np.ndarray:
        """X'V (d x k) for V (n x k)."""
        out = np.zeros((self.X.shape[1], V.shape[1]))
        for s, b in self._blocks():
            out += b.T @ V[s : s + b.shape[0]]
        return out

    def dot(self, M: np.ndarray) -> np.ndarray:
        """X M (n x k) for M (d x k)."""
        out = np.empty((self.X.shape[0], M.shape[1]))
        for s, b in self._blocks():
            out[s : s + b.shape[0]] = b @ M
        return out

    def sqnorm(self) -> float:
        return float(sum(np.einsum("ij,ij->", b, b) for _, b in self._blocks()))


class _ArrayView(MutableMapping):
    """``view["image"]`` <-> ``arrays["P_image"]``: the per-modality dicts CMFH exposes over the shared ``arrays``."""

    def __init__(self, arrays: dict[str, np.ndarray], prefix: str):
        self._arrays, self._prefix = arrays, prefix

    def __getitem__(self, m: str) -> np.ndarray:
        return self._arrays[self._prefix + m]

    def __setitem__(self, m: str, value: np.ndarray) -> None:
        self._arrays[self._prefix + m] = value

    def __delitem__(self, m: str) -> None:
        del self._arrays[self._prefix + m]

    def __iter__(self):
        return (k[len(self._prefix) :] for k in list(self._arrays) if k.startswith(self._prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)


@METHODS.register("cmfh")
class CMFH(ShallowHashMethod):
    """Collective Matrix Factorization Hashing; see the module docstring for the updates.

    Hyper-parameters (defaults = the official demo's, methods-spec 7.3): ``alpha`` per-modality
    weights (image, text), ``gamma`` regularisation, ``mu`` weight of the projection term,
    ``iterations`` fixed number of sweeps (the official demo runs 25; the independent reference
    30), ``tol`` optional early stop on the relative decrease of the objective, ``seed`` of the
    uniform random initialisation, ``center`` (subtract the training means; the spec's setting),
    ``bmc_compat`` (reproduce the BMC-SDNU code: its 1/mu^2 P-update and its U -> V -> P order),
    ``order`` of the block updates in a sweep: ``"PUV"`` (default without ``bmc_compat``: from a
    random V, P and U are derived before V is updated) or ``"UVP"`` (the official code's order,
    from random U, V and P; see the module docstring).
    """

    name = "cmfh"
    DEFAULTS = {
        "alpha": [0.5, 0.5],
        "gamma": 0.01,
        "mu": 100.0,
        "iterations": 30,
        "tol": None,
        "seed": 0,
        "center": True,
        "bmc_compat": False,
        "order": None,  # None: "UVP" with bmc_compat, else "PUV"
    }

    def __init__(self, bits: int, **hparams: Any):
        super().__init__(bits, **hparams)
        #: After fit: the shared latent V (n x bits) and the bases U_t (bits x d_t); not in state().
        self.latent: np.ndarray | None = None
        self.bases: dict[str, np.ndarray] = {}

    def check_hparams(self, h: dict[str, Any]) -> None:
        alpha = [float(a) for a in h["alpha"]]
        if len(alpha) != 2 or min(alpha) < 0 or sum(alpha) <= 0:
            raise CmhashError(f"cmfh: alpha must be two non-negative weights (image, text), got {alpha}")
        if float(h["gamma"]) <= 0 or float(h["mu"]) <= 0:
            raise CmhashError(f"cmfh: gamma and mu must be positive, got gamma={h['gamma']}, mu={h['mu']}")
        order = h["order"]
        if order is None:  # the BMC-SDNU code sweeps U -> V -> P from random U, V, P
            order = "UVP" if h["bmc_compat"] else "PUV"
        if order not in UPDATE_ORDERS:
            raise CmhashError(f"cmfh: order must be one of {', '.join(UPDATE_ORDERS)}, got {order!r}")
        if int(h["iterations"]) < 1:
            raise CmhashError(f"cmfh: iterations must be at least 1, got {h['iterations']}")
        h.update(
            alpha=alpha,
            gamma=float(h["gamma"]),
            mu=float(h["mu"]),
            iterations=int(h["iterations"]),
            tol=None if h["tol"] is None else float(h["tol"]),
            seed=None if h["seed"] is None else int(h["seed"]),
            center=bool(h["center"]),
            bmc_compat=bool(h["bmc_compat"]),
            order=str(order),
        )

    @property
    def means(self) -> MutableMapping:
        """Training means per modality (views of ``arrays['mean_<m>']``)."""
        return _ArrayView(self.arrays, "mean_")

    @property
    def projections(self) -> MutableMapping:
        """P_t per modality (views of ``arrays['P_<m>']``)."""
        return _ArrayView(self.arrays, "P_")

    @property
    def iterations_run(self) -> int:
        return len(self.history)

    # ------------------------------------------------------------------ training
    def fit_features(self, feats: dict[str, np.ndarray], labels=None, progress=None) -> None:
        """The alternating updates on the checked training features (means already in ``arrays``)."""
        h = self.hparams
        n = feats["image"].shape[0]
        k, gamma, mu = self.bits, h["gamma"], h["mu"]
        alpha = dict(zip(MODALITIES, h["alpha"]))
        a_sum = sum(alpha.values())

        X: dict[str, _Centred] = {}
        chol: dict[str, Any] = {}
        from scipy.linalg import cho_factor, cho_solve

        for m in MODALITIES:
            f = feats[m] if feats[m].dtype.kind == "f" else feats[m].astype(np.float32)
            X[m] = _Centred(f, self.arrays[f"mean_{m}"])
            G = X[m].gram()
            G[np.diag_indices_from(G)] += gamma / mu
            chol[m] = cho_factor(G, lower=True, overwrite_a=True, check_finite=False)
        sq = {m: X[m].sqnorm() for m in MODALITIES}

        eye = np.eye(k)
        p_scale = 1.0 / mu**2 if h["bmc_compat"] else 1.0
        ridge = gamma / mu
        rng = np.random.default_rng(h["seed"])
        # The state: V with XtV = X_t'V for the current V; U; P with XtXP = X_t'X_t P_t for the current P.
        V = rng.random((n, k))
        XtV = {m: X[m].t_dot(V) for m in MODALITIES}
        U: dict[str, np.ndarray] = {}
        P: dict[str, np.ndarray] = {}
        XtXP: dict[str, np.ndarray] = {}
        if h["order"] == "UVP":  # the official start: U and P random too
            U = {m: rng.random((k, X[m].shape[1])) for m in MODALITIES}
            P = {m: rng.random((X[m].shape[1], k)) for m in MODALITIES}
            XtXP = {m: X[m].t_dot(X[m].dot(P[m])) for m in MODALITIES}

        def update(step: str) -> None:
            nonlocal V, XtV
            if step == "P":  # P_t = (X_t'X_t + gamma/mu I)^-1 X_t'V
                for m in MODALITIES:
                    P[m] = cho_solve(chol[m], XtV[m], check_finite=False) * p_scale
                    XtXP[m] = p_scale * XtV[m] - ridge * P[m]  # from (X'X + rI) P = s X'V
            elif step == "U":  # U_t = (V'V + gamma I)^-1 V'X_t
                VtV = V.T @ V + gamma * eye
                for m in MODALITIES:
                    U[m] = np.linalg.solve(VtV, XtV[m].T)
            else:  # V = [sum a_t X_t (U_t' + mu P_t)] [sum a_t (U_t U_t' + (mu + gamma) I)]^-1
                num = sum(alpha[m] * X[m].dot(U[m].T + mu * P[m]) for m in MODALITIES)
                den = sum(alpha[m] * (U[m] @ U[m].T + (mu + gamma) * eye) for m in MODALITIES)
                V = np.linalg.solve(den, num.T).T  # den is symmetric
                XtV = {m: X[m].t_dot(V) for m in MODALITIES}

        def objective() -> float:
            """J from k x d and d x k products only (no n x d residual is formed)."""
            VtV = V.T @ V
            vv = float(np.sum(V * V))
            total = gamma * a_sum * vv
            for m in MODALITIES:
                rec = sq[m] - 2.0 * float(np.sum(XtV[m] * U[m].T)) + float(np.sum(VtV * (U[m] @ U[m].T)))
                proj = vv - 2.0 * float(np.sum(XtV[m] * P[m])) + float(np.sum(P[m] * XtXP[m]))
                total += alpha[m] * (rec + mu * proj + gamma * float(np.sum(U[m] ** 2)) + gamma * float(np.sum(P[m] ** 2)))
            return total

        self.history = []
        for it in range(1, h["iterations"] + 1):
            for step in h["order"]:
                update(step)
            self.history.append(objective())
            if progress is not None:
                progress(it, h["iterations"], self.history[-1])
            if h["tol"] is not None and it > 1:
                prev, cur = self.history[-2], self.history[-1]
                if abs(prev - cur) <= h["tol"] * max(abs(prev), 1e-300):
                    break
        for m in MODALITIES:
            self.arrays[f"P_{m}"] = P[m]
        self.latent, self.bases = V, U

    # ------------------------------------------------------------------ coding
    def project(self, inputs, modality: str) -> np.ndarray:
        """Real-valued projections ``(x - mean) P`` (n x bits), centred block by block in float64."""
        feats = self.query_features(inputs, modality)
        return _Centred(feats, self.arrays[f"mean_{modality}"], cache=False).dot(self.arrays[f"P_{modality}"])
