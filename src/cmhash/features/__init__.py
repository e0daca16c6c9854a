"""Image and text encoders (found by name) and the on-disk feature cache.

Typical use::

    from cmhash.data import load_dataset
    from cmhash.features import create_image_encoder, create_text_encoder, extract_features

    ds = load_dataset("mirflickr", "../shared/data/mirflickr25k")
    cache = extract_features(ds, create_image_encoder("efficientnet-lite0"), create_text_encoder("bow"), "out/mir")
    ds = cache.apply(ds)                       # dataset.image_features / text_features filled in
    spec = cache.encoder_spec("text")          # store in a checkpoint ...
    enc = encoder_from_spec(spec)              # ... and encode a raw query the same way later
    enc.encode(["sunset, beach"])

Registries: :data:`IMAGE_ENCODERS` (efficientnet-lite0, efficientnet-lite2, alexnet, vgg16, vgg19,
onnx, tiny-image) and :data:`TEXT_ENCODERS` (bow, count, tfidf, lda, minilm, glove).
Ready-made feature sets: :func:`cmhash.features.prepared.prepare`.
"""

from __future__ import annotations

from cmhash.features.base import (
    IMAGE_ENCODERS,
    TEXT_ENCODERS,
    Encoder,
    ImageEncoder,
    TextEncoder,
    create_image_encoder,
    create_text_encoder,
    encoder_from_spec,
    list_encoders,
)
from cmhash.features.cache import FeatureCache, extract_features

__all__ = [
    "IMAGE_ENCODERS",
    "TEXT_ENCODERS",
    "Encoder",
    "ImageEncoder",
    "TextEncoder",
    "create_image_encoder",
    "create_text_encoder",
    "encoder_from_spec",
    "list_encoders",
    "FeatureCache",
    "extract_features",
]
