"""cmhash: deep cross-modal hashing with trustworthy evaluation and Hamming search.

Sub-packages are imported lazily so that `import cmhash` stays cheap (no torch, no faiss).
The search API is re-exported here: ``cmhash.load(RUN)`` (:mod:`cmhash.inference.model`) and
``cmhash.open_index(PATH)`` (:mod:`cmhash.index.search`).
"""

import importlib

__version__ = "0.1.0"

# name -> module; resolved on first use by importlib, because the package root is the bottom
# layer (core) of the layout: its own modules never depend on these, users reach them through it
_API = {
    "load": "cmhash.inference.model",
    "Model": "cmhash.inference.model",
    "open_index": "cmhash.index.search",
    "Index": "cmhash.index.search",
    "Hit": "cmhash.index.search",
}


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'cmhash' has no attribute {name!r}")


__all__ = ["__version__", *_API]
