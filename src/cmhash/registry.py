"""A tiny name -> factory registry, as timm's ``@register_model`` + ``create_model``.

Used for data sources, methods, image/text encoders and index backends so that each lives in its
own module and is found by name from the CLI and from presets.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable, Generic, Iterable, TypeVar

from cmhash.errors import CmhashError

T = TypeVar("T")


class UnknownNameError(CmhashError, KeyError):
    """Raised when a name is not registered; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would otherwise print the repr
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to factories. ``modules`` are imported on first lookup so registration is lazy."""

    def __init__(self, kind: str, modules: Iterable[str] = ()):
        self.kind = kind
        self._modules = list(modules)
        self._loaded = False
        self._entries: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            key = (name or getattr(obj, "__name__")).lower()
            if key in self._entries and self._entries[key] is not obj:
                raise ValueError(f"{self.kind} '{key}' is registered twice")
            self._entries[key] = obj
            return obj

        return deco

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for mod in self._modules:
                importlib.import_module(mod)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def get(self, name: str) -> T:
        self._load()
        key = name.lower()
        if key not in self._entries:
            close = difflib.get_close_matches(key, self._entries, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise UnknownNameError(f"unknown {self.kind} '{name}'. Known: {', '.join(self.names())}.{hint}")
        return self._entries[key]

    def __contains__(self, name: str) -> bool:
        self._load()
        return name.lower() in self._entries
