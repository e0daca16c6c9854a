"""Batch similarity matrices of DJSRH (paper section 3.1, eqs. 2-3; methods-spec section 2.2) and JDSH
(joint-modal similarity and DSDW, methods-spec sections 3.1-3.2).

All functions work on one training batch and are called under ``torch.no_grad()`` by the methods:
the similarity is a fixed target, never a path for gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def cosine_similarity_matrix(features: torch.Tensor, rescale: bool = True) -> torch.Tensor:
    """Row-wise cosine similarities ``F^ F^T`` of l2-normalised rows; ``rescale`` maps S to ``2S - 1``.

    DJSRH section 4.3: with non-negative features (ReLU activations, bag-of-words) the cosine lies
    in [0, 1], which would leave some hash bits unchangeable; ``2S - 1`` moves it back to [-1, 1].
    An all-zero row (a pair without any tag) gets similarity 0 before rescaling (F.normalize's eps).
    """
    f = F.normalize(features.float(), p=2, dim=1)
    s = f @ f.t()
    return 2.0 * s - 1.0 if rescale else s


def joint_semantics(s_image: torch.Tensor, s_text: torch.Tensor, beta: float, eta: float, batch_size: int | None = None) -> torch.Tensor:
    """The joint-semantics affinity S of eq. (3): ``(1-eta) S~ + eta S~ S~^T / m`` with ``S~ = beta S_I + (1-beta) S_T``.

    ``batch_size`` is m; the official code divides by the *configured* batch size, which equals
    the actual one because batches are drawn with ``drop_last``. Defaults to the actual size.
    """
    s_tilde = beta * s_image + (1.0 - beta) * s_text
    if eta == 0.0:
        return s_tilde
    m = s_tilde.shape[0] if batch_size is None else int(batch_size)
    return (1.0 - eta) * s_tilde + (eta / m) * (s_tilde @ s_tilde.t())


def code_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``cos(B_a, B_b)``: pairwise cosine of (relaxed) code rows, as in the paper's section 3."""
    return F.normalize(a, p=2, dim=1) @ F.normalize(b, p=2, dim=1).t()


JDSH_VARIANTS = ("head", "v2020_05")


def jdsh_joint_similarity(
    s_image: torch.Tensor, s_text: torch.Tensor, alpha: float, beta: float, lamb: float, variant: str = "head"
) -> torch.Tensor:
    """JDSH's joint-modal similarity ``S_ = alpha S_I + beta S_T + lamb S_high`` (before DSDW and mu).

    ``head`` (official code at HEAD): ``S_high = norm(S_I) norm(S_T)^T`` (cosine between row i of S_I
    and row j of S_T), symmetrised as ``(S_high + S_high^T) / 2``. ``v2020_05`` (May-2020 code):
    ``S_high = norm(S_I S_T)`` (rows l2-normalised), not symmetrised.
    """
    if variant == "head":
        high = F.normalize(s_image, p=2, dim=1) @ F.normalize(s_text, p=2, dim=1).t()
        high = 0.5 * (high + high.t())
    elif variant == "v2020_05":
        high = F.normalize(s_image @ s_text, p=2, dim=1)
    else:
        raise ValueError(f"JDSH variant must be one of {JDSH_VARIANTS}, got {variant!r}")
    return alpha * s_image + beta * s_text + lamb * high


@dataclass(frozen=True)
class DSDWConstants:
    """The constants of DSDW (official JDSH configs; methods-spec section 3.1).

    ``left = loc_left - alpha * scale_left`` and ``right = loc_right + beta * scale_right`` are the
    decision thresholds; ``min``/``max`` the extremes used in the weights; ``l1``/``l2`` the weights'
    strengths for "decided dissimilar" (below left) and "decided similar" (above right) pairs.
    """

    loc_left: float
    scale_left: float
    alpha: float
    loc_right: float
    scale_right: float
    beta: float
    min: float
    max: float
    l1: float
    l2: float

    @property
    def left(self) -> float:
        return self.loc_left - self.alpha * self.scale_left

    @property
    def right(self) -> float:
        return self.loc_right + self.beta * self.scale_right

    @classmethod
    def from_hparams(cls, h: dict) -> "DSDWConstants":
        """From a method's hyper-parameters (keys ``dsdw_loc_left`` ... ``dsdw_l2``)."""
        return cls(**{f: float(h[f"dsdw_{f}"]) for f in cls.__dataclass_fields__})


def dsdw_weighting(s: torch.Tensor, c: DSDWConstants, variant: str = "head") -> torch.Tensor:
    """DSDW (Distribution-based Similarity Decision and Weighting) of JDSH, returning a new matrix.

    Entries below ``c.left`` ("decided dissimilar") become ``(1 + l1 exp(-(s - MIN))) s``; entries
    above ``c.right`` ("decided similar") become ``(1 + l2 exp(s - MAX)) s``; others are unchanged.
    ``head``: every entry (diagonal included) with MIN/MAX the configured constants. ``v2020_05``:
    off-diagonal entries only, with MIN = the batch minimum of ``s`` and MAX = the batch maximum
    of its diagonal. As in the official code the second rule is applied to the result of the first;
    an updated entry stays below ``left`` (< ``right``), so the order does not matter.
    """
    if variant == "head":
        lo, hi, mask = c.min, c.max, None
    elif variant == "v2020_05":
        lo, hi = s.min(), torch.diagonal(s).max()
        mask = ~torch.eye(s.shape[0], dtype=torch.bool, device=s.device)
    else:
        raise ValueError(f"JDSH variant must be one of {JDSH_VARIANTS}, got {variant!r}")
    out = s.clone()
    dis = out < c.left
    if mask is not None:
        dis &= mask
    out = torch.where(dis, (1.0 + c.l1 * torch.exp(-(out - lo))) * out, out)
    sim = out > c.right
    if mask is not None:
        sim &= mask
    out = torch.where(sim, (1.0 + c.l2 * torch.exp(out - hi)) * out, out)
    return out


__all__ = [
    "DSDWConstants",
    "JDSH_VARIANTS",
    "code_cosine",
    "cosine_similarity_matrix",
    "dsdw_weighting",
    "jdsh_joint_similarity",
    "joint_semantics",
]
