"""cmhash: deep cross-modal hashing with trustworthy evaluation and Hamming search.

Sub-packages are imported lazily so that `import cmhash` stays cheap (no torch, no faiss).
``cmhash.load(RUN)`` and ``cmhash.open_index(PATH)`` are the search API (:mod:`cmhash.api`).
"""

__version__ = "0.1.0"

_API = ("load", "open_index", "Model", "Index", "Hit")


def __getattr__(name):
    if name in _API:
        from cmhash import api

        return getattr(api, name)
    raise AttributeError(f"module 'cmhash' has no attribute {name!r}")


__all__ = ["__version__", *_API]
