"""AlexNet / VGG16 / VGG19 fc7 features (4096-d), with the user's torchvision weights file.

The networks are defined here in plain torch with exactly torchvision's layer layout (state_dict
keys ``features.*``, ``classifier.*``), so the official ``alexnet-owt-7be5be79.pth``,
``vgg16-397923af.pth`` and ``vgg19-dcbb9e9d.pth`` load as they are; torchvision itself is not
needed. fc7 = the output of the second fully connected layer after its ReLU (the feature the
DJSRH/DCMH papers take), dropout off.

Weights are looked up in ``weights=PATH`` (CLI ``--weights``), else
``$TORCH_HOME/hub/checkpoints/<file>`` (``$TORCH_HOME`` defaults to ``~/.cache/torch``); nothing
is downloaded. Preprocessing is torchvision's ImageNet evaluation recipe: resize the shorter side
to 256 (bilinear), centre-crop 224, ``(x / 255 - mean) / std`` with the ImageNet mean/std.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cmhash.errors import DataError, MissingFileError
from cmhash.features.base import IMAGE_ENCODERS
from cmhash.features.image_torch import TorchImageEncoder
from cmhash.nets.preprocess import Preprocess

WEIGHT_FILES = {
    "alexnet": "alexnet-owt-7be5be79.pth",
    "vgg16": "vgg16-397923af.pth",
    "vgg19": "vgg19-dcbb9e9d.pth",
}
DOWNLOAD_BASE = "https://download.pytorch.org/models/"
def torch_home() -> Path:
    env = os.environ.get("TORCH_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "torch"


def default_weights_path(arch: str) -> Path:
    return torch_home() / "hub" / "checkpoints" / WEIGHT_FILES[arch]


def build_network(arch: str):
    """The classification network of ``arch`` with torchvision's module layout (random init).

    The architectures are defined once, in :mod:`cmhash.nets.backbones` (also used by end-to-end training).
    """
    from cmhash.nets.backbones import classification_network

    if arch not in WEIGHT_FILES:
        raise DataError(f"unknown architecture '{arch}' (use {', '.join(WEIGHT_FILES)})")
    return classification_network(arch)


def fc7_module(net):
    """features -> avgpool -> flatten -> classifier up to fc7's ReLU."""
    import torch
    from torch import nn

    class Fc7(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.features = net.features
            self.avgpool = net.avgpool
            self.head = net.classifier[: net.fc7_end]

        def forward(self, x):
            return self.head(torch.flatten(self.avgpool(self.features(x)), 1))

    return Fc7(net)


def load_state_dict(path: Path):
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{path}: cannot read as a torch weights file ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DataError(f"{path}: expected a state_dict (a dict of tensors), got {type(state).__name__}")
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}


class TorchvisionFc7Encoder(TorchImageEncoder):
    """fc7 (4096-d) of AlexNet / VGG16 / VGG19 with torchvision weights; see the module docstring."""

    version = "1"
    dim = 4096

    def __init__(self, arch: str = "alexnet", weights: str | None = None, backend: str = "torch", threads: int | None = None, streams: int | None = None, image_size: int = 224, resize_to: int = 256):
        if arch not in WEIGHT_FILES:
            raise DataError(f"unknown architecture '{arch}' (use {', '.join(WEIGHT_FILES)})")
        super().__init__(backend=backend, threads=threads, streams=streams, **({"weights": str(weights)} if weights else {}), image_size=int(image_size), resize_to=int(resize_to))
        self.name = arch
        self.arch = arch
        self.weights = weights
        self.preprocess = Preprocess.named("imagenet", size=int(image_size), resize="shorter-crop", resize_to=int(resize_to), interpolation="bilinear")
        self.weights_path()  # fail early, with the message that says where to put the file

    def weights_path(self) -> Path:
        if self.weights:
            p = Path(self.weights).expanduser()
            if not p.exists():
                raise MissingFileError(f"{p}: {self.arch} weights file not found (the --weights path)")
            return p
        p = default_weights_path(self.arch)
        if not p.exists():
            fname = WEIGHT_FILES[self.arch]
            raise MissingFileError(
                f"the {self.arch} image encoder needs torchvision's weights file {fname}, which is not at {p}. "
                f"Download it from {DOWNLOAD_BASE}{fname} and put it in {p.parent}/ (or set TORCH_HOME), "
                f"or pass its path with --weights PATH (Python: weights='PATH')."
            )
        return p

    def build_module(self):
        net = build_network(self.arch)
        path = self.weights_path()
        state = load_state_dict(path)
        missing, unexpected = _key_diff(net.state_dict().keys(), state.keys())
        if missing or unexpected:
            raise DataError(
                f"{path}: not a torchvision {self.arch} state_dict "
                f"(missing keys: {', '.join(missing[:5]) or 'none'}; unexpected keys: {', '.join(unexpected[:5]) or 'none'})"
            )
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:  # shape mismatches
            raise DataError(f"{path}: weights do not fit the {self.arch} architecture ({exc})") from exc
        return fc7_module(net)


def _key_diff(expected, found) -> tuple[list[str], list[str]]:
    e, f = set(expected), set(found)
    return sorted(e - f), sorted(f - e)


def _factory(arch: str):
    def make(**options: Any) -> TorchvisionFc7Encoder:
        return TorchvisionFc7Encoder(arch=arch, **options)

    make.__doc__ = f"{arch} fc7 (4096-d); needs {WEIGHT_FILES[arch]} (weights=PATH or $TORCH_HOME/hub/checkpoints/)."
    return make


for _arch in WEIGHT_FILES:
    IMAGE_ENCODERS.register(_arch)(_factory(_arch))
