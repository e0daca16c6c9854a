"""The registry of index backends: ``create_index("faiss", bits=64)`` finds the class by name."""

from __future__ import annotations

from cmhash.registry import Registry

INDEX_BACKENDS: Registry = Registry(
    "index backend",
    modules=[
        "cmhash.index.numpy_backend",
        "cmhash.index.faiss_backend",
        "cmhash.index.milvus_backend",
    ],
)
