"""DJSRH: Deep Joint-Semantics Reconstructing Hashing (Su, Zhong, Zhang, ICCV 2019).

Per batch of m pairs (paper eqs. 2-7, Algorithm 1, with the official code's details; see
``docs/djsrh.md`` for every deviation):

* ``S_I``, ``S_T``: cosine similarities of the l2-normalised image features F_I and text
  features F_T, mapped by ``2S - 1``. F_I comes from a *frozen* feature network (feature mode:
  the precomputed features themselves; backbone mode: a frozen pretrained copy in eval mode).
* ``S~ = beta S_I + (1-beta) S_T``; ``S = (1-eta) S~ + eta S~ S~^T / m``; target ``mu S``;
  computed without gradient.
* ``B = tanh(alpha H)`` with ``alpha = sqrt(t)`` at epoch t (counted from 1), rows l2-normalised;
  loss ``lambda1 mse(B_I B_I^T, mu S) + mse(B_I B_T^T, mu S) + lambda2 mse(B_T B_T^T, mu S)``.
* Test codes ``sign(H)``.
* Two SGD optimisers (momentum 0.9, weight decay 5e-4 on every parameter), separate learning rates
  for ImgNet and TxtNet, batch 32 with drop_last.

Hyper-parameters per dataset are presets (``presets/djsrh.yaml``); the ablation variants of the
paper's Table 2 (DJSRH-1 ... DJSRH-6) are overrides in ``presets/djsrh_variants.yaml``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn as nn

from cmhash.errors import CmhashError
from cmhash.methods import METHODS
from cmhash.methods.deep import Batch, DeepHashMethod, InputSpec, TrainingSet
from cmhash.methods.losses import reconstruction_loss
from cmhash.methods.similarity import cosine_similarity_matrix, joint_semantics
from cmhash.nets.backbones import BackboneFeatures, BackboneHashNet, build_backbone
from cmhash.nets.heads import MLPHashNet, relaxed_codes


def alpha_for_epoch(schedule, epoch: int) -> float:
    """``sqrt(epoch)`` for the tightening tanh (epochs from 1), or a constant (DJSRH-6: 1)."""
    if schedule in ("sqrt", None):
        return math.sqrt(max(int(epoch), 1))
    try:
        return float(schedule)
    except (TypeError, ValueError):
        raise CmhashError(f"alpha must be 'sqrt' or a number, got {schedule!r}") from None


@METHODS.register("djsrh")
class DJSRH(DeepHashMethod):
    name: ClassVar[str] = "djsrh"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        # joint-semantics matrix and loss (paper section 3)
        "beta": 0.6,
        "eta": 0.4,
        "mu": 1.5,
        "lambda1": 0.1,
        "lambda2": 0.1,
        "alpha": "sqrt",  # tightening tanh; a number gives a constant alpha (DJSRH-6: 1)
        "rescale_similarity": True,  # S <- 2S - 1 (paper section 4.3)
        # optimisation (paper section 4.3, official train.py)
        "lr_image": 0.001,
        "lr_text": 0.01,
        "optimizer": "sgd",  # one per network (ImgNet, TxtNet), as the official code
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "batch_size": 32,
        "epochs": 80,
        "fused_optimizer": "auto",
        # networks
        "hidden": 4096,  # TxtNet (and feature-mode ImgNet) hidden width
        "image_mode": "features",  # features | backbone
        "backbone": "efficientnet-lite0",  # backbone mode: efficientnet-lite0 | alexnet
        "backbone_weights": None,  # local weights file (AlexNet: torchvision's alexnet-owt-7be5be79.pth)
        "finetune": "all",  # backbone mode: all | fc (AlexNet fc6/fc7 + hash, the paper's Wiki setting)
        "sparse_text": True,  # skip all-zero bag-of-words columns in TxtNet's first layer (same result)
        # cmhash addition (docs/djsrh.md "Input standardisation"): "standardize" feeds each net its feature
        # input centred on the training mean and divided by the training RMS; "none" is the published method
        "input_norm": "none",
        # documentation only: the ablation variant these settings came from
        "variant": "djsrh",
    }
    TEST_HPARAMS: ClassVar[dict[str, Any]] = {"hidden": 64}  # the contract test: a second per fit on tiny data

    def __init__(self, bits: int, **hparams: Any):
        super().__init__(bits, **hparams)
        self.alpha = alpha_for_epoch(self.hparams["alpha"], 1)
        self.feat_net: nn.Module | None = None

    def check_hparams(self, h: dict[str, Any]) -> None:
        for key in ("beta", "eta"):
            if not 0.0 <= float(h[key]) <= 1.0:
                raise CmhashError(f"djsrh: {key} must lie in [0, 1], got {h[key]}")
        self.positive(h, "mu", "lr_image", "lr_text", "batch_size", "epochs", "hidden")
        alpha_for_epoch(h["alpha"], 1)  # validates
        self.check_input_norm(h)

    # ------------------------------------------------------------------ networks
    def build(self, spec: InputSpec, for_training: bool = True) -> None:
        h = self.hparams
        text_net = MLPHashNet(spec.text_dim, self.bits, hidden=int(h["hidden"]), sparse_input=bool(h["sparse_text"]))
        text_net = self.standardized_input("text", text_net, spec.text_dim)
        if spec.image_mode == "features":
            image_net = self.standardized_input("image", MLPHashNet(spec.image_dim, self.bits, hidden=int(h["hidden"]), sparse_input=False), spec.image_dim)
            self.feat_net = None  # F_I are the frozen precomputed features themselves
        else:
            backbone = build_backbone(spec.backbone, spec.backbone_weights, pretrained=for_training)
            self.feat_net = BackboneFeatures(backbone) if for_training else None
            image_net = BackboneHashNet(backbone, self.bits)
        self.nets = nn.ModuleDict({"image": image_net, "text": text_net})

    def param_groups(self) -> dict[str, dict[str, Any]]:
        groups = super().param_groups()
        if self.spec.image_mode == "backbone":
            net = self.nets["image"]
            params = net.backbone.parameters_for(self.spec.finetune) + list(net.hash.parameters())
            groups["image"] = {"params": params, "lr": float(self.hparams["lr_image"])}
        return groups

    # ------------------------------------------------------------------ training
    def on_epoch_start(self, epoch: int, train: TrainingSet | None = None) -> dict[str, float]:
        self.fit_input_statistics(train)
        self.alpha = alpha_for_epoch(self.hparams["alpha"], epoch)
        return {"alpha": self.alpha}

    @torch.no_grad()
    def modality_similarities(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(S_I, S_T)`` of the batch (eq. 2): cosines of the frozen image features and of the text
        features, ``2S - 1`` when ``rescale_similarity``; without gradient. JDSH builds on them too."""
        f_image = batch.image if self.feat_net is None else self.feat_net(batch.image)
        rescale = bool(self.hparams["rescale_similarity"])
        return cosine_similarity_matrix(f_image, rescale), cosine_similarity_matrix(batch.text, rescale)

    @torch.no_grad()
    def target(self, batch: Batch) -> torch.Tensor:
        """``mu * S`` for the batch (eqs. 2-4), without gradient."""
        h = self.hparams
        s = joint_semantics(*self.modality_similarities(batch), float(h["beta"]), float(h["eta"]), int(h["batch_size"]))
        return float(h["mu"]) * s

    def relaxed_pair(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tanh(alpha H_I), tanh(alpha H_T))`` of the batch through the training forward passes."""
        return relaxed_codes(self.fwd["image"](batch.image), self.alpha), relaxed_codes(self.fwd["text"](batch.text), self.alpha)

    def reconstruction(self, b_image: torch.Tensor, b_text: torch.Tensor, target: torch.Tensor):
        """Eq. (5) on l2-normalised relaxed codes: DJSRH's loss and its logged terms (JDSH: its own form)."""
        h = self.hparams
        return reconstruction_loss(b_image, b_text, target, float(h["lambda1"]), float(h["lambda2"]))

    def training_loss(self, batch: Batch):
        target = self.target(batch)
        r_image, r_text = self.relaxed_pair(batch)
        return self.reconstruction(nn.functional.normalize(r_image, dim=1), nn.functional.normalize(r_text, dim=1), target)


__all__ = ["DJSRH", "alpha_for_epoch"]
