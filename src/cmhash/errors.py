"""Exceptions with messages that name the file, row or field and say what to do.

Every error cmhash raises on bad input derives from :class:`CmhashError`, so the CLI can print
it without a traceback and exit with status 2.
"""

from __future__ import annotations


class CmhashError(Exception):
    """Base class: a problem the user can fix (bad input, missing file, wrong option)."""


class DataError(CmhashError, ValueError):
    """Input data is malformed: wrong shape, NaN, mismatched rows, unknown column..."""


class MissingFileError(CmhashError, FileNotFoundError):
    """A file or folder the user pointed at does not exist."""


class UsageError(CmhashError, ValueError):
    """A command-line value is invalid (a negative seed, an unknown device, an output path that is a folder...)."""


class LockedError(CmhashError):
    """Another process is writing the same output (a run folder, an index, a feature cache)."""

    def __init__(self, message: str, pid: int | None = None):
        super().__init__(message)
        self.pid = pid


class MissingDependencyError(CmhashError, ImportError):
    """An optional package (torch, faiss, pymilvus...) is needed for this feature."""

    def __init__(self, package: str, feature: str, extra: str | None = None):
        hint = f'pip install "cmhash[{extra}]"' if extra else f"pip install {package}"
        super().__init__(f"{feature} needs the package '{package}', which is not installed. Install it with: {hint}")
        self.package = package


def require(module: str, feature: str, extra: str | None = None, package: str | None = None):
    """Import an optional dependency or raise a MissingDependencyError that says how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised when the extra is absent
        raise MissingDependencyError(package or module, feature, extra) from exc
