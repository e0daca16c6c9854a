"""Hashing methods, found by name: ``create_method("djsrh", bits=64, **preset)``.

Each method lives in its own module and registers its class with ``@METHODS.register("name")``.
Shared pieces (similarity matrices, losses, networks, the training loop) live once in this
package and are reused by every method.
"""

from __future__ import annotations

from cmhash.registry import Registry

METHODS: Registry = Registry(
    "method",
    modules=[
        "cmhash.methods.cmfh",
        "cmhash.methods.djsrh",
        "cmhash.methods.dgcpn",
        "cmhash.methods.ucch",
        "cmhash.methods.kdh",
    ],
)


def create_method(name: str, bits: int, **hparams):
    """Instantiate a registered method with ``bits`` and its hyper-parameters."""
    return METHODS.get(name)(bits=bits, **hparams)


def list_methods() -> list[str]:
    return METHODS.names()


__all__ = ["METHODS", "create_method", "list_methods"]
