"""Image preprocessing as data: how a PIL image becomes the array a CNN expects (the one stack).

Used by every image feature encoder (:mod:`cmhash.features`) and, through
:mod:`cmhash.nets.transforms`, by end-to-end training.

Each image encoder owns one :class:`Preprocess`; it is recorded in the encoder spec and in the
feature-cache manifest, so features made with a different resize or normalisation are never mixed.

Resize modes:

* ``"stretch"``: resize straight to ``size x size`` (aspect ratio not kept). This is the recipe of
  the project's EfficientNet-Lite reference features (128-px MIRFlickr crops -> 224x224 bicubic).
* ``"shorter-crop"``: resize the shorter side to ``resize_to`` then centre-crop ``size x size``
  (torchvision's ``Resize(256) + CenterCrop(224)`` evaluation recipe).

Normalisations (pixel values ``x`` in 0..255):

* ``"pm1"``: ``x / 127.5 - 1`` (range [-1, 1]);
* ``"tf-lite"``: ``(x - 127) / 128``, the constants of the official TF EfficientNet-Lite
  builder (``MEAN_RGB = 127``, ``STDDEV_RGB = 128``); it differs from ``pm1`` by at most 0.008;
* ``"imagenet"``: ``(x / 255 - mean) / std`` with torchvision's ImageNet mean and std;
* ``"custom"``: the same formula with the given ``mean``/``std`` (in 0..1 units).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from cmhash.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_MODES = ("stretch", "shorter-crop")
NORMALIZATIONS = ("pm1", "tf-lite", "imagenet", "custom", "none")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


@dataclass(frozen=True)
class Preprocess:
    """Resize + normalise one RGB PIL image into a float32 HWC array (see module docstring)."""

    size: int = 224
    resize: str = "stretch"
    resize_to: int | None = None
    interpolation: str = "bicubic"
    normalize: str = "pm1"
    mean: tuple[float, float, float] = field(default=(0.5, 0.5, 0.5))
    std: tuple[float, float, float] = field(default=(0.5, 0.5, 0.5))

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise DataError(f"preprocess: resize must be one of {', '.join(RESIZE_MODES)}, got '{self.resize}'")
        if self.normalize not in NORMALIZATIONS:
            raise DataError(f"preprocess: normalize must be one of {', '.join(NORMALIZATIONS)}, got '{self.normalize}'")
        if self.interpolation not in INTERPOLATIONS:
            raise DataError(f"preprocess: interpolation must be one of {', '.join(INTERPOLATIONS)}, got '{self.interpolation}'")
        if int(self.size) < 8:
            raise DataError(f"preprocess: image size {self.size} is too small (at least 8 px)")
        if self.resize == "shorter-crop" and self.resize_to is not None and self.resize_to < self.size:
            raise DataError(f"preprocess: resize_to ({self.resize_to}) must be at least size ({self.size})")
        for what, v in (("mean", self.mean), ("std", self.std)):
            if len(v) != 3:
                raise DataError(f"preprocess: {what} needs 3 values (R, G, B), got {list(v)}")
        if any(s <= 0 for s in self.std):
            raise DataError(f"preprocess: std values must be positive, got {list(self.std)}")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))

    @classmethod
    def named(cls, normalize: str, **kwargs: Any) -> "Preprocess":
        """A Preprocess whose mean/std follow the named normalisation."""
        if normalize == "imagenet":
            kwargs.setdefault("mean", IMAGENET_MEAN)
            kwargs.setdefault("std", IMAGENET_STD)
        elif normalize == "pm1":
            kwargs.setdefault("mean", (0.5, 0.5, 0.5))
            kwargs.setdefault("std", (0.5, 0.5, 0.5))
        elif normalize == "tf-lite":
            kwargs.setdefault("mean", (127.0 / 255,) * 3)
            kwargs.setdefault("std", (128.0 / 255,) * 3)
        elif normalize == "none":
            kwargs.setdefault("mean", (0.0, 0.0, 0.0))
            kwargs.setdefault("std", (1.0 / 255,) * 3)
        return cls(normalize=normalize, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    # ------------------------------------------------------------------ steps
    def _resample(self):
        from PIL import Image

        return {
            "nearest": Image.NEAREST,
            "bilinear": Image.BILINEAR,
            "bicubic": Image.BICUBIC,
            "lanczos": Image.LANCZOS,
            "box": Image.BOX,
            "hamming": Image.HAMMING,
        }[self.interpolation]

    def resize_image(self, image):
        """The resize/crop step only (PIL in, PIL out)."""
        s = int(self.size)
        if self.resize == "stretch":
            return image if image.size == (s, s) else image.resize((s, s), self._resample())
        image = self.resize_shorter(image)
        nw, nh = image.size
        # Centre crop as torchvision: round((dim - size) / 2); pads with black when too small.
        left = int(round((nw - s) / 2.0))
        top = int(round((nh - s) / 2.0))
        return image.crop((left, top, left + s, top + s))

    def resize_shorter(self, image):
        """Resize so the shorter side is ``resize_to`` (default ``size * 256 / 224``), aspect kept."""
        short = int(self.resize_to or round(int(self.size) * 256 / 224))
        w, h = image.size
        if w <= h:
            nw, nh = short, max(1, int(short * h / w))
        else:
            nw, nh = max(1, int(short * w / h)), short
        if (nw, nh) != (w, h):
            image = image.resize((nw, nh), self._resample())
        return image

    def normalize_array(self, x: np.ndarray) -> np.ndarray:
        """uint8/float HWC pixels (0..255) -> normalised float32 HWC, in the formula's own order."""
        x = np.asarray(x, dtype=np.float32)
        if self.normalize == "pm1":
            return x / 127.5 - 1.0
        if self.normalize == "tf-lite":
            return (x - 127.0) / 128.0
        if self.normalize == "none":
            return x
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        return (x / 255.0 - mean) / std

    def __call__(self, image) -> np.ndarray:
        """One RGB PIL image -> float32 (size, size, 3) array."""
        return self.normalize_array(np.asarray(self.resize_image(to_rgb(image))))


def to_rgb(image):
    """Any PIL image (L, CMYK, P, RGBA...) -> RGB, compositing transparency on white."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode in ("P", "PA") and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.split()[-1])
        return background
    return image.convert("RGB")
