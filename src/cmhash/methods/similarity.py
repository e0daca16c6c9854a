"""Batch similarity matrices of DJSRH (paper section 3.1, eqs. 2-3; methods-spec section 2.2).

All functions work on one training batch and are called under ``torch.no_grad()`` by the methods:
the similarity is a fixed target, never a path for gradients.
"""

from __future__ import annotations

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


__all__ = ["code_cosine", "cosine_similarity_matrix", "joint_semantics"]
