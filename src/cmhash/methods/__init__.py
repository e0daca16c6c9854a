"""Hashing methods, found by name: ``create_method("djsrh", bits=64, **hparams)``.

Each method lives in its own module of this package and registers its class with
``@METHODS.register("name")``; every module here that is not in :data:`SHARED_MODULES` is a
method module and is imported on the first registry lookup, so adding a method means adding its
file (no list to edit). Shared method math (base classes, similarity matrices, losses) lives once
in the modules of :data:`SHARED_MODULES`; networks live in :mod:`cmhash.nets`, the training loop
in :mod:`cmhash.training`.
"""

from __future__ import annotations

import pkgutil

from cmhash.registry import Registry

#: Modules of this package that hold shared math, not a method (add a new shared module here).
SHARED_MODULES = ("base", "deep", "shallow", "similarity", "losses")


def _method_modules() -> list[str]:
    return sorted(
        f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__) if m.name not in SHARED_MODULES and not m.name.startswith("_")
    )


METHODS: Registry = Registry("method", modules=_method_modules())


def create_method(name: str, bits: int, **hparams):
    """Instantiate a registered method with ``bits`` and its hyper-parameters."""
    return METHODS.get(name)(bits=bits, **hparams)


def list_methods() -> list[str]:
    return METHODS.names()


__all__ = ["METHODS", "SHARED_MODULES", "create_method", "list_methods"]
