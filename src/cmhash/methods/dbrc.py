"""DBRC: Deep Binary Reconstruction for cross-modal hashing (Hu, Nie, Li, ACM MM 2017 / TMM 2019).

An unsupervised multimodal autoencoder whose bottleneck is the hash layer (methods-spec section 6;
``docs/dbrc.md`` says which parts are the paper's, which follow a third-party port, and which are
reconstructions because the sources are silent):

* encoders image -> ``enc_hidden`` and text -> ``enc_hidden`` (ReLU), concatenated, a joint layer
  (``joint_hidden``, ReLU), then the hash layer ``z`` (``bits`` units);
* Adaptive Tanh (ATanh): ``b = tanh(scale * z)`` with a learnable per-bit ``scale`` (initialised to 1)
  and the penalty ``lambda ||1 / scale||^2`` in the loss, so the scales grow and b approaches +-1;
* decoders from b back to both modalities; loss = reconstruction error of both modalities
  (:func:`~cmhash.methods.losses.dbrc_reconstruction_loss`) summed over three views of each batch,
  (image, text), (image, 0) and (0, text), plus the scale penalty;
* a single-modality item is coded with the other modality zeroed: codes ``sign(z)`` (= sign(b));
* RMSProp (lr 1e-3), batch 128, as the third-party TensorFlow port.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from cmhash.errors import CmhashError
from cmhash.methods import METHODS
from cmhash.methods.deep import Batch, DeepHashMethod, InputSpec
from cmhash.methods.losses import dbrc_reconstruction_loss, inverse_scale_penalty
from cmhash.methods.networks import SparseAwareLinear


class DBRCNet(nn.Module):
    """The multimodal binary autoencoder; ``code(image, text)`` takes ``None`` for a missing modality."""

    def __init__(self, image_dim: int, text_dim: int, bits: int, enc_hidden: int = 512, joint_hidden: int = 512, sparse_text: bool = True):
        super().__init__()
        self.image_dim, self.text_dim, self.bits = int(image_dim), int(text_dim), int(bits)
        self.enc_image = nn.Linear(self.image_dim, enc_hidden)
        self.enc_text = SparseAwareLinear(self.text_dim, enc_hidden, sparse_input=sparse_text)
        self.joint = nn.Linear(2 * enc_hidden, joint_hidden)
        self.hash = nn.Linear(joint_hidden, self.bits)
        self.scale = nn.Parameter(torch.ones(self.bits))  # ATanh scales
        self.dec_image = nn.Sequential(nn.Linear(self.bits, enc_hidden), nn.ReLU(), nn.Linear(enc_hidden, self.image_dim))
        self.dec_text = nn.Sequential(nn.Linear(self.bits, enc_hidden), nn.ReLU(), nn.Linear(enc_hidden, self.text_dim))

    def hidden(self, image: torch.Tensor | None, text: torch.Tensor | None) -> torch.Tensor:
        """Pre-activation hash layer z; a missing modality contributes a zero input (multimodal-autoencoder style)."""
        if image is None and text is None:
            raise CmhashError("DBRC needs at least one modality")
        ref = image if image is not None else text
        n = ref.shape[0]
        hi = F.relu(self.enc_image(image)) if image is not None else F.relu(self.enc_image.bias).expand(n, -1)
        ht = F.relu(self.enc_text(text)) if text is not None else F.relu(self.enc_text.bias).expand(n, -1)
        return self.hash(F.relu(self.joint(torch.cat([hi, ht], dim=1))))

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """ATanh: ``tanh(scale * z)``."""
        return torch.tanh(self.scale * z)

    def reconstruct(self, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dec_image(b), self.dec_text(b)


class _ModalityView(nn.Module):
    """``nets['image']`` / ``nets['text']``: the joint net with the other modality zeroed (owns no parameters)."""

    def __init__(self, net: DBRCNet, modality: str):
        super().__init__()
        object.__setattr__(self, "_net", net)  # not registered: the weights live once, under nets['joint']
        self.modality = modality

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._net.hidden(x, None) if self.modality == "image" else self._net.hidden(None, x)

    def train(self, mode: bool = True) -> "_ModalityView":
        self._net.train(mode)
        return super().train(mode)


@METHODS.register("dbrc")
class DBRC(DeepHashMethod):
    name: ClassVar[str] = "dbrc"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "enc_hidden": 512,
        "joint_hidden": 512,
        "scale_penalty": 0.001,  # lambda of ||1/scale||^2 (the third-party port's constant)
        "views": "all",  # all: (I,T), (I,0), (0,T) per batch | paired: (I,T) only
        "lr": 0.001,
        "rmsprop_alpha": 0.9,  # TensorFlow RMSProp decay
        "rmsprop_eps": 1e-10,
        "weight_decay": 0.0,
        "batch_size": 128,
        "epochs": 64,  # ~2,500 iterations of 128 pairs on 5,000 training pairs, as the third-party port
        "sparse_text": True,
        "image_mode": "features",
        "variant": "dbrc",
    }

    def __init__(self, bits: int, **hparams: Any):
        super().__init__(bits, **hparams)
        h = self.hparams
        for key in ("enc_hidden", "joint_hidden", "lr", "batch_size", "epochs"):
            if float(h[key]) <= 0:
                raise CmhashError(f"dbrc: {key} must be positive, got {h[key]}")
        if float(h["scale_penalty"]) < 0:
            raise CmhashError(f"dbrc: scale_penalty must be >= 0, got {h['scale_penalty']}")
        if h["views"] not in ("all", "paired"):
            raise CmhashError(f"dbrc: views must be all or paired, got {h['views']!r}")
        if h["image_mode"] != "features":
            raise CmhashError("dbrc: only feature mode is supported (precomputed image features, as the paper's fc7 input)")

    def build(self, spec: InputSpec, for_training: bool = True) -> None:
        h = self.hparams
        net = DBRCNet(spec.image_dim, spec.text_dim, self.bits, int(h["enc_hidden"]), int(h["joint_hidden"]), bool(h["sparse_text"]))
        self.nets = nn.ModuleDict({"joint": net, "image": _ModalityView(net, "image"), "text": _ModalityView(net, "text")})

    def make_optimizers(self) -> dict[str, Any]:
        """One RMSProp over every parameter, the ATanh scales included."""
        h = self.hparams
        net = self.nets["joint"]
        opt = torch.optim.RMSprop(
            net.parameters(), lr=float(h["lr"]), alpha=float(h["rmsprop_alpha"]), eps=float(h["rmsprop_eps"]), weight_decay=float(h["weight_decay"])
        )
        return {"joint": opt}

    def training_loss(self, batch: Batch):
        net = self.fwd.get("joint", self.nets["joint"])
        views = [(batch.image, batch.text)]
        if self.hparams["views"] == "all":
            views += [(batch.image, None), (None, batch.text)]
        loss = 0.0
        logs: dict[str, torch.Tensor] = {}
        for name, (img, txt) in zip(("both", "image_only", "text_only"), views):
            b = net.codes(net.hidden(img, txt))
            ri, rt = net.reconstruct(b)
            part, _ = dbrc_reconstruction_loss(ri, rt, batch.image, batch.text)
            loss = loss + part
            logs[f"recon_{name}"] = part.detach()
        penalty = inverse_scale_penalty(net.scale)
        logs["scale_mean"] = net.scale.detach().abs().mean()
        return loss + float(self.hparams["scale_penalty"]) * penalty, logs


__all__ = ["DBRC", "DBRCNet"]
