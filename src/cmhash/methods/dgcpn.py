"""DGCPN: Deep Graph-neighbor Coherence Preserving Network (Yu, Zhou, Cai, Zhou, Wang, AAAI 2021).

Unsupervised, in the DJSRH lineage (methods-spec section 8; official code Atmegal/DGCPN,
``train_div.py`` ``cal_similarity``, ``loss_cal``, ``train``), on frozen image features:

* **Global similarity over the whole training set** (:func:`dgcpn_similarity`), built at the first
  epoch (``on_epoch_start`` sees the whole training set) from the frozen image features and the
  text features:
  ``S_pair = a1 cos_T + (1 - a1) cos_I``; in each row the ``knn_drop`` smallest entries and the
  self entry are zeroed and the row is normalised to sum 1 (``P``);
  ``S = 2 ((1 - a2) S_pair + a2 scale P P^T) - 1``. A batch reads its block ``S[idx][:, idx]``.
* **Loss** (:func:`dgcpn_loss`) on l2-normalised relaxed codes ``B = tanh(H)`` (alpha fixed at 1):
  ``mse(diag(B_I B_T^T), K)`` + ``dw`` * off-diagonal ``mse(B B^T, S)`` over {TT, IT, II} +
  ``cw`` * the graph-neighbour coherence ``mse(IT, II) + mse(IT, TT) + mse(II, TT) + mse(IT, IT^T)``.
* **Half-real, half-binary optimisation** (:meth:`DGCPN.after_step`): after the joint step, the
  image net takes one more step on the same loss with the text codes replaced by their (detached)
  binary codes ``sign(B_T)``, then the text net likewise against ``sign(B_I)``.
* SGD (momentum 0.9, weight decay 5e-4 as DJSRH), learning rate 0.005 for both nets, batch 32.

What is reconstructed rather than read in the official code is listed in ``docs/dgcpn.md``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from cmhash.errors import CmhashError
from cmhash.methods import METHODS
from cmhash.methods.deep import Batch, DeepHashMethod, InputSpec, TrainingSet
from cmhash.nets.heads import MLPHashNet

#: Largest training set whose n x n similarity is built (float32: 1.6 GB at 20,000 pairs).
MAX_GLOBAL_PAIRS = 20_000


@torch.no_grad()
def dgcpn_similarity(
    f_image: torch.Tensor,
    f_text: torch.Tensor,
    a1: float = 0.01,
    a2: float = 0.3,
    knn_drop: int = 3000,
    scale: float = 4000.0,
) -> torch.Tensor:
    """DGCPN's global similarity of n training pairs (n x n, values roughly in [-1, 1] and above).

    ``a1`` weighs the text cosine, ``knn_drop`` entries per row (the smallest, plus the self entry)
    are zeroed before the row is normalised to ``P``; ``a2 * scale * P P^T`` adds the second-order
    (graph-neighbour) similarity. With ``knn_drop >= n - 1`` every entry but the self one would go:
    an error names the setting.
    """
    n = f_image.shape[0]
    if f_text.shape[0] != n:
        raise CmhashError(f"dgcpn: {n} image rows but {f_text.shape[0]} text rows")
    if not 0 <= int(knn_drop) < n - 1:
        raise CmhashError(f"dgcpn: knn_drop must lie in [0, n - 1) = [0, {n - 1}) for {n} training pairs, got {knn_drop}")
    cos_i = F.normalize(f_image.float(), dim=1) @ F.normalize(f_image.float(), dim=1).t()
    cos_t = F.normalize(f_text.float(), dim=1) @ F.normalize(f_text.float(), dim=1).t()
    s_pair = a1 * cos_t + (1.0 - a1) * cos_i
    keep = torch.ones_like(s_pair, dtype=torch.bool)
    if knn_drop:
        ranked = s_pair.clone().fill_diagonal_(float("inf"))  # the self entry is not one of the smallest
        keep.scatter_(1, ranked.topk(int(knn_drop), dim=1, largest=False).indices, False)
    keep.fill_diagonal_(False)  # and always goes
    p = torch.where(keep, s_pair, torch.zeros_like(s_pair))
    p = p / p.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return 2.0 * ((1.0 - a2) * s_pair + a2 * scale * (p @ p.t())) - 1.0


def _offdiag_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    mask = ~torch.eye(pred.shape[0], dtype=torch.bool, device=pred.device)
    return F.mse_loss(pred[mask], target[mask])


def dgcpn_loss(
    b_image: torch.Tensor,
    b_text: torch.Tensor,
    s: torch.Tensor,
    k: float = 1.5,
    dw: float = 1.0,
    cw: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DGCPN's loss on l2-normalised relaxed codes and the batch block ``s`` of the global similarity."""
    s = s.detach()
    ii, tt, it = b_image @ b_image.t(), b_text @ b_text.t(), b_image @ b_text.t()
    diag = F.mse_loss(torch.diagonal(it), torch.full_like(torch.diagonal(it), float(k)))
    recon = _offdiag_mse(tt, s) + _offdiag_mse(it, s) + _offdiag_mse(ii, s)
    coherence = F.mse_loss(it, ii) + F.mse_loss(it, tt) + F.mse_loss(ii, tt) + F.mse_loss(it, it.t())
    loss = diag + dw * recon + cw * coherence
    return loss, {"paired": diag.detach(), "reconstruction": recon.detach(), "coherence": coherence.detach()}


def _codes(h: torch.Tensor) -> torch.Tensor:
    return F.normalize(torch.tanh(h), dim=1)


def _binary(h: torch.Tensor) -> torch.Tensor:
    """Detached binary codes (sign, zero -> +1), l2-normalised like the relaxed ones."""
    b = torch.where(h >= 0, torch.ones_like(h), -torch.ones_like(h)).detach()
    return b / b.shape[1] ** 0.5


@METHODS.register("dgcpn")
class DGCPN(DeepHashMethod):
    name: ClassVar[str] = "dgcpn"
    #: shrinks the contract test (tests/test_method_contract.py) on tiny data
    TEST_HPARAMS: ClassVar[dict[str, Any]] = {"hidden": 64}
    DEFAULTS: ClassVar[dict[str, Any]] = {
        # global similarity (official cal_similarity)
        "a1": 0.01,  # weight of the text cosine
        "a2": 0.3,  # weight of the second-order term
        "knn_drop": 3000,  # smallest entries zeroed per row before P (official knn_number)
        "scale": 4000.0,
        # loss (official loss_cal)
        "k": 1.5,  # target of the paired cosines diag(B_I B_T^T)
        "dw": 1.0,
        "cw": 1.0,
        "binary_steps": True,  # half-real half-binary: each net also steps against the other's sign codes
        # optimisation
        "lr_image": 0.005,
        "lr_text": 0.005,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "batch_size": 32,
        "epochs": 40,
        "fused_optimizer": "auto",
        # networks (DJSRH's: frozen features -> MLP head; TxtNet MLP)
        "hidden": 4096,
        "image_mode": "features",
        "sparse_text": True,
        # cmhash: "standardize" centres each modality's net input on the training mean and divides it by
        # the training RMS (docs/dgcpn.md: without it DGCPN collapses to one code on Wiki)
        "input_norm": "none",
        "variant": "dgcpn",
    }

    def __init__(self, bits: int, **hparams: Any):
        super().__init__(bits, **hparams)
        h = self.hparams
        for key in ("a1", "a2"):
            if not 0.0 <= float(h[key]) <= 1.0:
                raise CmhashError(f"dgcpn: {key} must lie in [0, 1], got {h[key]}")
        for key in ("lr_image", "lr_text", "batch_size", "epochs", "hidden", "scale"):
            if float(h[key]) <= 0:
                raise CmhashError(f"dgcpn: {key} must be positive, got {h[key]}")
        self.check_input_norm(h)
        if h["image_mode"] != "features":
            raise CmhashError("dgcpn: only feature mode is implemented (frozen image features, as the official code's VGG-19 fc7)")
        self.similarity: torch.Tensor | None = None

    def build(self, spec: InputSpec, for_training: bool = True) -> None:
        h = self.hparams
        # input_norm standardize (Wiki preset): centred inputs are dense, so the sparse path of the text layer idles
        image_net = MLPHashNet(spec.image_dim, self.bits, hidden=int(h["hidden"]), sparse_input=False)
        text_net = MLPHashNet(spec.text_dim, self.bits, hidden=int(h["hidden"]), sparse_input=bool(h["sparse_text"]))
        self.nets = nn.ModuleDict(
            {
                "image": self.standardized_input("image", image_net, spec.image_dim),
                "text": self.standardized_input("text", text_net, spec.text_dim),
            }
        )

    def on_epoch_start(self, epoch: int, train: TrainingSet | None = None) -> dict[str, float]:
        """Builds the global similarity once (first epoch, or the first epoch of a resumed run)."""
        self.fit_input_statistics(train)
        if self.similarity is None:
            if train is None or train.image is None:
                raise CmhashError("dgcpn needs the frozen image features of the whole training set (feature mode)")
            n = len(train)
            if n > MAX_GLOBAL_PAIRS:
                raise CmhashError(
                    f"dgcpn: the global similarity of {n} training pairs needs {n * n * 4 / 2**30:.1f} GiB; "
                    f"use at most {MAX_GLOBAL_PAIRS} training pairs (split option num_train)"
                )
            h = self.hparams
            knn_drop = min(int(h["knn_drop"]), n - 2)  # a preset made for more pairs keeps at least one neighbour
            self.similarity = dgcpn_similarity(train.image, train.text, float(h["a1"]), float(h["a2"]), knn_drop, float(h["scale"]))
            return {"knn_drop": float(knn_drop)}
        return {}

    def _block(self, batch: Batch) -> torch.Tensor:
        if self.similarity is None:
            raise CmhashError("dgcpn: the global similarity is missing (built by on_epoch_start)")
        idx = batch.index.to(self.similarity.device)
        return self.similarity.index_select(0, idx).index_select(1, idx)

    def _loss(self, b_image, b_text, s):
        h = self.hparams
        return dgcpn_loss(b_image, b_text, s, float(h["k"]), float(h["dw"]), float(h["cw"]))

    def training_loss(self, batch: Batch):
        s = self._block(batch)
        return self._loss(_codes(self.fwd["image"](batch.image)), _codes(self.fwd["text"](batch.text)), s)

    def after_step(self, batch: Batch, optimizers: dict[str, Any]) -> dict[str, Any]:
        """The binary half: image net against sign(B_T), then text net against sign(B_I).

        The text net does not change during the image half, so its output is computed once (with
        its graph) and serves both as sign(B_T) for the image half and as B_T for the text half:
        the same numbers as two forward passes, one pass fewer per step.
        """
        if not self.hparams["binary_steps"]:
            return {}
        s = self._block(batch)
        out = {}
        h_text = self.fwd["text"](batch.text)
        b_image = _codes(self.fwd["image"](batch.image))
        loss, _ = self._loss(b_image, _binary(h_text), s)
        out["binary_image"] = self._step(optimizers["image"], loss)
        with torch.no_grad():
            b_image_bin = _binary(self.fwd["image"](batch.image))
        loss, _ = self._loss(b_image_bin, _codes(h_text), s)
        out["binary_text"] = self._step(optimizers["text"], loss)
        return out

    @staticmethod
    def _step(opt, loss: torch.Tensor) -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()


__all__ = ["DGCPN", "dgcpn_loss", "dgcpn_similarity"]
