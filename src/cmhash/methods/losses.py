"""Losses of the deep methods.

DJSRH eq. (5) as the official code computes it (methods-spec section 2.2): squared errors between
the scaled target ``mu * S`` and the code cosines, each term a *mean* over all m x m entries
(diagonal included), i.e. the paper's Frobenius norms divided by m^2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, target, reduction="mean")


def reconstruction_loss(
    b_image: torch.Tensor,
    b_text: torch.Tensor,
    target: torch.Tensor,
    lambda1: float = 0.1,
    lambda2: float = 0.1,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``lambda1 ||T - cos(B_I,B_I)||^2 + ||T - cos(B_I,B_T)||^2 + lambda2 ||T - cos(B_T,B_T)||^2`` (means).

    ``b_image``/``b_text`` are l2-normalised relaxed codes (rows of unit length), so their products
    are the cosines; ``target`` is ``mu * S`` and carries no gradient. Returns the loss and its
    three terms (detached) for logging.
    """
    target = target.detach()
    inter = _mse(b_image @ b_text.t(), target)
    terms = {"inter": inter.detach()}
    loss = inter
    if lambda1:
        intra_i = _mse(b_image @ b_image.t(), target)
        loss = loss + lambda1 * intra_i
        terms["intra_image"] = intra_i.detach()
    if lambda2:
        intra_t = _mse(b_text @ b_text.t(), target)
        loss = loss + lambda2 * intra_t
        terms["intra_text"] = intra_t.detach()
    return loss, terms


__all__ = ["reconstruction_loss"]
