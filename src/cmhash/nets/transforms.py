"""Image input of the end-to-end (backbone) mode: the official DJSRH augmentation, deterministic.

Training (methods-spec section 0.3): random horizontal flip -> resize the shorter side to 256
(bilinear) -> random 224 crop -> [0, 1] -> per-channel normalisation of the backbone. Test:
resize 256 -> centre crop 224. Written with PIL/numpy (no torchvision needed). The random choices
of pair ``i`` in epoch ``t`` come from ``numpy.random.default_rng([seed, t, i])``, so the augmented
batches are the same with any number of loader workers and after ``--resume``.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from cmhash.errors import DataError
from cmhash.nets.backbones import NORMALISATION

RESIZE = 256
CROP = 224


def resize_shorter(img, size: int = RESIZE):
    """Resize so the shorter side is ``size`` (aspect kept), bilinear, as torchvision's Resize(int)."""
    from PIL import Image

    w, h = img.size
    if w <= h:
        nw, nh = size, int(size * h / w)
    else:
        nw, nh = int(size * w / h), size
    if (nw, nh) == (w, h):
        return img
    return img.resize((nw, nh), Image.BILINEAR)


def to_tensor(img, backbone: str) -> torch.Tensor:
    """RGB PIL image -> normalised float32 tensor (3, H, W) for ``backbone``."""
    mean, std = NORMALISATION[backbone]
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    arr = (arr - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def train_transform(img, rng: np.random.Generator, backbone: str, crop: int = CROP, resize: int = RESIZE) -> torch.Tensor:
    from PIL import Image

    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    img = resize_shorter(img, resize)
    w, h = img.size
    top = int(rng.integers(0, h - crop + 1))
    left = int(rng.integers(0, w - crop + 1))
    return to_tensor(img.crop((left, top, left + crop, top + crop)), backbone)


def test_transform(img, backbone: str, crop: int = CROP, resize: int = RESIZE) -> torch.Tensor:
    img = resize_shorter(img, resize)
    w, h = img.size
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    return to_tensor(img.crop((left, top, left + crop, top + crop)), backbone)


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


__all__: Sequence[str] = ["AugmentedImages", "image_batches", "test_transform", "train_transform"]
