"""What the trainer hands a deep method: the input spec, one batch, and the whole training set.

* :class:`InputSpec`: what the networks take (image feature width or a backbone; text feature
  width or a token vocabulary), stored in every checkpoint so the networks can be rebuilt.
* :class:`Batch`: one training batch. ``image`` is features (feature mode) or normalised pixels
  (backbone mode); ``text`` is a float32 feature tensor (``text_mode="features"``) or a
  :class:`TokenBatch` (``text_mode="tokens"``); ``labels`` is a float32 multi-hot tensor only
  for methods that declare ``uses_labels = True`` (None for every other method); ``index`` holds
  the rows of the training set, so a method can look up its own per-pair state (a global code or
  similarity matrix built by the epoch hook).
* :class:`TrainingSet`: the whole training set on the device, given to the epoch hook
  ``on_epoch_start(epoch, train)`` (global similarity matrices: UDCMH, DGCPN).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from cmhash.errors import CmhashError

IMAGE_MODES = ("features", "backbone")
TEXT_MODES = ("features", "tokens")


@dataclass
class InputSpec:
    """What the networks take: feature dims (feature mode) or a backbone (end-to-end mode), and the text form."""

    text_dim: int | None = None
    image_mode: str = "features"
    image_dim: int | None = None
    backbone: str | None = None
    backbone_weights: str | None = None
    finetune: str = "all"
    features: dict[str, Any] = field(default_factory=dict)  # provenance: encoder names etc.
    text_mode: str = "features"  # features (dense vectors) | tokens (padded id sequences + lengths)
    vocab_size: int | None = None  # tokens mode: ids are 0 (PAD) .. vocab_size - 1
    max_len: int | None = None  # tokens mode: longest sequence of the training set
    num_labels: int | None = None  # label columns (supervised methods)

    def __post_init__(self) -> None:
        if self.image_mode not in IMAGE_MODES:
            raise CmhashError(f"image_mode must be one of {IMAGE_MODES}, got '{self.image_mode}'")
        if self.text_mode not in TEXT_MODES:
            raise CmhashError(f"text_mode must be one of {TEXT_MODES}, got '{self.text_mode}'")
        if self.image_mode == "features" and not self.image_dim:
            raise CmhashError("feature mode needs image_dim (the width of the precomputed image features)")
        if self.image_mode == "backbone" and not self.backbone:
            raise CmhashError("backbone mode needs a backbone name (efficientnet-lite0 or alexnet)")
        if self.text_mode == "features" and not self.text_dim:
            raise CmhashError("text features mode needs text_dim (the width of the text features)")
        if self.text_mode == "tokens" and not self.vocab_size:
            raise CmhashError("text tokens mode needs vocab_size (the number of token ids, PAD included)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "InputSpec":
        return cls(**d)  # checkpoints of earlier versions lack the later fields: their defaults apply


@dataclass
class TokenBatch:
    """Token sequences of a batch: ``ids`` int64 (b, L) padded with 0 on the right, ``lengths`` int64 (b,).

    ``L`` is the longest length in the batch (at least 1). Same layout as
    :class:`cmhash.data.tokens.TokenSequences`, as torch tensors.
    """

    ids: Any
    lengths: Any

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.ids.shape)

    def to(self, device, non_blocking: bool = False) -> "TokenBatch":
        return TokenBatch(self.ids.to(device, non_blocking=non_blocking), self.lengths.to(device, non_blocking=non_blocking))

    def index_select(self, idx) -> "TokenBatch":
        """Rows ``idx``, trimmed to the longest of them."""
        lengths = self.lengths.index_select(0, idx.to(self.lengths.device))
        width = max(int(lengths.max()) if lengths.numel() else 1, 1)
        return TokenBatch(self.ids.index_select(0, idx.to(self.ids.device))[:, :width], lengths)

    def __getitem__(self, sl: slice) -> "TokenBatch":
        lengths = self.lengths[sl]
        width = max(int(lengths.max()) if lengths.numel() else 1, 1)
        return TokenBatch(self.ids[sl][:, :width], lengths)

    @classmethod
    def from_sequences(cls, seqs) -> "TokenBatch":
        """From a :class:`~cmhash.data.tokens.TokenSequences` (numpy) to tensors."""
        import numpy as np
        import torch

        return cls(torch.from_numpy(np.array(seqs.ids, dtype=np.int64)), torch.from_numpy(np.array(seqs.lengths, dtype=np.int64)))


@dataclass
class Batch:
    """One training batch (see the module docstring); ``labels`` is None unless the method uses labels."""

    image: Any
    text: Any
    index: Any
    labels: Any = None

    def __len__(self) -> int:
        return int(self.index.shape[0])


@dataclass
class TrainingSet:
    """The whole training set, for the epoch hook.

    ``image``: (n, d) float32 features on the device (feature mode), None in backbone mode (then
    ``image_batches`` yields the test-transformed pixels in row order); ``text``: (n, d) features
    or a :class:`TokenBatch`; ``labels``: (n, c) float32 for methods with ``uses_labels``, else
    None. Rows are in training-set order, the order of ``Batch.index``.
    """

    image: Any
    text: Any
    labels: Any = None
    images: Any = None  # backbone mode: the image store
    backbone: str | None = None
    device: Any = "cpu"

    def __len__(self) -> int:
        return len(self.text) if isinstance(self.text, TokenBatch) else int(self.text.shape[0])

    def image_batches(self, batch_size: int = 64) -> Iterator[Any]:
        """Image inputs in row order: feature chunks, or test-transformed pixel batches (backbone mode)."""
        if self.image is not None:
            for s in range(0, self.image.shape[0], batch_size):
                yield self.image[s : s + batch_size]
            return
        from cmhash.nets.transforms import image_batches

        for x in image_batches(self.images, self.backbone, batch_size=batch_size):
            yield x.to(self.device)

    def text_batches(self, batch_size: int = 1024) -> Iterator[Any]:
        """Text inputs in row order (feature chunks or TokenBatch slices)."""
        n = len(self)
        for s in range(0, n, batch_size):
            yield self.text[s : s + batch_size]


__all__ = ["Batch", "IMAGE_MODES", "InputSpec", "TEXT_MODES", "TokenBatch", "TrainingSet"]
