"""cmhash: deep cross-modal hashing with trustworthy evaluation and Hamming search.

Sub-packages are imported lazily so that `import cmhash` stays cheap (no torch, no faiss).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
