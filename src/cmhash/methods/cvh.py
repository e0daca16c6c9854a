"""CVH: Cross-View Hashing (Kumar & Udupa, IJCAI 2011), unsupervised, closed form.

With one-to-one pairs as the only cross-view similarity, CVH's relaxed objective is canonical
correlation analysis (methods-spec 7.1). With rows as samples, X (n x d_x) and Y (n x d_y)
centred on the training means, ``Cxx = X'X/n + r I``, ``Cyy = Y'Y/n + r I``, ``Cxy = X'Y/n``:

* the image projections ``A`` are the top-``bits`` solutions of the generalised symmetric
  eigenproblem ``Cxy Cyy^-1 Cyx a = lam Cxx a`` (``scipy.linalg.eigh``; ``lam`` = squared
  canonical correlation; ``A' Cxx A = I``);
* the text projections are ``B = Cyy^-1 Cyx A Lam^-1/2`` (so ``B' Cyy B = I`` for lam > 0);
* codes are ``sign((x - mean_x) A)`` and ``sign((y - mean_y) B)``.

``r = reg * mean(diag(X'X/n))`` (``reg_relative``, default) is scale-free, so one ``reg`` fits
features of any magnitude. Only ``min(d_x, d_y)`` directions carry correlation: with more bits
than the smaller dimension (Wiki's 10-d text at 16+ bits) the extra eigenvalues are ~0 and the
extra text bits are the signs of near-zero numbers. That is CCA, not a defect of this code; the
paper's CVH figures on Wiki fall with the code length in the same way (docs/baselines.md).

``bmc_compat=True`` reproduces the BMC-SDNU MATLAB code (``CVH_learn.m``, ``CVHtrainCCA.m``):
no centring (threshold 0 on raw features), unnormalised ``Cxx = X'X + reg I`` with an absolute
``reg`` (its demo: 1e-4), and ``Cxy Cyy Cyx`` (``Cyy``, not its inverse) on the left of the
eigenproblem; ``B = Cyy^-1 Cyx A Lam^-1/2`` as above.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cmhash.errors import CmhashError, DataError
from cmhash.methods import METHODS
from cmhash.methods.linear import LinearHashMethod, check_hparams, regularised_cov, top_generalised_eig


def covariances(X: np.ndarray, Y: np.ndarray, reg: float, relative: bool, bmc_compat: bool = False):
    """(Cxx, Cyy, Cxy) of the (already centred or not) training matrices, regularised."""
    if bmc_compat:
        return X.T @ X + reg * np.eye(X.shape[1]), Y.T @ Y + reg * np.eye(Y.shape[1]), X.T @ Y
    return regularised_cov(X, reg, relative), regularised_cov(Y, reg, relative), X.T @ Y / X.shape[0]


def paired_projections(Cxx: np.ndarray, Cyy: np.ndarray, Cxy: np.ndarray, bits: int, method: str = "cvh", bmc_compat: bool = False):
    """(A, B, lam): the top-``bits`` solutions of ``Cxy Cyy^-1 Cyx a = lam Cxx a`` and
    ``B = Cyy^-1 Cyx A lam^-1/2`` (CCA when Cxy is the cross-covariance; SCM-Orth with X'SY).

    ``bmc_compat``: ``Cxy Cyy Cyx`` on the left, as the BMC-SDNU CVH code.
    """
    from scipy.linalg import cho_factor, cho_solve

    try:
        chol_y = cho_factor(Cyy, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        raise CmhashError(f"{method}: the text covariance is not positive definite; increase `reg`") from None
    CyyInvCyx = cho_solve(chol_y, Cxy.T, check_finite=False)  # Cyy^-1 Cyx (d_y x d_x)
    M = Cxy @ (Cyy @ Cxy.T) if bmc_compat else Cxy @ CyyInvCyx
    lam, A = top_generalised_eig(M, Cxx, bits)
    scale = 1.0 / np.sqrt(np.maximum(lam, np.finfo(float).tiny))
    B = (CyyInvCyx @ A) * scale
    return A, B, lam


@METHODS.register("cvh")
class CVH(LinearHashMethod):
    """Cross-View Hashing as regularised CCA; see the module docstring.

    Hyper-parameters: ``reg`` ridge on both covariances, ``reg_relative`` (scale ``reg`` by the
    mean variance, default) , ``center`` (subtract training means; default), ``bmc_compat``
    (the BMC-SDNU variant: no centring, absolute ``reg``, ``Cxy Cyy Cyx``).
    """

    name = "cvh"
    KNOWN = ("reg", "reg_relative", "center", "bmc_compat")

    def __init__(self, bits: int, reg: float = 1e-4, reg_relative: bool = True, center: bool = True, bmc_compat: bool = False, **extra: Any):
        check_hparams("cvh", extra, self.KNOWN)
        reg = float(reg)
        if not reg > 0:
            raise CmhashError(f"cvh: reg must be positive, got {reg}")
        if bmc_compat:
            center, reg_relative = False, False
        super().__init__(bits, reg=float(reg), reg_relative=bool(reg_relative), center=bool(center), bmc_compat=bool(bmc_compat))

    def _fit(self, feats: dict[str, np.ndarray], train) -> None:
        h = self.hparams
        X, Y = feats["image"], feats["text"]
        if self.bits > X.shape[1]:
            raise DataError(
                f"cvh: {self.bits} bits need at least {self.bits} image dimensions, the features have {X.shape[1]} "
                "(CVH solves for the image projections first)"
            )
        for m, f in feats.items():
            self.means[m] = f.mean(axis=0) if h["center"] else np.zeros(f.shape[1])
        covs = covariances(X - self.means["image"], Y - self.means["text"], h["reg"], h["reg_relative"], h["bmc_compat"])
        A, B, lam = paired_projections(*covs, self.bits, "cvh", h["bmc_compat"])
        self.projections = {"image": A, "text": B}
        self.thresholds = {m: np.zeros(self.bits) for m in ("image", "text")}
        #: eigenvalues (squared canonical correlations without bmc_compat), largest first
        self.eigenvalues = lam
        self.extra_state = {"eigenvalues": lam}
