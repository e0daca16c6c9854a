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


def jdsh_loss(
    b_image: torch.Tensor, b_text: torch.Tensor, target: torch.Tensor, intra: float = 0.1, variant: str = "head"
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """JDSH's loss on l2-normalised relaxed codes (methods-spec 3.1 ``cal_loss`` / 3.2).

    ``head``: ``intra mse(B_I B_I^T, T) + mse(B_I B_T^T, T) + mse(B_T B_I^T, T) - mean_i <B_I[i], B_T[i]>
    + intra mse(B_T B_T^T, T)``. ``v2020_05``: the DJSRH form with ``lambda1 = lambda2 = intra``.
    """
    loss, terms = reconstruction_loss(b_image, b_text, target, intra, intra)
    if variant == "v2020_05":
        return loss, terms
    if variant != "head":
        raise ValueError(f"JDSH variant must be 'head' or 'v2020_05', got {variant!r}")
    inter_ti = _mse(b_text @ b_image.t(), target.detach())
    paired = (b_image * b_text).sum(dim=1).mean()
    terms["inter_ti"] = inter_ti.detach()
    terms["paired_cosine"] = paired.detach()
    return loss + inter_ti - paired, terms


def inverse_scale_penalty(scale: torch.Tensor) -> torch.Tensor:
    """``||1 / scale||^2`` of DBRC's adaptive tanh: small when the learnable scales grow (codes near +-1)."""
    return (scale.reciprocal() ** 2).sum()


def dbrc_reconstruction_loss(
    recon_image: torch.Tensor, recon_text: torch.Tensor, image: torch.Tensor, text: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DBRC's reconstruction error of both modalities: mean squared error per modality, summed.

    Each modality's error is a mean over its own entries, so a 1,386-d bag-of-words and a 1,280-d
    image feature weigh the same whatever their widths (a cmhash choice; the sources are silent).
    """
    li = _mse(recon_image, image.detach())
    lt = _mse(recon_text, text.detach())
    return li + lt, {"recon_image": li.detach(), "recon_text": lt.detach()}


__all__ = ["dbrc_reconstruction_loss", "inverse_scale_penalty", "jdsh_loss", "reconstruction_loss"]


# ----------------------------------------------------------------------------- DVSH
def pair_signs(labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """s_ij = +1 when items i and j share at least one label, else -1 (multi-hot rows)."""
    shared = labels_a.float() @ labels_b.float().t()
    return torch.where(shared > 0, 1.0, -1.0)


def cosine_margin_loss(a: torch.Tensor, b: torch.Tensor, signs: torch.Tensor, margin: float = 0.5, negative_margin: float | None = None, balance: bool = True) -> torch.Tensor:
    """DVSH's cosine max-margin loss over labelled pairs (methods-spec section 4).

    Spec form (``negative_margin=None``): ``max(0, margin - s_ij cos(a_i, b_j))``, i.e. similar
    pairs pushed to cos >= margin and dissimilar ones to cos <= -margin. ``negative_margin=m``
    asks only cos <= m of dissimilar pairs (0: orthogonal, reachable by many classes at once).
    ``balance`` averages similar and dissimilar pairs separately and adds the two means, so rare
    positive pairs (one in a batch for pair-identity data) are not swamped.
    """
    cos = F.normalize(a, dim=1) @ F.normalize(b, dim=1).t()
    pos = signs > 0
    neg_m = margin if negative_margin is None else -float(negative_margin)
    hinge = torch.where(pos, F.relu(margin - cos), F.relu(neg_m + cos))
    if not balance:
        return hinge.mean()
    out = hinge.new_zeros(())
    if pos.any():
        out = out + hinge[pos].mean()
    if (~pos).any():
        out = out + hinge[~pos].mean()
    return out


def bitwise_margin_loss(h: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """DVSH's bit-wise max-margin quantisation loss: mean over bits of ``max(0, margin - |h_ik|)``."""
    return F.relu(margin - h.abs()).mean()


__all__ = ["reconstruction_loss", "pair_signs", "cosine_margin_loss", "bitwise_margin_loss"]
