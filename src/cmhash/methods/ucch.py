"""UCCH: Unsupervised Contrastive Cross-modal Hashing (Hu, Zhu, Lin, Peng, Zhao, Peng, TPAMI 2023).

Facts from the official code (penghu-cs/UCCH: ``UCCH.py``, ``NCE/NCEAverage.py``,
``NCE/NCECriterion.py``, ``src/utils.py`` ``ContrastiveLoss``, ``nets/*.py``, ``utils/config.py``,
README command for MIRFlickr features; methods-spec section 8), trained by the shared trainer:

* **Networks**: MLPs over the (frozen) features, ``image_layers`` / ``text_layers`` linear layers
  (official 3 / 2, hidden width 8192, ReLU), output ``H``; the code used in training is the
  l2-normalised ``tanh(H)``; test codes are ``sign(H)`` (the same signs).
* **Contrastive hashing with a binary memory** (:class:`BinaryMemory`, :func:`memory_logits`): one
  memory row per training pair, initialised to normalised random signs. Each pair's image code and
  text code are scored against the *signs* of its own memory row (the positive) and of ``K``
  uniformly drawn rows, divided by ``T sqrt(bits)``; the loss is the softmax cross-entropy of the
  positive, for each modality. After scoring, the row moves to
  ``normalise(m row + (1 - m) normalise((b_I + b_T) / 2))`` (the "momentum optimiser").
  During the ``warmup_epochs`` the memory is not read: the negatives are the other pairs of the
  batch (signs of their mean codes) and the momentum is 0.
* **Cross-modal ranking loss** (:func:`ranking_loss`) on the batch's image-text cosines: for each
  row (and each column), every score below the positive minus ``margin`` is lowered by ``shift``
  before a log-sum-exp; loss ``mean(-s_ii + logsumexp + margin)`` both ways.
* Loss ``alpha L_c + (1 - alpha) L_r``; gradient norm clipped at 1 (both nets together); **one
  Adam** over both nets, learning rate 1e-4, weight decay 1e-6, batch 256, 20 epochs.

What is reconstructed or changed is listed in ``docs/ucch.md``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from cmhash.errors import CmhashError
from cmhash.methods import METHODS
from cmhash.methods.deep import Batch, DeepHashMethod, InputSpec, TrainingSet


class UCCHNet(nn.Module):
    """``layers`` linear layers with ReLU between them: in -> hidden ... -> bits (1 layer: in -> bits)."""

    def __init__(self, in_dim: int, bits: int, hidden: int, layers: int):
        super().__init__()
        if int(layers) < 1:
            raise CmhashError(f"ucch: a network needs at least one layer, got {layers}")
        dims = [int(in_dim)] + [int(hidden)] * (int(layers) - 1) + [int(bits)]
        mods: list[nn.Module] = []
        for i in range(len(dims) - 1):
            mods.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                mods.append(nn.ReLU())
        self.fc = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def ucch_codes(h: torch.Tensor) -> torch.Tensor:
    """The training codes: l2-normalised ``tanh(H)``."""
    return F.normalize(torch.tanh(h), dim=1)


class BinaryMemory(nn.Module):
    """One row per training pair (a buffer, so checkpoints keep it and resume continues it)."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = int(bits)
        self.register_buffer("memory", torch.zeros(0, self.bits))

    def reset(self, n: int, generator: torch.Generator | None = None) -> None:
        """Normalised signs of ``randn * 2 stdv - stdv`` with ``stdv = 1 / sqrt(bits / 3)`` (official init)."""
        stdv = 1.0 / math.sqrt(self.bits / 3.0)
        rnd = torch.randn(int(n), self.bits, generator=generator).mul_(2 * stdv).add_(-stdv)
        sign = torch.where(rnd >= 0, torch.ones_like(rnd), -torch.ones_like(rnd))
        self.memory = F.normalize(sign, dim=1).to(self.memory.device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "memory"
        if key in state_dict and state_dict[key].shape != self.memory.shape:
            self.memory = torch.zeros_like(state_dict[key], device=self.memory.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def update(self, idx: torch.Tensor, b_image: torch.Tensor, b_text: torch.Tensor, momentum: float) -> None:
        mean = F.normalize((b_image + b_text) / 2.0, dim=1)
        row = self.memory.index_select(0, idx) * momentum + mean * (1.0 - momentum)
        self.memory.index_copy_(0, idx, F.normalize(row, dim=1))


def memory_logits(
    b_image: torch.Tensor,
    b_text: torch.Tensor,
    weight: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores (batch, 1 + negatives) of each code against ``sign(weight)``; column 0 is the positive."""
    w = torch.where(weight >= 0, torch.ones_like(weight), -torch.ones_like(weight)).detach()
    t = float(temperature) * math.sqrt(b_image.shape[1])
    out_i = torch.bmm(w, b_image.unsqueeze(2)).squeeze(2) / t
    out_t = torch.bmm(w, b_text.unsqueeze(2)).squeeze(2) / t
    return out_i, out_t


def memory_scores(
    b_image: torch.Tensor,
    b_text: torch.Tensor,
    memory: torch.Tensor,
    draw: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`memory_logits` against the memory rows ``draw`` (batch, 1 + negatives), without gathering them.

    The same scores as ``memory_logits(b_image, b_text, memory[draw], temperature)``: each code is
    scored against the signs of *every* memory row once (a (batch, n) product; n = training pairs)
    and the drawn columns are picked. The gathered form builds a (batch, 1 + K, bits) tensor per
    step (256 x 4097 x 64 floats = 268 MB, plus its signs) and was half of UCCH's step time on
    MIRFlickr; this one touches (batch, n). Equal up to float rounding of the bits-long dot products.
    """
    signs = torch.where(memory >= 0, 1.0, -1.0).to(b_image.dtype).detach()
    t = float(temperature) * math.sqrt(b_image.shape[1])
    out_i = (b_image @ signs.t()).gather(1, draw) / t
    out_t = (b_text @ signs.t()).gather(1, draw) / t
    return out_i, out_t


def in_batch_weight(b_image: torch.Tensor, b_text: torch.Tensor) -> torch.Tensor:
    """Warm-up candidates: row i = [mean code of pair i, mean codes of every other pair of the batch]."""
    mean = ((b_image + b_text) / 2.0).detach()
    m = mean.shape[0]
    ar = torch.arange(m, device=mean.device)
    others = ar.unsqueeze(0).expand(m, m)[~torch.eye(m, dtype=torch.bool, device=mean.device)].view(m, m - 1)
    order = torch.cat([ar.unsqueeze(1), others], dim=1)
    return mean[order]


def contrastive_loss(out: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy of column 0 (the positive)."""
    return F.cross_entropy(out, torch.zeros(out.shape[0], dtype=torch.long, device=out.device))


def ranking_loss(b_image: torch.Tensor, b_text: torch.Tensor, margin: float = 0.2, shift: float = 0.1) -> torch.Tensor:
    """UCCH's cross-modal ranking loss (CRL) on the cosines ``b_I b_T^T`` of a batch, both directions."""
    scores = b_image @ b_text.t()
    diag = scores.diag().view(-1, 1)
    keep_rows = (scores >= diag - margin).float().detach()
    cost_rows = scores * keep_rows + (1.0 - keep_rows) * (scores - shift)
    keep_cols = (scores >= diag.t() - margin).float().detach()
    cost_cols = scores * keep_cols + (1.0 - keep_cols) * (scores - shift)
    rows = (-cost_rows.diag() + torch.logsumexp(cost_rows, dim=1) + margin).mean()
    cols = (-cost_cols.diag() + torch.logsumexp(cost_cols, dim=0) + margin).mean()
    return rows + cols


@METHODS.register("ucch")
class UCCH(DeepHashMethod):
    name: ClassVar[str] = "ucch"
    #: shrinks the contract test (tests/test_method_contract.py) on tiny data
    TEST_HPARAMS: ClassVar[dict[str, Any]] = {"hidden": 64, "negatives": 64}
    DEFAULTS: ClassVar[dict[str, Any]] = {
        # contrastive hashing (NCEAverage) and ranking loss (ContrastiveLoss); README MIRFlickr command
        "negatives": 4096,  # K
        "temperature": 0.9,  # T; logits are divided by T * sqrt(bits)
        "momentum_memory": 0.4,
        "warmup_epochs": 1,
        "alpha": 0.7,  # L = alpha L_c + (1 - alpha) L_r
        "margin": 0.2,
        "shift": 0.1,
        "clip_grad_norm": 1.0,
        # optimisation: one Adam over both nets
        "optimizer": "adam",
        # true: torch's fused Adam kernel (docs/ucch.md "Speed": ~7x faster step over the 90M
        # parameters, equal to the per-parameter loop up to float rounding); auto: multi-tensor
        # Adam, bit-identical to the loop; false: the loop
        "fused_optimizer": True,
        "lr": 1e-4,
        "weight_decay": 1e-6,
        "batch_size": 256,
        "epochs": 20,
        # networks
        "hidden": 8192,
        "image_layers": 3,
        "text_layers": 2,
        "image_mode": "features",
        "variant": "ucch",
    }

    def __init__(self, bits: int, **hparams: Any):
        super().__init__(bits, **hparams)
        h = self.hparams
        for key in ("temperature", "lr", "batch_size", "epochs", "hidden", "negatives"):
            if float(h[key]) <= 0:
                raise CmhashError(f"ucch: {key} must be positive, got {h[key]}")
        for key in ("alpha", "momentum_memory"):
            if not 0.0 <= float(h[key]) <= 1.0:
                raise CmhashError(f"ucch: {key} must lie in [0, 1], got {h[key]}")
        if h["image_mode"] != "features":
            raise CmhashError("ucch: only feature mode is implemented (the official '_fea' setting: frozen image features)")
        self.epoch = 1

    def build(self, spec: InputSpec, for_training: bool = True) -> None:
        h = self.hparams
        self.nets = nn.ModuleDict(
            {
                "image": UCCHNet(spec.image_dim, self.bits, int(h["hidden"]), int(h["image_layers"])),
                "text": UCCHNet(spec.text_dim, self.bits, int(h["hidden"]), int(h["text_layers"])),
                "memory": BinaryMemory(self.bits),
            }
        )

    def param_groups(self) -> dict[str, dict[str, Any]]:
        """One Adam over both nets (official UCCH.py), not one optimiser per net; the memory has no parameters."""
        params = list(self.nets["image"].parameters()) + list(self.nets["text"].parameters())
        return {"joint": {"params": params, "lr": float(self.hparams["lr"]), "optimizer": str(self.hparams["optimizer"])}}

    def on_epoch_start(self, epoch: int, train: TrainingSet | None = None) -> dict[str, float]:
        """Sizes the memory to the training set at the first epoch (a resumed run keeps its memory)."""
        self.epoch = int(epoch)
        memory: BinaryMemory = self.nets["memory"]
        if train is not None and memory.memory.shape[0] != len(train):
            memory.reset(len(train))
            memory.to(self.device)
        return {"warmup": float(self.epoch <= int(self.hparams["warmup_epochs"]))}

    def before_step(self) -> None:
        clip = float(self.hparams["clip_grad_norm"])
        if clip > 0:
            params = [p for k in ("image", "text") for p in self.nets[k].parameters()]
            torch.nn.utils.clip_grad_norm_(params, clip)

    def training_loss(self, batch: Batch):
        h = self.hparams
        b_image = ucch_codes(self.fwd["image"](batch.image))
        b_text = ucch_codes(self.fwd["text"](batch.text))
        memory: BinaryMemory = self.nets["memory"]
        idx = batch.index.to(memory.memory.device)
        warmup = self.epoch <= int(h["warmup_epochs"])
        if warmup:
            momentum = 0.0
            out_i, out_t = memory_logits(b_image, b_text, in_batch_weight(b_image, b_text), float(h["temperature"]))
        else:
            n, k = memory.memory.shape[0], int(h["negatives"])
            draw = torch.randint(0, n, (len(idx), k + 1), device=idx.device)
            draw[:, 0] = idx
            momentum = float(h["momentum_memory"])
            out_i, out_t = memory_scores(b_image, b_text, memory.memory, draw, float(h["temperature"]))
        lc = contrastive_loss(out_i) + contrastive_loss(out_t)
        lr = ranking_loss(b_image, b_text, float(h["margin"]), float(h["shift"]))
        memory.update(idx, b_image.detach(), b_text.detach(), momentum)
        alpha = float(h["alpha"])
        loss = alpha * lc + (1.0 - alpha) * lr
        return loss, {"contrastive": lc.detach(), "ranking": lr.detach()}


__all__ = ["UCCH", "BinaryMemory", "contrastive_loss", "in_batch_weight", "memory_logits", "memory_scores", "ranking_loss", "ucch_codes"]
