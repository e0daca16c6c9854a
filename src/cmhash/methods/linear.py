"""Shared math of the linear shallow methods (CVH, IMH, SCM): thresholded linear codes and the
regularised covariance / generalised eigen-solver they use.

:class:`LinearShallowMethod` extends :class:`~cmhash.methods.shallow.ShallowHashMethod` with a
per-bit threshold per modality, ``code = sign((x - mean) P - threshold)`` (CVH and SCM store
zeros, IMH the training medians), checks query features for NaN/inf, and exposes the fitted
arrays as ``means``, ``projections`` and ``thresholds`` dicts.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from cmhash.codes import sign
from cmhash.errors import CmhashError
from cmhash.methods.base import MODALITIES
from cmhash.methods.shallow import ShallowHashMethod, blocked_projection


class LinearShallowMethod(ShallowHashMethod):
    """``sign((x - mean_m) P_m - threshold_m)`` per modality; subclasses fill those arrays."""

    STATE_ARRAYS: ClassVar[tuple[str, ...]] = (
        "mean_image",
        "mean_text",
        "P_image",
        "P_text",
        "threshold_image",
        "threshold_text",
    )

    @property
    def means(self) -> dict[str, np.ndarray]:
        return {m: self.arrays[f"mean_{m}"] for m in MODALITIES if f"mean_{m}" in self.arrays}

    @property
    def projections(self) -> dict[str, np.ndarray]:
        return {m: self.arrays[f"P_{m}"] for m in MODALITIES if f"P_{m}" in self.arrays}

    @property
    def thresholds(self) -> dict[str, np.ndarray]:
        return {m: self.arrays[f"threshold_{m}"] for m in MODALITIES if f"threshold_{m}" in self.arrays}

    def project(self, inputs, modality: str) -> np.ndarray:
        """Real-valued projections ``(x - mean) P`` (n x bits), before the threshold and the sign;
        computed in float64 row blocks so a large float32 input is never copied whole."""
        feats = self.query_features(inputs, modality)
        self.check_finite(feats, modality, "input")
        return blocked_projection(feats, self.arrays[f"mean_{modality}"], self.arrays[f"P_{modality}"])

    def encode(self, inputs, modality: str) -> np.ndarray:
        """+-1 int8 codes ``sign((x - mean) P - threshold)`` (0 maps to +1)."""
        return sign(self.project(inputs, modality) - self.arrays[f"threshold_{modality}"])

    def check_state(self) -> None:
        super().check_state()
        for m in MODALITIES:
            thr = self.arrays[f"threshold_{m}"]
            if thr.shape != (self.bits,):
                raise CmhashError(f"{self.name}: saved {m} threshold has shape {thr.shape}; expected ({self.bits},)")


def regularised_cov(X: np.ndarray, reg: float, relative: bool) -> np.ndarray:
    """``X'X / n + r I`` with ``r = reg`` or ``reg * mean(diag(X'X / n))`` (scale-free)."""
    C = X.T @ X / X.shape[0]
    r = reg * max(float(np.trace(C)) / C.shape[0], np.finfo(float).tiny) if relative else reg
    C[np.diag_indices_from(C)] += r
    return C


def top_generalised_eig(M: np.ndarray, C: np.ndarray, k: int, method: str = "method"):
    """The ``k`` largest eigenpairs of ``M a = lam C a`` (M symmetric, C symmetric positive definite),
    largest first; eigenvectors are C-orthonormal (``A' C A = I``)."""
    from scipy.linalg import LinAlgError, eigh

    d = M.shape[0]
    M = (M + M.T) / 2
    try:
        vals, vecs = eigh(M, C, subset_by_index=[d - k, d - 1])
    except LinAlgError as exc:
        raise CmhashError(f"{method}: generalised eigenproblem failed ({exc}); increase the regularisation `reg`") from None
    return vals[::-1], vecs[:, ::-1]


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
    lam, A = top_generalised_eig(M, Cxx, bits, method)
    scale = 1.0 / np.sqrt(np.maximum(lam, np.finfo(float).tiny))
    B = (CyyInvCyx @ A) * scale
    return A, B, lam


def as_float64(feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {m: np.asarray(f, dtype=np.float64) for m, f in feats.items()}


__all__ = ["LinearShallowMethod", "as_float64", "paired_projections", "regularised_cov", "top_generalised_eig"]
