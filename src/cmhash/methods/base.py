"""The interface every hashing method implements.

A method learns two hash functions, one per modality, from the training pairs of a
:class:`~cmhash.data.dataset.PairedDataset` and turns features (or images) into +-1 codes:

* ``fit(train, **options) -> self``
* ``encode(inputs, modality) -> np.ndarray`` of int8 +-1, shape (n, bits); ``modality`` is
  ``"image"`` or ``"text"``; ``inputs`` are feature rows (feature mode) or a dataset (end-to-end).
* ``state() -> dict`` and ``from_state(dict)`` so checkpoints (``cmhash.training.checkpoint``) can
  store any method, shallow or deep, in one format.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

MODALITIES = ("image", "text")


class HashMethod(ABC):
    name: ClassVar[str] = "base"
    #: True for methods trained by gradient descent with the shared trainer.
    deep: ClassVar[bool] = False

    def __init__(self, bits: int, **hparams: Any):
        if int(bits) <= 0:
            raise ValueError(f"bits must be positive, got {bits}")
        self.bits = int(bits)
        self.hparams = dict(hparams)

    @abstractmethod
    def fit(self, train, **options: Any) -> "HashMethod":
        """Learn the hash functions from the training pairs."""

    @abstractmethod
    def encode(self, inputs, modality: str) -> np.ndarray:
        """+-1 int8 codes (n, bits) for image or text inputs."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the fitted method (arrays, tensors, hparams)."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, Any]) -> "HashMethod":
        """Rebuild a fitted method from :meth:`state`."""

    @staticmethod
    def check_modality(modality: str) -> str:
        if modality not in MODALITIES:
            from cmhash.errors import CmhashError

            raise CmhashError(f"modality must be 'image' or 'text', got '{modality}'")
        return modality
