"""Base class of the deep methods: what the shared trainer needs from a method, and encoding.

A deep method owns two trainable hash networks (``nets["image"]``, ``nets["text"]``), knows how to
build them from an :class:`InputSpec` (feature dims, or a backbone for end-to-end training), how to
turn one :class:`Batch` into a loss, and what to do when an epoch starts (DJSRH: alpha = sqrt(t)).
The loop itself (shuffling, optimiser steps, logging, evaluation, checkpoints, resume, DDP) lives
once in :mod:`cmhash.training.trainer`. JDSH and later methods subclass this and reuse it all.

Codes at test time are ``sign(H)`` of the continuous hash layer output (zero maps to +1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Iterable

import numpy as np

from cmhash.errors import CmhashError, DataError
from cmhash.methods.base import HashMethod

IMAGE_MODES = ("features", "backbone")


@dataclass
class InputSpec:
    """What the networks take: feature dims (feature mode) or a backbone (end-to-end mode)."""

    text_dim: int
    image_mode: str = "features"
    image_dim: int | None = None
    backbone: str | None = None
    backbone_weights: str | None = None
    finetune: str = "all"
    features: dict[str, Any] = field(default_factory=dict)  # provenance: encoder names etc.

    def __post_init__(self) -> None:
        if self.image_mode not in IMAGE_MODES:
            raise CmhashError(f"image_mode must be one of {IMAGE_MODES}, got '{self.image_mode}'")
        if self.image_mode == "features" and not self.image_dim:
            raise CmhashError("feature mode needs image_dim (the width of the precomputed image features)")
        if self.image_mode == "backbone" and not self.backbone:
            raise CmhashError("backbone mode needs a backbone name (efficientnet-lite0 or alexnet)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "InputSpec":
        return cls(**d)


@dataclass
class Batch:
    """One training batch: ``image`` is features (feature mode) or normalised pixels (backbone mode)."""

    image: Any
    text: Any
    index: Any

    def __len__(self) -> int:
        return int(self.text.shape[0])


class DeepHashMethod(HashMethod):
    """Shared behaviour of the gradient-trained methods (see module docstring).

    Subclasses define ``DEFAULTS`` (every accepted hyper-parameter with its default) and implement
    :meth:`build`, :meth:`training_loss` and optionally :meth:`on_epoch_start`.
    """

    deep: ClassVar[bool] = True
    DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init__(self, bits: int, seed: int | None = None, **hparams: Any):
        from cmhash.experiments.run import RUN_KEYS

        # a whole preset section may be passed: its run settings (split, eval_every, ...) are not hyper-parameters
        hparams = {k: v for k, v in hparams.items() if k not in RUN_KEYS and k != "source" and not k.startswith("_")}
        unknown = set(hparams) - set(self.DEFAULTS)
        if unknown:
            raise CmhashError(
                f"{self.name}: unknown hyper-parameter(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(self.DEFAULTS))})"
            )
        full = dict(self.DEFAULTS)
        full.update(hparams)
        super().__init__(bits, **full)
        self.spec: InputSpec | None = None
        self.nets = None  # torch.nn.ModuleDict once built
        self.fwd: dict[str, Any] = {}  # modules used in forward (DDP wrappers while training)
        self.device = "cpu"
        self.history: list[dict[str, Any]] = []
        self.train_info: dict[str, Any] = {}
        self.seed = seed  # default seed of fit() (network initialisation and batch order)

    # ---------------------------------------------------------------- to implement
    def build(self, spec: InputSpec, for_training: bool = True) -> None:
        """Create ``self.nets`` (a ModuleDict with 'image' and 'text') and any frozen helpers."""
        raise NotImplementedError

    def training_loss(self, batch: Batch):
        """Loss tensor (with grad) and a dict of detached scalars to log."""
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> dict[str, float]:
        """Called before epoch ``epoch`` (counted from 1); returns values to log."""
        return {}

    # ---------------------------------------------------------------- shared
    @property
    def built(self) -> bool:
        return self.nets is not None

    def setup(self, spec: InputSpec, for_training: bool = True) -> None:
        self.spec = spec
        self.build(spec, for_training=for_training)
        self.fwd = dict(self.nets.items())

    def to(self, device) -> "DeepHashMethod":
        """Move every network (trainable and frozen) to ``device``."""
        import torch

        self.device = str(device)
        for obj in list(vars(self).values()):
            if isinstance(obj, torch.nn.Module):
                obj.to(device)
        return self

    def param_groups(self) -> dict[str, tuple[list, float]]:
        """Parameters and learning rate of each optimiser: {'image': (params, lr), 'text': (...)}."""
        return {
            "image": (list(self.nets["image"].parameters()), float(self.hparams["lr_image"])),
            "text": (list(self.nets["text"].parameters()), float(self.hparams["lr_text"])),
        }

    def make_optimizers(self) -> dict[str, Any]:
        """One SGD per network (momentum, weight decay on every parameter incl. biases), as DJSRH."""
        import torch

        out = {}
        fused = self.hparams.get("fused_optimizer", "auto")
        for name, (params, lr) in self.param_groups().items():
            if not params:
                continue
            base = dict(lr=lr, momentum=float(self.hparams["momentum"]), weight_decay=float(self.hparams["weight_decay"]))
            if fused in ("auto", True):
                # one kernel per parameter for weight decay, momentum and the update (same arithmetic)
                try:
                    out[name] = torch.optim.SGD(params, fused=True, **base)
                    continue
                except (RuntimeError, TypeError, ValueError):
                    if fused is True:
                        raise
            out[name] = torch.optim.SGD(params, foreach=False if fused is False else None, **base)
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

    def input_spec_for(self, data) -> InputSpec:
        """Input spec from a dataset and the method's image_mode/backbone hyper-parameters."""
        if data.text_features is None:
            raise DataError(
                f"{data.name}: {self.name} needs text features (bag-of-words, topic vectors or a sentence encoder's output); "
                "this dataset has raw texts only: extract text features first (`cmhash features`)"
            )
        mode = self.hparams.get("image_mode", "features")
        if mode == "features":
            if data.image_features is None:
                raise DataError(
                    f"{data.name}: feature mode needs precomputed image features; pass --features (a feature cache or .npz), "
                    "or train end-to-end with --image-mode backbone"
                )
            return InputSpec(
                text_dim=int(data.text_features.shape[1]),
                image_mode="features",
                image_dim=int(data.image_features.shape[1]),
                features={k: v for k, v in data.meta.items() if k in ("image_features", "text_features")},
            )
        if data.images is None:
            raise DataError(f"{data.name}: backbone mode needs the images, but this dataset has no image files")
        return InputSpec(
            text_dim=int(data.text_features.shape[1]),
            image_mode="backbone",
            backbone=str(self.hparams.get("backbone", "efficientnet-lite0")),
            backbone_weights=self.hparams.get("backbone_weights"),
            finetune=str(self.hparams.get("finetune", "all")),
            features={k: v for k, v in data.meta.items() if k == "text_features"},
        )

    def _require_built(self) -> None:
        if not self.built:
            raise CmhashError(f"{self.name}: the method is not trained yet (call fit, or load a checkpoint)")

    def hash_outputs(self, inputs, modality: str, batch_size: int = 1024) -> np.ndarray:
        """Continuous hash layer outputs H (n, bits) as float32, in eval mode."""
        import torch

        self._require_built()
        self.check_modality(modality)
        net = self.nets[modality]
        was_training = net.training
        net.eval()
        outs = []
        try:
            with torch.inference_mode():
                for chunk in self._input_chunks(inputs, modality, batch_size):
                    outs.append(net(chunk.to(self.device)).float().cpu())
        finally:
            net.train(was_training)
        if not outs:
            return np.zeros((0, self.bits), np.float32)
        return torch.cat(outs).numpy()

    def encode(self, inputs, modality: str) -> np.ndarray:
        """+-1 int8 codes ``sign(H)`` (zero -> +1). ``inputs``: feature rows, or a dataset/image store/PIL list (backbone mode)."""
        from cmhash.codes import sign

        return sign(self.hash_outputs(inputs, modality))

    def _input_chunks(self, inputs, modality: str, batch_size: int) -> Iterable:
        import torch

        if modality == "image" and self.spec.image_mode == "backbone":
            from cmhash.nets.transforms import image_batches

            yield from image_batches(inputs, self.spec.backbone, batch_size=min(batch_size, 64))
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
        for k, sd in state["nets"].items():
            method.nets[k].load_state_dict(sd)
        return method

    def load_net_state(self, nets_state: dict[str, Any]) -> None:
        for k, sd in nets_state.items():
            self.nets[k].load_state_dict(sd)


__all__ = ["Batch", "DeepHashMethod", "IMAGE_MODES", "InputSpec"]
