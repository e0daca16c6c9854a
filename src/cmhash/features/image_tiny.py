"""Tiny-image features (Torralba et al. 2008): the image shrunk to ``size x size`` RGB, flattened.

A model-free baseline that needs no weights and runs at thousands of images per second; useful
as a sanity floor for hashing experiments and as the fast encoder of the feature-cache tests.
Pixels in [0, 1], box (area) downsampling, aspect ratio not kept; dim = 3 * size * size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cmhash.errors import DataError
from cmhash.features.base import IMAGE_ENCODERS, ImageEncoder
from cmhash.nets.preprocess import Preprocess


class TinyImageEncoder(ImageEncoder):
    name = "tiny-image"
    version = "1"

    def __init__(self, size: int = 16):
        if not 8 <= int(size) <= 64:
            raise DataError(f"tiny-image: size must be 8..64, got {size}")
        super().__init__(size=int(size))
        self.dim = 3 * int(size) * int(size)
        self.preprocess = Preprocess.named("none", size=int(size), resize="stretch", interpolation="box")

    def describe(self) -> dict[str, Any]:
        return {"preprocess": self.preprocess.to_dict()}

    def prepare(self, image) -> np.ndarray:
        return self.preprocess(image) / np.float32(255.0)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        b = np.asarray(batch, dtype=np.float32)
        return b.reshape(len(b), -1)


@IMAGE_ENCODERS.register("tiny-image")
def make_tiny(**options: Any) -> TinyImageEncoder:
    """tiny-image: the image shrunk to size x size (default 16) RGB in [0, 1], flattened."""
    return TinyImageEncoder(**options)
