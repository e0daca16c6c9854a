"""Thread limits for numerical libraries (BLAS via threadpoolctl, and torch when it is loaded).

On small shared CPU machines an oversubscribed BLAS pool spins: on the 2-core development
machine under load, CMFH at 128 bits on Wiki took 26 s with 2 OpenBLAS threads and 2.5 s with
one. Commands therefore take a ``--threads`` option and run their numerical work inside
:func:`limit_threads`.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def limit_threads(threads: int | None) -> Iterator[None]:
    """Limit BLAS/OpenMP threads (and torch's intra-op threads, if torch is imported) in the block.

    ``None`` leaves every library at its default.
    """
    if threads is None:
        yield
        return
    threads = max(1, int(threads))
    # threadpoolctl only limits libraries already loaded: load both BLAS copies (numpy's and scipy's).
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401

    torch = sys.modules.get("torch")
    old_torch = torch.get_num_threads() if torch is not None else None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        threadpool_limits = None
    try:
        if torch is not None:
            torch.set_num_threads(threads)
        if threadpool_limits is None:  # pragma: no cover
            yield
        else:
            with threadpool_limits(limits=threads):
                yield
    finally:
        if torch is not None and old_torch is not None:
            torch.set_num_threads(old_torch)
