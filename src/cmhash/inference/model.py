"""A trained checkpoint ready to encode raw texts and images: ``cmhash.load(RUN)``.

::

    model = cmhash.load("runs/f8k64")                        # a run folder or its checkpoint.pt
    model.encode_text(["a dog runs on the beach"])           # (1, bits) int8 in {-1, +1}
    model.encode_image(["photo.jpg"])                        # paths, PIL images or encoded bytes

A text the model cannot read raises :class:`cmhash.inference.queries.UnreadableQueryError`.
Searching an index with it: :mod:`cmhash.index.search`.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cmhash.errors import DataError, MissingFileError


class Model:
    """A trained checkpoint ready to encode raw texts and images into ±1 codes (thread-safe)."""

    def __init__(self, path: str | os.PathLike):
        from cmhash.inference import load_checkpoint
        from cmhash.inference.inputs import QueryFeaturizer
        from cmhash.inference.provenance import checkpoint_file, checkpoint_sha256
        from cmhash.inference.queries import text_vocabulary

        self.path = checkpoint_file(path)
        if not self.path.is_file():
            raise MissingFileError(f"{path}: no checkpoint there (a run folder from `cmhash train` holds checkpoint.pt)")
        self.sha256 = checkpoint_sha256(self.path)
        self.checkpoint = load_checkpoint(self.path)
        nets = getattr(self.checkpoint.method, "nets", None)
        if nets is not None:  # encode-only: eval mode once, rather than switching modes on every call
            nets.eval()
        self.featurizer = QueryFeaturizer(self.checkpoint)
        self.features = dict(self.checkpoint.meta.get("features") or {})
        self.vocabulary = text_vocabulary(self.features)
        self._lock = threading.Lock()

    @property
    def bits(self) -> int:
        return self.checkpoint.bits

    @property
    def method(self) -> str:
        return self.checkpoint.method_name

    def describe_text_input(self) -> str:
        """What the text side reads, in words (for messages and the web page)."""
        if self.vocabulary is not None:
            what = "tags" if self.vocabulary.kind == "tags" else "words"
            return f"{what} from a vocabulary of {len(self.vocabulary):,}"
        spec = (self.features.get("encoders") or {}).get("text") or {}
        return f"free text ({spec.get('name') or self.features.get('text_features') or 'sentence encoder'})"

    def read_text(self, text: str) -> str:
        """The text as the model will read it; raises UnreadableQueryError when it reads nothing of it."""
        from cmhash.inference.queries import normalise_text_query

        return normalise_text_query(text, self.features, self.vocabulary)

    def _run(self, fn):
        # one model call at a time; torch's thread count is the process's (`cmhash serve --threads`
        # sets it once): limiting threads per call with threadpoolctl cost 5 ms per query
        with self._lock:
            return fn()

    def encode_text(self, texts: str | Sequence[str]) -> np.ndarray:
        """(n, bits) int8 ±1 codes of raw texts (each checked with :meth:`read_text`)."""
        if isinstance(texts, str):
            texts = [texts]
        return self.encode_read_texts([self.read_text(t) for t in texts])

    def encode_read_texts(self, readable: Sequence[str]) -> np.ndarray:
        """(n, bits) codes of texts that :meth:`read_text` already returned (the service reads each
        query once, when it arrives, and encodes the batch without reading it again)."""
        readable = list(readable)
        if not readable:
            return np.empty((0, self.bits), dtype=np.int8)
        return self._run(lambda: _as_pm1(self.checkpoint.encode(self.featurizer.text(readable), "text")))

    def encode_image(self, images: Any) -> np.ndarray:
        """(n, bits) int8 ±1 codes of images: file paths, PIL images or encoded bytes."""
        if isinstance(images, (str, os.PathLike, bytes)) or hasattr(images, "convert"):
            images = [images]
        pil = [load_image(im) for im in images]
        if not pil:
            return np.empty((0, self.bits), dtype=np.int8)
        return self._run(lambda: _as_pm1(self.checkpoint.encode(self._image_inputs(pil), "image")))

    def _image_inputs(self, pil: list):
        spec = self.featurizer.spec
        if spec is not None and spec.image_mode == "backbone":
            return pil
        feats = self.featurizer._image_encoder().encode(pil)
        want = getattr(spec, "image_dim", None)
        if want and feats.shape[1] != want:
            raise DataError(f"{self.path}: the image encoder gives {feats.shape[1]}-d features but the model takes {want}-d")
        return feats

    def __repr__(self) -> str:
        return f"<cmhash.Model {self.method} {self.bits} bits from {self.path}>"


def _as_pm1(codes) -> np.ndarray:
    arr = np.asarray(codes.detach().cpu().numpy() if hasattr(codes, "detach") else codes)
    return np.where(arr > 0, 1, -1).astype(np.int8)


def load_image(image: Any):
    """An RGB PIL image from a path, bytes or a PIL image (decoded, so a renamed non-image fails here)."""
    from cmhash.data.imageio import open_rgb

    if hasattr(image, "convert"):
        return image.convert("RGB")
    if isinstance(image, (bytes, bytearray)):
        return open_rgb(io.BytesIO(bytes(image)))
    p = Path(image)
    if not p.is_file():
        raise MissingFileError(f"{p}: image not found")
    return open_rgb(p)


_MODELS: dict[tuple[str, str], Model] = {}
_MODELS_LOCK = threading.Lock()


def load(run: str | os.PathLike) -> Model:
    """The model of a training run (folder or checkpoint.pt); reloaded when the file's content changes."""
    from cmhash.inference.provenance import checkpoint_file, checkpoint_sha256

    path = checkpoint_file(run)
    if not path.is_file():
        raise MissingFileError(f"{run}: no checkpoint there (a run folder from `cmhash train` holds checkpoint.pt)")
    key = (str(path.resolve()), checkpoint_sha256(path))
    with _MODELS_LOCK:
        if key not in _MODELS:
            while len(_MODELS) >= 4:  # bounded: a retrained run adds a key, the old model goes
                _MODELS.pop(next(iter(_MODELS)))
            _MODELS[key] = Model(path)
        return _MODELS[key]




__all__ = ["Model", "load", "load_image"]
