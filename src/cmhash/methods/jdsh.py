"""JDSH: Joint-modal Distribution-based Similarity Hashing (Liu et al., SIGIR 2020).

DJSRH's successor: the same batch-wise reconstruction of a similarity target by code cosines, with
a different target (methods-spec section 3; ``docs/jdsh.md`` lists every detail followed or fixed):

* ``S_I``, ``S_T``: ``2 cos - 1`` of the frozen image features and of the text features (as DJSRH);
* joint-modal similarity ``S_ = w_I S_I + w_T S_T + w_high S_high`` (:func:`jdsh_joint_similarity`);
* DSDW re-weights the entries decided dissimilar / similar by thresholds from a fitted
  distribution of S_ (:func:`dsdw_weighting`); target ``mu * DSDW(S_)``;
* loss :func:`~cmhash.methods.losses.jdsh_loss`; ``B = tanh(alpha H)``, alpha = sqrt(epoch);
  SGD (momentum 0.9, weight decay 5e-4), batch 32, lr 0.01 for both networks; test codes sign(H).

Two variants of the official code (``jdsh_variant``): ``head`` (the published code, default) and
``v2020_05`` (the May-2020 code, contemporaneous with the paper). HEAD's ImgNet is a frozen
AlexNet with a trained ``Linear(4096, K)``: in feature mode ``image_head: linear`` is exactly that
over the precomputed features; ``image_head: mlp`` gives DJSRH's MLP head (May-2020 fine-tunes
the whole AlexNet, so its preset uses ``mlp``).

DSDW constants: ``dsdw: shipped`` uses the ``dsdw_*`` values (the official configs' numbers in the
presets); ``dsdw: fit`` estimates them from the training pairs before training
(:mod:`cmhash.methods.dsdw_fit`, a cmhash addition); ``dsdw: off`` skips DSDW (ablation).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn as nn

from cmhash.errors import CmhashError
from cmhash.methods import METHODS
from cmhash.methods.deep import Batch, InputSpec
from cmhash.methods.djsrh import DJSRH, alpha_for_epoch
from cmhash.methods.losses import jdsh_loss
from cmhash.methods.similarity import JDSH_VARIANTS, DSDWConstants, dsdw_weighting, jdsh_joint_similarity

DSDW_MODES = ("shipped", "fit", "off")


@METHODS.register("jdsh")
class JDSH(DJSRH):
    name: ClassVar[str] = "jdsh"
    #: small networks for the contract test's tiny fits
    TEST_HPARAMS: ClassVar[dict[str, Any]] = {"hidden": 32, "dsdw_fit_batches": 5}
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "jdsh_variant": "head",  # head | v2020_05
        # joint-modal similarity (official config names: alpha, beta, lamb) and target scale
        "weight_image": 0.5,
        "weight_text": 0.1,
        "weight_high": 0.4,
        "mu": 1.4,
        "intra": 0.1,  # weight of the intra-modal terms (official INTRA)
        # DSDW (official MIRFlickr config; see presets/jdsh.yaml)
        "dsdw": "shipped",  # shipped | fit | off
        "dsdw_loc_left": -0.49,
        "dsdw_scale_left": 0.019,
        "dsdw_alpha": 2.0,
        "dsdw_loc_right": -0.49,
        "dsdw_scale_right": 0.088,
        "dsdw_beta": 4.0,
        "dsdw_min": -0.52,
        "dsdw_max": 0.68,
        "dsdw_l1": 0.1,
        "dsdw_l2": 0.2,
        "dsdw_fit_batches": 200,  # random training batches pooled by dsdw: fit
        "alpha": "sqrt",
        "rescale_similarity": True,
        # optimisation (official config)
        "lr_image": 0.01,
        "lr_text": 0.01,
        "optimizer": "sgd",  # one per network, as the official code
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "batch_size": 32,
        "epochs": 300,
        "fused_optimizer": "auto",
        # networks
        "hidden": 4096,
        "image_head": "linear",  # feature mode: linear (HEAD: frozen backbone + hash layer) | mlp
        "image_mode": "features",
        "backbone": "efficientnet-lite0",
        "backbone_weights": None,
        "finetune": "none",  # backbone mode; HEAD freezes the backbone
        "sparse_text": True,
        "input_norm": "none",  # cmhash addition, as DJSRH's (docs/djsrh.md "Input standardisation")
        "variant": "jdsh",  # documentation only (set by --variant)
    }

    def __init__(self, bits: int, **hparams: Any):
        super().__init__(bits, **hparams)
        self.dsdw_fit_summary: dict[str, Any] | None = None

    def check_hparams(self, h: dict[str, Any]) -> None:
        if h["jdsh_variant"] not in JDSH_VARIANTS:
            raise CmhashError(f"jdsh: jdsh_variant must be one of {', '.join(JDSH_VARIANTS)}, got {h['jdsh_variant']!r}")
        if h["dsdw"] not in DSDW_MODES:
            raise CmhashError(f"jdsh: dsdw must be one of {', '.join(DSDW_MODES)}, got {h['dsdw']!r}")
        if h["image_head"] not in ("linear", "mlp"):
            raise CmhashError(f"jdsh: image_head must be linear or mlp, got {h['image_head']!r}")
        self.positive(h, "mu", "lr_image", "lr_text", "batch_size", "epochs", "hidden", "dsdw_fit_batches")
        alpha_for_epoch(h["alpha"], 1)  # validates
        self.check_input_norm(h)
        try:
            DSDWConstants.from_hparams(h)
        except (TypeError, ValueError) as exc:
            raise CmhashError(f"jdsh: DSDW constants must be numbers ({exc})") from None

    def dsdw_constants(self) -> DSDWConstants:
        return DSDWConstants.from_hparams(self.hparams)

    # ------------------------------------------------------------------ networks
    def build(self, spec: InputSpec, for_training: bool = True) -> None:
        super().build(spec, for_training)
        if spec.image_mode == "features" and self.hparams["image_head"] == "linear":
            self.nets["image"] = self.standardized_input("image", nn.Linear(spec.image_dim, self.bits), spec.image_dim)

    # ------------------------------------------------------------------ DSDW fitter
    def fit(self, train, **kwargs):
        if self.hparams["dsdw"] == "fit" and not self.built:
            self.fit_dsdw(train)
        return super().fit(train, **kwargs)

    def fit_dsdw(self, train) -> dict[str, Any]:
        """Replace the ``dsdw_*`` constants by a split-normal fit to the training pairs' S_ (cmhash addition)."""
        from cmhash.methods.dsdw_fit import fit_dsdw_constants, pooled_joint_similarities

        if train.image_features is None or train.text_features is None:
            raise CmhashError("jdsh: dsdw: fit needs precomputed image and text features of the training pairs (feature mode)")
        h = self.hparams
        values = pooled_joint_similarities(
            train.image_features,
            train.text_features,
            alpha=float(h["weight_image"]),
            beta=float(h["weight_text"]),
            lamb=float(h["weight_high"]),
            variant=h["jdsh_variant"],
            batch_size=int(h["batch_size"]),
            num_batches=int(h["dsdw_fit_batches"]),
            seed=0 if self.seed is None else int(self.seed),
            rescale=bool(h["rescale_similarity"]),
        )
        fitted, summary = fit_dsdw_constants(values, self.dsdw_constants())
        for f in DSDWConstants.__dataclass_fields__:
            h[f"dsdw_{f}"] = float(getattr(fitted, f))
        self.dsdw_fit_summary = summary
        return summary

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def joint_similarity(self, batch: Batch) -> torch.Tensor:
        """S_ of the batch (before DSDW and mu)."""
        h = self.hparams
        s_image, s_text = self.modality_similarities(batch)
        return jdsh_joint_similarity(s_image, s_text, float(h["weight_image"]), float(h["weight_text"]), float(h["weight_high"]), h["jdsh_variant"])

    @torch.no_grad()
    def target(self, batch: Batch) -> torch.Tensor:
        """``mu * DSDW(S_)`` without gradient."""
        s = self.joint_similarity(batch)
        if self.hparams["dsdw"] != "off":
            s = dsdw_weighting(s, self.dsdw_constants(), self.hparams["jdsh_variant"])
        return float(self.hparams["mu"]) * s

    def reconstruction(self, b_image: torch.Tensor, b_text: torch.Tensor, target: torch.Tensor):
        """JDSH's loss (:func:`~cmhash.methods.losses.jdsh_loss`) in place of DJSRH's; the rest of
        :meth:`DJSRH.training_loss` (target, relaxed codes, normalisation) is shared."""
        return jdsh_loss(b_image, b_text, target, float(self.hparams["intra"]), self.hparams["jdsh_variant"])


__all__ = ["DSDW_MODES", "JDSH"]
