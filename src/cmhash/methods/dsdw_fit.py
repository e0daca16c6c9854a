"""Estimate JDSH's DSDW constants from the training data (a cmhash addition).

The official JDSH configs hard-code DSDW's constants (``LOC``, ``SCALE_LEFT``, ``SCALE_RIGHT``,
``MIN``, ``MAX``) and ship no code that produced them (methods-spec section 3.1). Read as a
two-piece ("split") normal distribution of the joint-modal similarity values S_, ``LOC`` is its mode,
``SCALE_LEFT``/``SCALE_RIGHT`` its left/right spreads, and ``MIN``/``MAX`` the observed extremes.

This module recovers those numbers for any data: pool the off-diagonal entries of S_ over random
training batches (the same batch size as training), fit a split normal by maximum likelihood, and
keep the configs' threshold multipliers (left = mode - 2 sigma_L, right = mode + 4 sigma_R) and
weight strengths (L1, L2). For a fixed mode the maximum-likelihood spreads are closed-form
(John 1982); the mode maximises the profile likelihood, i.e. minimises
``s_L^(1/3) + s_R^(1/3)`` with ``s_L``/``s_R`` the sums of squared deviations on either side,
a one-dimensional problem solved by :func:`scipy.optimize.minimize_scalar`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from cmhash.errors import CmhashError
from cmhash.methods.similarity import DSDWConstants, cosine_similarity_matrix, jdsh_joint_similarity

#: The official configs' constants (KaiserLew/JDSH@caa8224 config/JDSH_{MIRFlickr,NUSWIDE}.json).
SHIPPED = {
    "mirflickr": DSDWConstants(
        loc_left=-0.49, scale_left=0.019, alpha=2.0, loc_right=-0.49, scale_right=0.088, beta=4.0, min=-0.52, max=0.68, l1=0.1, l2=0.2
    ),
    "nuswide": DSDWConstants(
        loc_left=-0.62, scale_left=0.0128, alpha=2.0, loc_right=-0.62, scale_right=0.086, beta=4.0, min=-0.64, max=0.75, l1=0.2, l2=0.2
    ),
}


def _side_sums(x: np.ndarray, mode: float) -> tuple[float, float]:
    d = x - mode
    return float(np.sum(d[d < 0] ** 2)), float(np.sum(d[d > 0] ** 2))


def fit_split_normal(values: np.ndarray) -> tuple[float, float, float]:
    """Maximum-likelihood split normal ``(mode, sigma_left, sigma_right)`` of a 1-D sample."""
    from scipy.optimize import minimize_scalar

    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size < 10:
        raise CmhashError(f"DSDW fit: need at least 10 similarity values, got {x.size}")
    if np.ptp(x) == 0:
        raise CmhashError("DSDW fit: all similarity values are equal; the features carry no neighbourhood structure")

    def profile(mode: float) -> float:
        sl, sr = _side_sums(x, mode)
        return np.cbrt(sl) + np.cbrt(sr)

    lo, hi = np.quantile(x, [0.001, 0.999])
    res = minimize_scalar(profile, bounds=(float(lo), float(hi)), method="bounded", options={"xatol": 1e-6})
    mode = float(res.x)
    sl, sr = _side_sums(x, mode)
    total = np.cbrt(sl) + np.cbrt(sr)
    n = x.size
    sigma_left = float(np.sqrt(np.cbrt(sl) ** 2 * total / n))
    sigma_right = float(np.sqrt(np.cbrt(sr) ** 2 * total / n))
    return mode, sigma_left, sigma_right


def pooled_joint_similarities(
    image_features,
    text_features,
    *,
    alpha: float,
    beta: float,
    lamb: float,
    variant: str = "head",
    batch_size: int = 32,
    num_batches: int = 100,
    seed: int = 0,
    rescale: bool = True,
) -> np.ndarray:
    """Off-diagonal entries of JDSH's S_ (before DSDW and mu) over ``num_batches`` random batches."""
    img = torch.as_tensor(np.asarray(image_features, dtype=np.float32))
    txt = torch.as_tensor(np.asarray(text_features, dtype=np.float32))
    n = img.shape[0]
    if n != txt.shape[0]:
        raise CmhashError(f"DSDW fit: {n} image rows but {txt.shape[0]} text rows")
    m = min(int(batch_size), n)
    if m < 2:
        raise CmhashError("DSDW fit: need at least 2 training pairs")
    gen = torch.Generator().manual_seed(int(seed))
    off = ~torch.eye(m, dtype=torch.bool)
    out = []
    with torch.no_grad():
        for _ in range(int(num_batches)):
            idx = torch.randperm(n, generator=gen)[:m]
            s_i = cosine_similarity_matrix(img[idx], rescale)
            s_t = cosine_similarity_matrix(txt[idx], rescale)
            s = jdsh_joint_similarity(s_i, s_t, alpha, beta, lamb, variant)
            out.append(s[off].numpy())
    return np.concatenate(out)


def fit_dsdw_constants(values: np.ndarray, like: DSDWConstants) -> tuple[DSDWConstants, dict[str, Any]]:
    """Constants fitted to ``values`` (pooled S_ entries); multipliers and L1/L2 are kept from ``like``.

    Returns the constants and a summary (mode, spreads, thresholds, share of entries each DSDW rule
    touches) for reports.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    mode, sl, sr = fit_split_normal(x)
    fitted = replace(like, loc_left=mode, scale_left=sl, loc_right=mode, scale_right=sr, min=float(x.min()), max=float(x.max()))
    summary = describe_constants(x, fitted)
    return fitted, summary


def describe_constants(values: np.ndarray, c: DSDWConstants) -> dict[str, Any]:
    """Thresholds of ``c`` and the share of ``values`` that DSDW decides dissimilar / similar."""
    x = np.asarray(values, dtype=np.float64).ravel()
    return {
        "loc_left": c.loc_left,
        "scale_left": c.scale_left,
        "loc_right": c.loc_right,
        "scale_right": c.scale_right,
        "min": c.min,
        "max": c.max,
        "left": c.left,
        "right": c.right,
        "share_dissimilar": float(np.mean(x < c.left)),
        "share_similar": float(np.mean(x > c.right)),
        "n_values": int(x.size),
        "value_quantiles": {q: float(np.quantile(x, q)) for q in (0.01, 0.25, 0.5, 0.75, 0.99)},
    }


__all__ = ["SHIPPED", "describe_constants", "fit_dsdw_constants", "fit_split_normal", "pooled_joint_similarities"]
