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

from cmhash.errors import DataError
from cmhash.methods import METHODS
from cmhash.methods.linear import LinearShallowMethod, paired_projections, regularised_cov


def covariances(X: np.ndarray, Y: np.ndarray, reg: float, relative: bool, bmc_compat: bool = False):
    """(Cxx, Cyy, Cxy) of the (already centred or not) training matrices, regularised."""
    if bmc_compat:
        return X.T @ X + reg * np.eye(X.shape[1]), Y.T @ Y + reg * np.eye(Y.shape[1]), X.T @ Y
    return regularised_cov(X, reg, relative), regularised_cov(Y, reg, relative), X.T @ Y / X.shape[0]


@METHODS.register("cvh")
class CVH(LinearShallowMethod):
    """Cross-View Hashing as regularised CCA; see the module docstring.

    Hyper-parameters: ``reg`` ridge on both covariances, ``reg_relative`` (scale ``reg`` by the
    mean variance; default), ``center`` (subtract training means; default), ``bmc_compat``
    (the BMC-SDNU variant: no centring, absolute ``reg``, ``Cxy Cyy Cyx``; it overrides both).
    """

    name = "cvh"
    DEFAULTS = {"reg": 1e-4, "reg_relative": True, "center": True, "bmc_compat": False}

    def check_hparams(self, h: dict[str, Any]) -> None:
        self.positive(h, "reg")
        h.update(reg=float(h["reg"]), reg_relative=bool(h["reg_relative"]), center=bool(h["center"]), bmc_compat=bool(h["bmc_compat"]))
        if h["bmc_compat"]:
            h.update(center=False, reg_relative=False)

    def fit_features(self, feats: dict[str, np.ndarray], labels=None, progress=None) -> None:
        h = self.hparams
        if self.bits > feats["image"].shape[1]:
            raise DataError(
                f"cvh: {self.bits} bits need at least {self.bits} image dimensions, the features have {feats['image'].shape[1]} "
                "(CVH solves for the image projections first)"
            )
        X, Y = self.centred(feats["image"], "image"), self.centred(feats["text"], "text")
        A, B, lam = paired_projections(*covariances(X, Y, h["reg"], h["reg_relative"], h["bmc_compat"]), self.bits, "cvh", h["bmc_compat"])
        self.arrays.update(P_image=A, P_text=B, threshold_image=np.zeros(self.bits), threshold_text=np.zeros(self.bits), eigenvalues=lam)

    @property
    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues, largest first (squared canonical correlations without ``bmc_compat``)."""
        return self.arrays["eigenvalues"]
