"""Batch sources: the training set as batches of the form the method's networks take.

* :class:`FeatureSource` (feature mode): the whole training set as tensors on the device; a batch
  is a few ``index_select`` calls (no DataLoader, no per-sample Python).
* :class:`ImageSource` (backbone mode): augmented images through a DataLoader, the text side as
  tensors.

Text is a float32 feature matrix or padded token sequences (:class:`TokenBatch`, trimmed to the
longest text of each batch), as ``InputSpec.text_mode`` says. Labels travel only when the method
declares ``uses_labels`` (``labels=True`` here); otherwise ``Batch.labels`` is None.
"""

from __future__ import annotations

import numpy as np
import torch

from cmhash.errors import DataError
from cmhash.training.batch import Batch, InputSpec, TokenBatch, TrainingSet


def _dense(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(x, dtype=np.float32, order="C"))  # a copy: caches are read-only


def text_tensor(train, spec: InputSpec):
    """The text side of a dataset as the networks take it: (n, d) float32, or a TokenBatch."""
    if spec.text_mode == "tokens":
        if getattr(train, "text_tokens", None) is None:
            raise DataError(f"{train.name}: the method reads token sequences but the dataset has no text_tokens")
        return TokenBatch.from_sequences(train.text_tokens)
    if train.text_features is None:
        raise DataError(f"{train.name}: the method reads text features but the dataset has none")
    return _dense(train.text_features)


def label_tensor(train, wanted: bool):
    if not wanted:
        return None
    if train.labels is None:
        raise DataError(f"{train.name}: this method is supervised (uses labels) but the training set has no labels")
    return _dense(train.labels)


def _take(x, idx):
    if x is None:
        return None
    return x.index_select(idx) if isinstance(x, TokenBatch) else x.index_select(0, idx)


class FeatureSource:
    """Whole training set as tensors on the device; a batch is index_selects."""

    def __init__(self, image: np.ndarray, text, device: torch.device, labels=None):
        self.image = _dense(image).to(device)
        self.text = text.to(device)
        self.labels = None if labels is None else labels.to(device)
        self.device = device

    def __len__(self) -> int:
        return len(self.text) if isinstance(self.text, TokenBatch) else self.text.shape[0]

    def epoch(self, batches: torch.Tensor, epoch: int):
        dev_batches = batches.to(self.device)
        for idx in dev_batches:
            yield Batch(self.image.index_select(0, idx), _take(self.text, idx), idx, _take(self.labels, idx))

    def whole(self) -> TrainingSet:
        return TrainingSet(image=self.image, text=self.text, labels=self.labels, device=self.device)


class ImageSource:
    """Augmented images through a DataLoader (backbone mode), the text side (and labels) as tensors."""

    def __init__(self, images, text, backbone: str, seed: int, device: torch.device, num_workers: int = 0, labels=None):
        from cmhash.nets.transforms import AugmentedImages

        self.images = images
        self.backbone = backbone
        self.dataset = AugmentedImages(images, backbone, seed)
        self.text = text
        self.labels = labels
        self.device = device
        self.num_workers = int(num_workers)

    def __len__(self) -> int:
        return len(self.dataset)

    def epoch(self, batches: torch.Tensor, epoch: int):
        self.dataset.epoch = epoch
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=[b.tolist() for b in batches],
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        for images, idx in loader:
            labels = _take(self.labels, idx)
            yield Batch(
                images.to(self.device, non_blocking=True),
                _take(self.text, idx).to(self.device),
                idx,
                None if labels is None else labels.to(self.device),
            )

    def whole(self) -> TrainingSet:
        return TrainingSet(
            image=None,
            text=self.text.to(self.device),
            labels=None if self.labels is None else self.labels.to(self.device),
            images=self.images,
            backbone=self.backbone,
            device=self.device,
        )


def make_source(train, spec: InputSpec, seed: int, device: torch.device, num_workers: int = 0, labels: bool = False):
    """The batch source of ``train`` for ``spec``; ``labels``: the method uses labels."""
    text = text_tensor(train, spec)
    lab = label_tensor(train, labels)
    if spec.image_mode == "features":
        return FeatureSource(train.image_features, text, device, labels=lab)
    return ImageSource(train.images, text, spec.backbone, seed, device, num_workers, labels=lab)


__all__ = ["FeatureSource", "ImageSource", "label_tensor", "make_source", "text_tensor"]
