"""Image transforms of end-to-end (backbone) training, on the one preprocessing stack.

The steps are :class:`~cmhash.nets.preprocess.Preprocess`'s (the same code the feature encoders
use), configured per backbone by :func:`backbone_preprocess` (methods-spec section 0.3):
:func:`train_transform` = random horizontal flip -> resize the shorter side to 256 (bilinear) ->
random 224 crop -> per-channel normalisation of the backbone; :func:`test_transform` = the same
with a centre crop. The random choices of pair ``i`` in epoch ``t`` come from
``numpy.random.default_rng([seed, t, i])``, so the augmented batches are the same with any number
of loader workers and after ``--resume``.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from cmhash.errors import DataError
from cmhash.nets.backbones import NORMALISATION
from cmhash.nets.preprocess import Preprocess, to_rgb

RESIZE = 256
CROP = 224


def backbone_preprocess(backbone: str, crop: int = CROP, resize: int = RESIZE) -> "Preprocess":
    """Test-time preprocessing of a backbone: shorter side ``resize`` (bilinear), centre ``crop``, its normalisation."""
    mean, std = NORMALISATION[backbone]
    return Preprocess(size=crop, resize="shorter-crop", resize_to=resize, interpolation="bilinear", normalize="custom", mean=mean, std=std)


def resize_shorter(img, size: int = RESIZE):
    """Resize so the shorter side is ``size`` (aspect kept), bilinear, as torchvision's Resize(int)."""
    return Preprocess(size=8, resize="shorter-crop", resize_to=size, interpolation="bilinear").resize_shorter(img)


def _chw(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def to_tensor(img, backbone: str) -> torch.Tensor:
    """RGB PIL image -> normalised float32 tensor (3, H, W) for ``backbone`` (no resize)."""
    return _chw(backbone_preprocess(backbone).normalize_array(np.asarray(to_rgb(img))))


def train_transform(img, rng: np.random.Generator, backbone: str, crop: int = CROP, resize: int = RESIZE) -> torch.Tensor:
    from PIL import Image

    pre = backbone_preprocess(backbone, crop, resize)
    img = to_rgb(img)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    img = pre.resize_shorter(img)
    w, h = img.size
    top = int(rng.integers(0, h - crop + 1))
    left = int(rng.integers(0, w - crop + 1))
    return _chw(pre.normalize_array(np.asarray(img.crop((left, top, left + crop, top + crop)))))


def test_transform(img, backbone: str, crop: int = CROP, resize: int = RESIZE) -> torch.Tensor:
    return _chw(backbone_preprocess(backbone, crop, resize)(img))


class AugmentedImages(torch.utils.data.Dataset):
    """Training images of a store with per-(seed, epoch, index) augmentation; set ``epoch`` each epoch."""

    def __init__(self, store, backbone: str, seed: int = 0):
        self.store = store
        self.backbone = backbone
        self.seed = int(seed)
        self.epoch = 1

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        return train_transform(self.store.load(int(i)), rng, self.backbone), int(i)


def _as_store(inputs):
    if hasattr(inputs, "images") and hasattr(inputs, "ids"):  # PairedDataset
        if inputs.images is None:
            raise DataError(f"{inputs.name}: no image files to encode (backbone mode needs images)")
        return inputs.images
    return inputs


def image_batches(inputs, backbone: str, batch_size: int = 64) -> Iterator[torch.Tensor]:
    """Test-time batches from a dataset, an image store, a list of PIL images, or a ready tensor."""
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() != 4:
            raise DataError(f"image tensor must be (n, 3, H, W), got shape {tuple(inputs.shape)}")
        for s in range(0, inputs.shape[0], batch_size):
            yield inputs[s : s + batch_size]
        return
    store = _as_store(inputs)
    load = store.load if hasattr(store, "load") else (lambda i: store[i])
    n = len(store)
    for s in range(0, n, batch_size):
        yield torch.stack([test_transform(load(i), backbone) for i in range(s, min(s + batch_size, n))])


__all__: Sequence[str] = ["AugmentedImages", "Preprocess", "backbone_preprocess", "image_batches", "test_transform", "to_rgb", "train_transform"]
