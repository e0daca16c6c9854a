"""Base class of the deep methods: what the shared trainer needs from a method, and encoding.

A deep method subclasses :class:`DeepHashMethod`, states ``DEFAULTS`` and implements:

* ``build(spec, for_training)``: create ``self.nets``, an ``nn.ModuleDict`` holding ``"image"`` and
  ``"text"`` (the hash networks used by :meth:`encode`) and any extra network (a fusion network)
  or learnable parameter (``nets.heads.LearnableScalar``, an ``nn.ParameterDict``). Everything in
  ``self.nets`` is trained, saved in checkpoints and restored on ``--resume``; frozen helpers
  (a feature network) are plain attributes.
* ``training_loss(batch) -> (loss, {name: detached scalar})`` for one :class:`Batch`.
* optionally ``on_epoch_start(epoch, train) -> {name: value}``: before each epoch (from 1), with
  the whole training set (:class:`TrainingSet`: features, text, labels of supervised methods) to
  build global matrices; ``training_state()``/``load_training_state()`` for non-network state the
  loss needs on resume (a global code matrix); ``param_groups()`` for optimisers other than one
  per network; ``hash_output(modality, x)`` when a modality's codes need more than
  ``nets[modality](x)``.

Class attributes: ``uses_labels`` (supervised: ``Batch.labels`` is set), ``text_input``
(``"features"``: dense float32 vectors; ``"tokens"``: padded token sequences with lengths, a
:class:`TokenBatch`). Optimisers: ``param_groups()`` returns one entry per optimiser
``{"params": [...], "lr": float, "optimizer": "sgd" | "adam" | "rmsprop", ...options}``; by default
one per trainable entry of ``self.nets`` with ``lr_<name>`` (else ``lr``), ``optimizer``,
``momentum``, ``weight_decay`` taken from the hyper-parameters when the method has them.

The loop itself (shuffling, optimiser steps, logging, evaluation, checkpoints, resume, DDP) lives
once in :mod:`cmhash.training.trainer`. Codes at test time are ``sign(H)`` of the continuous
hash output (zero maps to +1).
"""

from __future__ import annotations

from typing import Any, ClassVar, Iterable

import numpy as np

from cmhash.errors import CmhashError, DataError
from cmhash.methods.base import HashMethod
from cmhash.training.batch import IMAGE_MODES, TEXT_MODES, Batch, InputSpec, TokenBatch, TrainingSet
from cmhash.training.optim import OPTIMIZERS, build_optimizer

#: values of the ``input_norm`` hyper-parameter of methods that offer it: the nets read the features as
#: given (the published methods), or centred on the training mean and divided by the training RMS
#: (:class:`~cmhash.nets.heads.StandardizedInput`; a cmhash addition for small-norm features).
INPUT_NORMS = ("none", "standardize")


class DeepHashMethod(HashMethod):
    """Shared behaviour of the gradient-trained methods (see module docstring)."""

    deep: ClassVar[bool] = True
    requires: ClassVar[tuple[str, ...]] = ("torch",)
    #: "features" (dense float32 text vectors) or "tokens" (padded token sequences + lengths).
    text_input: ClassVar[str] = "features"

    def __init__(self, bits: int, seed: int | None = None, **hparams: Any):
        super().__init__(bits, **hparams)
        if self.text_input not in TEXT_MODES:
            raise CmhashError(f"{self.name}: text_input must be one of {TEXT_MODES}, got '{self.text_input}'")
        self.spec: InputSpec | None = None
        self.nets = None  # torch.nn.ModuleDict once built
        self.fwd: dict[str, Any] = {}  # modules used in forward (DDP wrappers while training)
        self.device = "cpu"
        self.history: list[dict[str, Any]] = []
        self.train_info: dict[str, Any] = {}
        self.seed = seed  # default seed of fit() (network initialisation and batch order)
        self._input_stats_fitted = False

    # ---------------------------------------------------------------- to implement
    def build(self, spec: InputSpec, for_training: bool = True) -> None:
        """Create ``self.nets`` (a ModuleDict with 'image', 'text' and any extra nets) and frozen helpers."""
        raise NotImplementedError

    def training_loss(self, batch: Batch):
        """Loss tensor (with grad) and a dict of detached scalars to log."""
        raise NotImplementedError

    def on_epoch_start(self, epoch: int, train: TrainingSet) -> dict[str, float]:
        """Called before epoch ``epoch`` (counted from 1) with the whole training set; returns values to log."""
        return {}

    def before_step(self) -> None:
        """Called after ``loss.backward()`` and before the optimisers step (UCCH: gradient clipping)."""

    def after_step(self, batch: Batch, optimizers: dict[str, Any]) -> dict[str, Any]:
        """Extra updates after the joint step (DGCPN: each net against the other's binary codes);
        returns detached scalars to log."""
        return {}

    def training_state(self) -> dict[str, Any]:
        """Non-network state that training needs on resume (tensors, numbers); saved while a run is unfinished."""
        return {}

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`training_state` on resume."""

    def hash_output(self, modality: str, x):
        """Continuous hash outputs of a chunk of inputs (default: ``nets[modality](x)``)."""
        return self.nets[modality](x)

    # ---------------------------------------------------------------- input standardisation
    def standardized_input(self, modality: str, net, in_dim: int):
        """``net``, or ``net`` behind :class:`~cmhash.nets.heads.StandardizedInput` when the hyper-parameter
        ``input_norm`` is ``"standardize"`` (feature inputs only; the statistics are fitted by
        :meth:`fit_input_statistics`). On l1-normalised histograms (Wiki's SIFT bag-of-words, entries
        ~0.008) an MLP's output hardly depends on its input, and training drifts to a few codes."""
        if self.check_input_norm(self.hparams) == "none":
            return net
        from cmhash.nets.heads import StandardizedInput

        return StandardizedInput(net, int(in_dim))

    def check_input_norm(self, h: dict[str, Any]) -> str:
        """The ``input_norm`` hyper-parameter ("none" when the method has none), checked; for
        :meth:`check_hparams`, which stores the normalised value back."""
        norm = h.get("input_norm", "none")
        norm = "none" if norm is None else norm  # `--set input_norm=none` reads as None (cmhash.validation.parse_value)
        if norm not in INPUT_NORMS:
            raise CmhashError(f"{self.name}: input_norm must be one of {', '.join(INPUT_NORMS)}, got {norm!r}")
        if "input_norm" in h:
            h["input_norm"] = norm
        return norm

    def fit_input_statistics(self, train: TrainingSet | None) -> None:
        """Set every standardised input's mean and scale from the whole training set (idempotent: the
        training rows never change, so a resumed run fits the same values again)."""
        import torch

        from cmhash.nets.heads import StandardizedInput

        if train is None or self._input_stats_fitted:
            return
        for modality, rows in (("image", train.image), ("text", train.text)):
            net = self.nets[modality] if self.nets is not None and modality in self.nets else None
            if isinstance(net, StandardizedInput) and isinstance(rows, torch.Tensor):
                net.fit(rows.to_dense() if rows.is_sparse else rows)
        self._input_stats_fitted = True

    # ---------------------------------------------------------------- shared
    @property
    def built(self) -> bool:
        return self.nets is not None

    def setup(self, spec: InputSpec, for_training: bool = True) -> None:
        self.spec = spec
        self._input_stats_fitted = False  # new nets: their standardised inputs (if any) are not fitted yet
        self.build(spec, for_training=for_training)
        missing = [m for m in ("image", "text") if m not in self.nets]
        if missing:
            raise CmhashError(f"{self.name}: build() must put an 'image' and a 'text' network in self.nets (missing: {', '.join(missing)})")
        self.fwd = dict(self.nets.items())

    def to(self, device) -> "DeepHashMethod":
        """Move every network (trainable and frozen) to ``device``."""
        import torch

        self.device = str(device)
        for obj in list(vars(self).values()):
            if isinstance(obj, torch.nn.Module):
                obj.to(device)
        return self

    def param_groups(self) -> dict[str, dict[str, Any]]:
        """One optimiser per entry: ``{"params", "lr", "optimizer", options...}`` (see the module docstring)."""
        h = self.hparams
        groups: dict[str, dict[str, Any]] = {}
        for name, net in self.nets.items():
            params = [p for p in net.parameters() if p.requires_grad]
            if not params:
                continue
            lr = h.get(f"lr_{name}", h.get("lr"))
            if lr is None:
                raise CmhashError(f"{self.name}: no learning rate for network '{name}' (add lr_{name} or lr to DEFAULTS, or override param_groups)")
            groups[name] = {"params": params, "lr": float(lr)}
        return groups

    def make_optimizers(self) -> dict[str, Any]:
        """The optimisers of :meth:`param_groups` (SGD by default, momentum/weight decay from the hyper-parameters)."""
        h = self.hparams
        out = {}
        for name, group in self.param_groups().items():
            group = dict(group)
            params = group.pop("params")
            if not params:
                continue
            kind = group.pop("optimizer", h.get("optimizer", "sgd"))
            lr = group.pop("lr")
            opts = {k: h[k] for k in ("momentum", "weight_decay") if k in h}
            opts.update(group)
            out[name] = build_optimizer(kind, params, lr, fused=h.get("fused_optimizer", "auto"), where=f"{self.name}: optimiser '{name}'", **opts)
        return out

    def train_mode(self, mode: bool = True) -> None:
        self.nets.train(mode)

    # ---------------------------------------------------------------- fit / encode
    def fit(
        self,
        train,
        *,
        val=None,
        config=None,
        meta: dict[str, Any] | None = None,
        spec: InputSpec | None = None,
        progress=True,
        threads: int | None = None,
        **options: Any,
    ):
        """Train on a :class:`PairedDataset` with the shared trainer.

        ``config`` is a :class:`~cmhash.training.trainer.TrainConfig`; without it one is made from the
        hyper-parameters (epochs, batch_size), ``self.seed`` and ``options`` (any TrainConfig field).
        ``progress``: True (tqdm bar), False, or a callable ``(step, total_steps, mean_loss)``.
        ``threads`` sets torch's CPU threads for the duration of the call. ``val(method) -> dict``
        is called at evaluation epochs.
        """
        import torch

        from cmhash.training.trainer import TrainConfig, Trainer

        if config is None:
            options.setdefault("seed", 0 if self.seed is None else int(self.seed))
            config = TrainConfig(
                epochs=int(self.hparams.get("epochs", 1)), batch_size=int(self.hparams.get("batch_size", 32)), progress=progress, **options
            )
        elif options:
            raise CmhashError(f"fit: pass either config or options, not both ({', '.join(options)})")
        spec = spec or self.input_spec_for(train)
        old_threads = torch.get_num_threads()
        if threads:
            torch.set_num_threads(int(threads))
        try:
            Trainer(self, train, config, spec=spec, validator=val, meta=meta).fit()
        finally:
            if threads:
                torch.set_num_threads(old_threads)
        return self

    @property
    def image_mode(self) -> str:
        """"features" (the method reads image feature vectors) or "backbone" (it reads the images)."""
        return str(self.hparams.get("image_mode", "features"))

    def input_spec_for(self, data) -> InputSpec:
        """Input spec from a dataset, the class's ``text_input`` and the image_mode/backbone hyper-parameters."""
        text: dict[str, Any] = {"text_mode": self.text_input}
        if self.text_input == "tokens":
            if getattr(data, "text_tokens", None) is None:
                raise DataError(f"{data.name}: {self.name} reads token sequences (text_tokens), which this dataset does not have")
            text.update(vocab_size=int(data.text_tokens.vocab_size), max_len=int(data.text_tokens.max_len))
        else:
            if data.text_features is None:
                raise DataError(
                    f"{data.name}: {self.name} needs text features (bag-of-words, topic vectors or a sentence encoder's output); "
                    "this dataset has raw texts only: extract text features first (`cmhash features`)"
                )
            text["text_dim"] = int(data.text_features.shape[1])
        if self.uses_labels:
            if data.labels is None:
                raise DataError(f"{data.name}: {self.name} is supervised and needs labels, which this dataset does not have")
            text["num_labels"] = int(data.labels.shape[1])
        mode = self.image_mode
        if mode not in IMAGE_MODES:
            raise CmhashError(f"{self.name}: image_mode must be one of {IMAGE_MODES}, got '{mode}'")
        if mode == "features":
            if data.image_features is None:
                raise DataError(
                    f"{data.name}: feature mode needs precomputed image features; pass --features (a feature cache or .npz), "
                    "or train end-to-end with --image-mode backbone"
                )
            return InputSpec(
                image_mode="features",
                image_dim=int(data.image_features.shape[1]),
                features={k: v for k, v in data.meta.items() if k in ("image_features", "text_features")},
                **text,
            )
        if data.images is None:
            raise DataError(f"{data.name}: backbone mode needs the images, but this dataset has no image files")
        return InputSpec(
            image_mode="backbone",
            backbone=str(self.hparams.get("backbone", "efficientnet-lite0")),
            backbone_weights=self.hparams.get("backbone_weights"),
            finetune=str(self.hparams.get("finetune", "all")),
            features={k: v for k, v in data.meta.items() if k == "text_features"},
            **text,
        )

    def _require_built(self) -> None:
        if not self.built:
            raise CmhashError(f"{self.name}: the method is not trained yet (call fit, or load a checkpoint)")

    def hash_outputs(self, inputs, modality: str, batch_size: int = 1024) -> np.ndarray:
        """Continuous hash outputs H (n, bits) as float32, in eval mode."""
        import torch

        self._require_built()
        self.check_modality(modality)
        was_training = self.nets.training
        # switching modes walks every module (0.3 ms): a served model, already in eval mode, skips it
        switch = any(m.training for m in self.nets.modules())
        if switch:
            self.nets.eval()
        outs = []
        try:
            with torch.inference_mode():
                for chunk in self._input_chunks(inputs, modality, batch_size):
                    outs.append(self.hash_output(modality, chunk.to(self.device)).float().cpu())
        finally:
            if switch:
                self.nets.train(was_training)
        if not outs:
            return np.zeros((0, self.bits), np.float32)
        return (outs[0] if len(outs) == 1 else torch.cat(outs)).numpy()

    def encode(self, inputs, modality: str) -> np.ndarray:
        """+-1 int8 codes ``sign(H)`` (zero -> +1). ``inputs``: feature rows, token sequences, or a dataset/image store/PIL list (backbone mode)."""
        from cmhash.codes import sign

        return sign(self.hash_outputs(inputs, modality))

    def _input_chunks(self, inputs, modality: str, batch_size: int) -> Iterable:
        import torch

        if modality == "image" and self.spec.image_mode == "backbone":
            from cmhash.nets.transforms import image_batches

            yield from image_batches(inputs, self.spec.backbone, batch_size=min(batch_size, 64))
            return
        if modality == "text" and self.spec.text_mode == "tokens":
            yield from self._token_chunks(inputs, batch_size)
            return
        if hasattr(inputs, "image_features"):  # a PairedDataset
            inputs = inputs.image_features if modality == "image" else inputs.text_features
            if inputs is None:
                raise DataError(f"{self.name}: the dataset has no {modality} features to encode")
        if not isinstance(inputs, torch.Tensor):
            arr = np.asarray(inputs, dtype=np.float32)
            inputs = torch.from_numpy(arr if arr.flags.writeable else arr.copy())  # memory-mapped caches are read-only
        x = inputs
        if x.dim() != 2:
            raise DataError(f"{self.name}: {modality} features must be 2-D (items x dims), got shape {tuple(x.shape)}")
        want = self.spec.image_dim if modality == "image" else self.spec.text_dim
        if x.shape[1] != want:
            raise DataError(f"{self.name}: {modality} features have {x.shape[1]} dims but the model was trained on {want}")
        x = x.float()
        for s in range(0, x.shape[0], batch_size):
            yield x[s : s + batch_size]

    def _token_chunks(self, inputs, batch_size: int) -> Iterable:
        from cmhash.data.tokens import TokenSequences

        if hasattr(inputs, "text_tokens"):  # a PairedDataset
            if inputs.text_tokens is None:
                raise DataError(f"{self.name}: the dataset has no text_tokens to encode")
            inputs = inputs.text_tokens
        if isinstance(inputs, TokenSequences):
            if inputs.vocab_size > int(self.spec.vocab_size):
                raise DataError(f"{self.name}: token ids go up to {inputs.vocab_size - 1} but the model's vocabulary has {self.spec.vocab_size}")
            inputs = TokenBatch.from_sequences(inputs)
        if not isinstance(inputs, TokenBatch):
            raise DataError(f"{self.name}: text input must be token sequences (TokenSequences or TokenBatch), got {type(inputs).__name__}")
        for s in range(0, len(inputs), batch_size):
            yield inputs[s : s + batch_size]

    # ---------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        self._require_built()
        return {
            "bits": self.bits,
            "hparams": dict(self.hparams),
            "spec": self.spec.to_dict(),
            "nets": {k: {n: t.detach().cpu() for n, t in v.state_dict().items()} for k, v in self.nets.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], for_training: bool = False) -> "DeepHashMethod":
        method = cls(state["bits"], **state["hparams"])
        spec = InputSpec.from_dict(state["spec"])
        method.setup(spec, for_training=for_training)
        method.load_net_state(state["nets"])
        return method

    def load_net_state(self, nets_state: dict[str, Any]) -> None:
        missing = sorted(set(self.nets) - set(nets_state))
        if missing:
            raise CmhashError(f"{self.name}: saved state lacks network(s) {', '.join(missing)}")
        for k, sd in nets_state.items():
            if k not in self.nets:
                raise CmhashError(f"{self.name}: saved state has a network '{k}' the method does not build")
            self.nets[k].load_state_dict(sd)


__all__ = ["Batch", "DeepHashMethod", "IMAGE_MODES", "INPUT_NORMS", "InputSpec", "OPTIMIZERS", "TokenBatch", "TrainingSet"]
