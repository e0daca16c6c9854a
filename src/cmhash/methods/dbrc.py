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
from cmhash.nets.heads import SparseAwareLinear


class Encoder(nn.Module):
    """One modality's encoder ``Linear -> ReLU`` (``nets['image']`` / ``nets['text']``)."""

    def __init__(self, in_dim: int, hidden: int, sparse_input: bool = False):
        super().__init__()
        self.fc = SparseAwareLinear(int(in_dim), int(hidden), sparse_input=sparse_input)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(x))

    def missing(self, n: int) -> torch.Tensor:
        """The encoding of an all-zero input (a missing modality): ``relu(bias)`` for every row."""
        return F.relu(self.fc.bias).expand(n, -1)


class Fusion(nn.Module):
    """Joint layer, hash layer, ATanh scales (one per bit) and both decoders (``nets['fusion']``)."""

    def __init__(self, image_dim: int, text_dim: int, bits: int, enc_hidden: int = 512, joint_hidden: int = 512):
        super().__init__()
        self.joint = nn.Linear(2 * enc_hidden, joint_hidden)
        self.hash = nn.Linear(joint_hidden, int(bits))
        self.scale = nn.Parameter(torch.ones(int(bits)))
        self.dec_image = nn.Sequential(nn.Linear(int(bits), enc_hidden), nn.ReLU(), nn.Linear(enc_hidden, int(image_dim)))
        self.dec_text = nn.Sequential(nn.Linear(int(bits), enc_hidden), nn.ReLU(), nn.Linear(enc_hidden, int(text_dim)))

    def hidden(self, h_image: torch.Tensor, h_text: torch.Tensor) -> torch.Tensor:
        """Pre-activation hash layer z from the two encodings."""
        return self.hash(F.relu(self.joint(torch.cat([h_image, h_text], dim=1))))

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """ATanh: ``tanh(scale * z)``."""
        return torch.tanh(self.scale * z)

    def reconstruct(self, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dec_image(b), self.dec_text(b)

    def forward(self, h_image: torch.Tensor, h_text: torch.Tensor):
        """Training pass (one call, so a DDP wrapper sees every parameter): ``(b, recon_image, recon_text)``."""
        b = self.codes(self.hidden(h_image, h_text))
        return (b, *self.reconstruct(b))


@METHODS.register("dbrc")
class DBRC(DeepHashMethod):
    name: ClassVar[str] = "dbrc"
    #: small networks for the contract test's tiny fits
    TEST_HPARAMS: ClassVar[dict[str, Any]] = {"enc_hidden": 32, "joint_hidden": 32}
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "enc_hidden": 512,
        "joint_hidden": 512,
        "scale_penalty": 0.001,  # lambda of ||1/scale||^2 (the third-party port's constant)
        "views": "all",  # all: (I,T), (I,0), (0,T) per batch | paired: (I,T) only
        "lr": 0.001,
        "optimizer": "rmsprop",
        "rmsprop_alpha": 0.9,  # TensorFlow RMSProp decay
        "rmsprop_eps": 1e-10,
        "weight_decay": 0.0,
        "batch_size": 128,
        "epochs": 64,  # ~2,500 iterations of 128 pairs on 5,000 training pairs, as the third-party port
        "sparse_text": True,
        "image_mode": "features",
        "variant": "dbrc",
    }

    def check_hparams(self, h: dict[str, Any]) -> None:
        self.positive(h, "enc_hidden", "joint_hidden", "lr", "batch_size", "epochs")
        if float(h["scale_penalty"]) < 0:
            raise CmhashError(f"dbrc: scale_penalty must be >= 0, got {h['scale_penalty']}")
        if h["views"] not in ("all", "paired"):
            raise CmhashError(f"dbrc: views must be all or paired, got {h['views']!r}")
        if h["image_mode"] != "features":
            raise CmhashError("dbrc: only feature mode is supported (precomputed image features, as the paper's fc7 input)")

    def build(self, spec: InputSpec, for_training: bool = True) -> None:
        h = self.hparams
        enc = int(h["enc_hidden"])
        self.nets = nn.ModuleDict(
            {
                "image": Encoder(spec.image_dim, enc),
                "text": Encoder(spec.text_dim, enc, sparse_input=bool(h["sparse_text"])),
                "fusion": Fusion(spec.image_dim, spec.text_dim, self.bits, enc, int(h["joint_hidden"])),
            }
        )

    def param_groups(self) -> dict[str, dict[str, Any]]:
        """One RMSProp over every parameter, the ATanh scales included (the third-party port's optimiser)."""
        h = self.hparams
        params = [p for p in self.nets.parameters() if p.requires_grad]
        return {"all": {"params": params, "lr": float(h["lr"]), "optimizer": "rmsprop", "alpha": float(h["rmsprop_alpha"]), "eps": float(h["rmsprop_eps"])}}

    def _encodings(self, image: torch.Tensor | None, text: torch.Tensor | None, fwd) -> tuple[torch.Tensor, torch.Tensor]:
        """Both encodings, a missing modality as the encoding of zeros; ``fwd``: the modules to call (DDP wrappers while training)."""
        n = (image if image is not None else text).shape[0]
        hi = fwd["image"](image) if image is not None else self.nets["image"].missing(n)
        ht = fwd["text"](text) if text is not None else self.nets["text"].missing(n)
        return hi, ht

    def hash_output(self, modality: str, x):
        """z of a single-modality input, the other modality zeroed; codes ``sign(z)`` = sign(ATanh(z))."""
        pair = (x, None) if modality == "image" else (None, x)
        return self.nets["fusion"].hidden(*self._encodings(*pair, self.nets))

    def training_loss(self, batch: Batch):
        fusion = self.nets["fusion"]
        views = [(batch.image, batch.text)]
        if self.hparams["views"] == "all":
            views += [(batch.image, None), (None, batch.text)]
        loss = 0.0
        logs: dict[str, torch.Tensor] = {}
        for name, (img, txt) in zip(("both", "image_only", "text_only"), views):
            _, ri, rt = self.fwd["fusion"](*self._encodings(img, txt, self.fwd))
            part, _ = dbrc_reconstruction_loss(ri, rt, batch.image, batch.text)
            loss = loss + part
            logs[f"recon_{name}"] = part.detach()
        penalty = inverse_scale_penalty(fusion.scale)
        logs["scale_mean"] = fusion.scale.detach().abs().mean()
        return loss + float(self.hparams["scale_penalty"]) * penalty, logs


__all__ = ["DBRC", "Encoder", "Fusion"]
