"""The interface every hashing method implements, and the one hyper-parameter convention.

A method learns two hash functions, one per modality, from the training pairs of a
:class:`~cmhash.data.dataset.PairedDataset` and turns features (or images, or token sequences)
into +-1 codes:

* ``fit(train, **options) -> self``
* ``encode(inputs, modality) -> np.ndarray`` of int8 +-1, shape (n, bits); ``modality`` is
  ``"image"`` or ``"text"``; ``inputs`` are feature rows (feature mode) or a dataset.
* ``state() -> dict`` and ``from_state(dict)`` so checkpoints (``cmhash.training.checkpoint``)
  store any method, shallow or deep, in one format.

Hyper-parameters: every method states each one it accepts, with its default, once, in the class
attribute ``DEFAULTS``. ``Method(bits, **hparams)`` fills the defaults, refuses unknown names with
an error listing the known ones, and calls :meth:`check_hparams` to validate values. Presets give
values under their ``hparams:`` section (``cmhash/presets``); run settings never reach a method.

``uses_labels = True`` declares a supervised method: it is handed the training labels (deep:
``Batch.labels``; shallow: ``fit_features(..., labels=...)``). Every other method never sees them.
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
    #: True for supervised methods (they are given the training labels; others never are).
    uses_labels: ClassVar[bool] = False
    #: Every accepted hyper-parameter with its default (stated once, here, per method).
    DEFAULTS: ClassVar[dict[str, Any]] = {}
    #: Python packages the method needs beyond numpy/scipy (``cmhash demo`` skips a method lacking one).
    requires: ClassVar[tuple[str, ...]] = ()
    #: Hyper-parameters that make a fit take about a second on tiny data (the contract test,
    #: tests/test_method_contract.py, applies them over every preset section; ``epochs``,
    #: ``iterations`` and ``batch_size`` are shortened there already when the method has them).
    TEST_HPARAMS: ClassVar[dict[str, Any]] = {}

    def __init__(self, bits: int, **hparams: Any):
        from cmhash.errors import CmhashError

        try:
            bits_int = int(bits)
        except (TypeError, ValueError):
            raise CmhashError(f"{self.name}: bits must be a positive integer, got {bits!r}") from None
        if bits_int <= 0 or (isinstance(bits, float) and bits != bits_int):
            raise CmhashError(f"{self.name}: bits must be a positive integer, got {bits!r}")
        unknown = sorted(set(hparams) - set(self.DEFAULTS))
        if unknown:
            raise CmhashError(
                f"{self.name}: unknown hyper-parameter(s) {', '.join(unknown)} (known: {', '.join(sorted(self.DEFAULTS)) or 'none'})"
            )
        self.bits = bits_int
        full = dict(self.DEFAULTS)
        full.update(hparams)
        self.hparams = full
        self.check_hparams(self.hparams)

    def check_hparams(self, h: dict[str, Any]) -> None:
        """Validate (and normalise in place) hyper-parameter values; raise CmhashError naming the key."""

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

    @classmethod
    def positive(cls, h: dict[str, Any], *keys: str) -> None:
        """Helper for :meth:`check_hparams`: each key must be a positive number."""
        from cmhash.errors import CmhashError

        for key in keys:
            try:
                ok = float(h[key]) > 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise CmhashError(f"{cls.name}: {key} must be positive, got {h[key]!r}")


__all__ = ["HashMethod", "MODALITIES"]
