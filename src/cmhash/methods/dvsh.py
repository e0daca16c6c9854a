"""DVSH: Deep Visual-Semantic Hashing (Cao, Long, Wang, Yang, Yu, KDD 2016), supervised, sentences.

Three networks (``self.nets``), trained end to end on the shared trainer (see ``docs/dvsh.md``;
everything beyond the abstract is from memory [M] or our choice, listed there):

* ``fusion`` h(x, y): the visual-semantic fusion network, a multimodal LSTM over the words with
  the (projected) image feature fed at every step, mean-pooled, linear, tanh: the unified code;
* ``image`` f(x): frozen image features -> MLP -> tanh hash layer (feature mode), or the
  end-to-end CNN backbone -> hash layer -> tanh (backbone mode; the fusion net then reads the
  same CNN's features);
* ``text`` g(y): an LSTM over GloVe-initialised word embeddings -> mean pool -> tanh hash layer.

Per batch with labels (pair identity for Flickr8k), ``s_ij = +1`` when i and j share a label:

* fusion: ``C(h, h) + lambda Q(h)``;
* hashing networks: ``C(f, h) + lambda Q(f)`` and ``C(g, h) + lambda Q(g)`` (the modality codes
  are pulled to the unified codes of their similar pairs);
* optional direct term ``direct_weight * C(f, g)`` (0 by default, the [M] description has none);

with ``C`` the cosine max-margin loss and ``Q`` the bit-wise max-margin quantisation loss
(:mod:`cmhash.methods.losses`). Test codes: ``sign(f(x))`` and ``sign(g(y))``.

Text input is token sequences. ``fit`` builds the word vocabulary on the training texts
(:class:`cmhash.data.tokens.SequenceVocabulary`: PAD 0, UNK 1), initialises both embedding
tables from GloVe 6B 50-d and stores the vocabulary in the checkpoint, so raw query sentences
(unknown words included) are encoded later exactly as in training.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn

from cmhash.data.dataset import supervision_labels
from cmhash.data.tokens import SequenceVocabulary, TokenSequences
from cmhash.errors import CmhashError, DataError
from cmhash.methods import METHODS
from cmhash.methods.deep import Batch, DeepHashMethod, InputSpec, TokenBatch
from cmhash.methods.losses import bitwise_margin_loss, cosine_margin_loss, pair_signs
from cmhash.nets.sentence import POOLS, FeatureHashNet, FusionHashNet, SentenceHashNet


@METHODS.register("dvsh")
class DVSH(DeepHashMethod):
    name: ClassVar[str] = "dvsh"
    uses_labels: ClassVar[bool] = True
    text_input: ClassVar[str] = "tokens"
    TEST_HPARAMS: ClassVar[dict[str, Any]] = {"hidden": 16, "image_hidden": 32, "fusion_image_dim": 8}
    DEFAULTS: ClassVar[dict[str, Any]] = {
        # objective (methods-spec section 4; margins and lambda: toolkit defaults, see docs/dvsh.md)
        "margin": 0.5,  # mu_c: similar pairs pushed to cos >= margin
        "negative_margin": 0.0,  # dissimilar pairs pushed to cos <= this (None: -margin, the literal form)
        "balance": True,  # similar and dissimilar pairs averaged separately
        "quant_margin": 0.5,  # mu_q of the bit-wise max-margin loss
        "lambda_q": 0.1,  # weight of the quantisation loss
        "fusion_weight": 1.0,  # weight of the fusion network's own term C(h, h)
        "direct_weight": 0.0,  # optional C(f, g) between the two hashing networks
        "detach_fusion": False,  # True: the hashing nets' terms do not train the fusion net
        # networks
        "embed_dim": 50,  # GloVe 6B 50-d
        "glove": True,  # initialise the word embeddings from GloVe (else random)
        "hidden": 256,  # LSTM width (text and fusion)
        "image_hidden": 1024,  # feature-mode image MLP width
        "fusion_image_dim": 256,  # image projection fed at every fusion step
        "pool": "mean",  # mean | last over the LSTM steps
        "dropout": 0.1,
        "image_mode": "features",  # features | backbone
        "backbone": "efficientnet-lite0",
        "backbone_weights": None,
        "finetune": "all",
        # vocabulary (built on the training texts by fit)
        "min_count": 2,
        "max_vocab": 20000,
        "max_len": 32,
        # optimisation
        "optimizer": "adam",
        "lr": 0.001,
        "lr_image": None,  # None: lr
        "lr_text": None,
        "lr_fusion": None,
        "weight_decay": 0.0,
        "batch_size": 64,
        "epochs": 30,
    }

    def __init__(self, bits: int, seed: int | None = None, **hparams: Any):
        self.vocabulary: SequenceVocabulary | None = None
        self.glove_coverage: float | None = None
        super().__init__(bits, seed=seed, **hparams)

    def check_hparams(self, h: dict[str, Any]) -> None:
        if h["pool"] not in POOLS:
            raise CmhashError(f"dvsh: pool must be one of {', '.join(POOLS)}, got {h['pool']!r}")
        self.positive(h, "margin", "quant_margin", "lr", "batch_size", "epochs", "hidden", "image_hidden", "fusion_image_dim", "embed_dim", "max_len", "min_count")
        if h["glove"] and int(h["embed_dim"]) != 50:
            raise CmhashError("dvsh: glove=True needs embed_dim 50 (GloVe 6B 50-d); set glove=false for another width")
        if h["image_mode"] not in ("features", "backbone"):
            raise CmhashError(f"dvsh: image_mode must be features or backbone, got {h['image_mode']!r}")

    # ------------------------------------------------------------------ data
    def prepare_training_data(self, train):
        """Supervision (labels, else pair identity) and token sequences for the training set.

        With raw texts, the vocabulary is built on them (deterministic, so a resumed run rebuilds
        the same one) and stored with the model; a dataset that only carries ready-made
        ``text_tokens`` is used as it is (no vocabulary: such a model encodes tokens, not raw text).
        """
        labels = supervision_labels(train.labels, train.groups, train.name)
        if train.texts is not None:
            h = self.hparams
            self.vocabulary = SequenceVocabulary.build(train.texts, min_count=int(h["min_count"]), max_size=h["max_vocab"], max_len=int(h["max_len"]))
            tokens = self.tokens(train.texts)
        elif getattr(train, "text_tokens", None) is not None:
            self.vocabulary = None
            tokens = train.text_tokens
        else:
            raise DataError(f"{train.name}: dvsh reads sentences and needs the raw texts (this dataset has only text features)")
        return dataclasses.replace(train, labels=labels, text_tokens=tokens)

    def tokens(self, texts: Sequence[str]):
        """Raw texts -> :class:`~cmhash.data.tokens.TokenSequences` with this model's vocabulary."""
        if self.vocabulary is None:
            raise CmhashError("dvsh: no vocabulary (train the model on raw texts, or load such a checkpoint) to encode raw text")
        return TokenSequences.from_texts(texts, self.vocabulary)

    def fit(self, train, **kwargs: Any):
        return super().fit(self.prepare_training_data(train), **kwargs)

    # ------------------------------------------------------------------ networks
    def lr_for(self, name: str) -> float:
        v = self.hparams.get(f"lr_{name}")
        return float(self.hparams["lr"] if v is None else v)

    def build(self, spec: InputSpec, for_training: bool = True) -> None:
        h = self.hparams
        if spec.text_mode != "tokens":
            raise CmhashError("dvsh reads token sequences (text_mode 'tokens')")
        init = None
        if for_training and h["glove"] and self.vocabulary is not None and self.vocabulary.size == spec.vocab_size:
            from cmhash.features.text_glove import glove_table

            init, self.glove_coverage = glove_table(self.vocabulary, seed=0 if self.seed is None else int(self.seed))
        common = dict(embed_dim=int(h["embed_dim"]), hidden=int(h["hidden"]), pool=h["pool"], embedding_init=init, dropout=float(h["dropout"]))
        text = SentenceHashNet(spec.vocab_size, self.bits, **common)
        if spec.image_mode == "features":
            image = FeatureHashNet(spec.image_dim, self.bits, hidden=int(h["image_hidden"]), dropout=float(h["dropout"]))
            image_dim = spec.image_dim
        else:
            from cmhash.nets.backbones import BackboneHashNet, build_backbone

            backbone = build_backbone(spec.backbone, spec.backbone_weights, pretrained=for_training)
            image = BackboneHashNet(backbone, self.bits)
            image_dim = image.hash.in_features
        fusion = FusionHashNet(spec.vocab_size, image_dim, self.bits, image_proj=int(h["fusion_image_dim"]), **common)
        self.nets = nn.ModuleDict({"image": image, "text": text, "fusion": fusion})

    def param_groups(self) -> dict[str, dict[str, Any]]:
        groups = {}
        for name, net in self.nets.items():
            if name == "image" and self.spec.image_mode == "backbone":
                params = net.backbone.parameters_for(self.spec.finetune) + list(net.hash.parameters())
            else:
                params = [p for p in net.parameters() if p.requires_grad]
            groups[name] = {"params": params, "lr": self.lr_for(name)}
        return groups

    def _image_codes_and_features(self, x: torch.Tensor, net=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(f(x), the image input of the fusion net)."""
        net = net if net is not None else self.fwd["image"]
        if self.spec.image_mode == "features":
            return net(x), x
        inner = getattr(net, "module", net)
        feats = inner.backbone(x)
        return torch.tanh(inner.hash(feats)), feats

    def hash_output(self, modality: str, x):
        if modality == "image":
            return self._image_codes_and_features(x, self.nets["image"])[0]
        return self.nets["text"](x.ids, x.lengths)

    # ------------------------------------------------------------------ training
    def training_loss(self, batch: Batch):
        h = self.hparams
        if batch.labels is None:
            raise CmhashError("dvsh: the batch has no labels (the trainer must pass labels to a supervised method)")
        signs = pair_signs(batch.labels, batch.labels)
        ids, lengths = batch.text.ids, batch.text.lengths
        f, img_in = self._image_codes_and_features(batch.image)
        g = self.fwd["text"](ids, lengths)
        u = self.fwd["fusion"](img_in, ids, lengths)
        margin, neg, bal = float(h["margin"]), h["negative_margin"], bool(h["balance"])
        neg = None if neg is None else float(neg)
        lam, qm = float(h["lambda_q"]), float(h["quant_margin"])

        def C(a, b):
            return cosine_margin_loss(a, b, signs, margin=margin, negative_margin=neg, balance=bal)

        target = u.detach() if h["detach_fusion"] else u
        c_fusion, c_image, c_text = C(u, u), C(f, target), C(g, target)
        q_fusion, q_image, q_text = bitwise_margin_loss(u, qm), bitwise_margin_loss(f, qm), bitwise_margin_loss(g, qm)
        loss = float(h["fusion_weight"]) * (c_fusion + lam * q_fusion) + c_image + lam * q_image + c_text + lam * q_text
        logs = {"c_fusion": c_fusion.detach(), "c_image": c_image.detach(), "c_text": c_text.detach(), "quant": (q_fusion + q_image + q_text).detach() / 3}
        if float(h["direct_weight"]):
            c_direct = C(f, g)
            loss = loss + float(h["direct_weight"]) * c_direct
            logs["c_direct"] = c_direct.detach()
        return loss, logs

    # ------------------------------------------------------------------ encoding
    def _token_chunks(self, inputs, batch_size: int) -> Iterable:
        """Also accepts raw texts (a string or a list of strings) and datasets with raw texts.

        A dataset's raw texts are tokenised with this model's vocabulary (its own ``text_tokens``
        may come from another one); ready-made tokens are used only when the model has no vocabulary.
        """
        if isinstance(inputs, str):
            inputs = [inputs]
        if hasattr(inputs, "text_tokens"):  # a PairedDataset
            if self.vocabulary is not None and inputs.texts is not None:
                inputs = self.tokens(inputs.texts)
            elif inputs.text_tokens is None:
                raise DataError(f"{inputs.name}: dvsh encodes sentences, and this dataset has neither raw texts nor token sequences")
        elif isinstance(inputs, (list, tuple)) and (not inputs or isinstance(inputs[0], str)):
            inputs = self.tokens(inputs)
        yield from super()._token_chunks(inputs, batch_size)

    def embeddings(self, inputs, modality: str, batch_size: int = 1024) -> np.ndarray:
        """Real-valued codes before the sign (tanh outputs): the upper bound the binary codes lose against."""
        return self.hash_outputs(inputs, modality, batch_size=batch_size)

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        out = super().state()
        out["vocabulary"] = self.vocabulary.to_dict() if self.vocabulary is not None else None
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any], for_training: bool = False) -> "DVSH":
        method = cls(state["bits"], **state["hparams"])
        if state.get("vocabulary") is not None:
            method.vocabulary = SequenceVocabulary.from_dict(state["vocabulary"], where="checkpoint vocabulary")
        method.setup(InputSpec.from_dict(state["spec"]), for_training=for_training)
        method.load_net_state(state["nets"])
        return method


__all__ = ["DVSH"]
